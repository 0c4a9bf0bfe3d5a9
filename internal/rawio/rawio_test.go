//go:build unix

package rawio

import (
	"cmp"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pipe returns both ends of a non-blocking pipe, on the netpoller.
func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func TestReadWaitsForData(t *testing.T) {
	r, w := pipe(t)
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		w.Write([]byte("x"))
	}()
	var b [4]byte
	var n, calls int
	pollErr, opErr := Read(rc, func(fd int) error {
		calls++
		var err error
		n, err = unix.Read(fd, b[:])
		return err
	})
	if pollErr != nil || opErr != nil || n != 1 || b[0] != 'x' {
		t.Fatalf("Read = %v, %v, %d bytes %q", pollErr, opErr, n, b[:n])
	}
	if calls < 2 {
		t.Errorf("op called %d times: the pipe was empty at first, so EAGAIN should have parked it", calls)
	}
}

func TestReadDeadline(t *testing.T) {
	r, _ := pipe(t)
	r.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	pollErr, opErr := Read(rc, func(fd int) error {
		_, err := unix.Read(fd, make([]byte, 1))
		return err
	})
	if !errors.Is(pollErr, os.ErrDeadlineExceeded) || opErr != unix.EAGAIN {
		t.Errorf("Read past the deadline = %v, %v; want the deadline and EAGAIN", pollErr, opErr)
	}
	if err := cmp.Or(pollErr, opErr); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("cmp.Or = %v, want the deadline first", err)
	}
}

func TestWriteAndRestart(t *testing.T) {
	_, w := pipe(t)
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	pollErr, opErr := Write(rc, func(fd int) error {
		calls++
		if calls < 3 {
			return unix.EINTR
		}
		_, err := unix.Write(fd, []byte("y"))
		return err
	})
	if pollErr != nil || opErr != nil || calls != 3 {
		t.Errorf("Write = %v, %v after %d calls; want nil, nil after 3 (EINTR twice)", pollErr, opErr, calls)
	}
	if err := Restart(func() error { return unix.EBADF }); err != unix.EBADF {
		t.Errorf("Restart = %v, want EBADF as is", err)
	}
}
