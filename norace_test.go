//go:build !race

package ktls_test

const raceEnabled = false
