//go:build race

package ktls_test

// raceEnabled says the tests run under the race detector, which allows
// 8128 goroutines at once.
const raceEnabled = true
