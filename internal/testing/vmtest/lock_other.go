//go:build !linux

package main

import "errors"

// lockCache: the harness needs a Linux host (apt, qemu, ldd).
func lockCache(string) (func(), error) {
	return nil, errors.New("vmtest: the VM harness runs on a Linux host only")
}
