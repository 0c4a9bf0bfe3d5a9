//go:build linux

package conn

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/internal/rawio"
)

// waitReadable waits on the netpoller, under the source's read deadline,
// until the source socket has something to read: bytes, its end, or an
// error, which it returns as the read's. It looks with recv(MSG_PEEK), which
// takes nothing; the netpoller is edge-triggered, so it must look before it
// waits, as every read does (rawio).
func waitReadable(rc syscall.RawConn) error {
	var b [1]byte
	pollErr, err := rawio.Read(rc, func(fd int) error {
		_, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return err
	})
	if pollErr != nil {
		return pollErr
	}
	if err != nil {
		return os.NewSyscallError("recvfrom", err)
	}
	return nil
}
