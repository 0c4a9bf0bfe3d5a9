package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockCache takes an exclusive lock on the cache, so that two runs in the
// same tree (engineers share working trees) do not download or unpack the
// same kernel at once. The lock goes with the process.
func lockCache(dir string) (release func(), err error) {
	f, err := os.OpenFile(dir+"/lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		logf("another run holds %s/lock; waiting for it", dir)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("vmtest: locking the cache: %w", err)
		}
	}
	return func() { f.Close() }, nil
}
