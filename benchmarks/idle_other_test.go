//go:build !unix

package benchmarks

// raiseFileLimit: no RLIMIT_NOFILE here; 10,000 pairs are tried.
func raiseFileLimit() int { return 20256 }
