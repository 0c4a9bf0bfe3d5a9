//go:build !unix

package recordlayer

import (
	"net"
	"syscall"
)

// rawConnOf returns nil: off Unix the opener reads its link with Read, and
// keeps its buffer while it waits (rawread_unix.go).
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func (o *opener) rawRead(uintptr) bool { return true }
