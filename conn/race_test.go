//go:build race

package conn

// raceEnabled says the tests run under the race detector, whose sync.Pool
// drops a share of what is put back, so allocation counts differ.
const raceEnabled = true
