//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "guest: runs only inside the Linux VMs of internal/testing/vmtest")
	os.Exit(2)
}
