//go:build unix

package benchmarks

import (
	"syscall"
	"time"
)

// cpuTime is the process's user plus system CPU time (getrusage(2)); the
// kernel engine's crypto runs in system time of the calling thread, so it
// counts.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1 << 62
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
