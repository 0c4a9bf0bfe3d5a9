//go:build unix

package benchmarks

import "syscall"

// raiseFileLimit raises RLIMIT_NOFILE's soft limit to the hard one and
// returns the soft limit then in force.
func raiseFileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 2048
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return int(min(lim.Cur, 1<<30))
}
