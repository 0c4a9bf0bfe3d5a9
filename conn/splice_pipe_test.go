//go:build linux

package conn_test

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"golang.org/x/sys/unix"
)

// TestWriteToBlockingPipe is io.Copy(os.Stdout, conn) where stdout is an
// inherited blocking pipe: a ktls client with RX in the kernel copies a few
// MiB from a stock crypto/tls server, after its session ticket and up to its
// close_notify, into the write end of a pipe that Go does not poll (see
// newBlockingPipe). The pipe holds one page and its reader is slow, so
// splice(2) finds it full again and again. Every byte must arrive, in order,
// and through splice: write(2) counts little more than the server's own
// records (this process is both ends), where a copy through Read would add
// the data again.
func TestWriteToBlockingPipe(t *testing.T) {
	ktlstest.RequireKTLS(t, tls.VersionTLS13, 0)
	size := 4 << 20
	data := testenv.Pattern(size, 13)
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	k, s := ktlstest.PairWithStock(t, true, ccfg, scfg, ktlstest.KernelStrict()...)
	defer k.Close()
	ktlstest.WantBackend(t, k, "kernel", "kernel")
	w, sum := newBlockingPipe(t)
	before := testenv.ProcWchar(t) // before the server's writes, which count too
	werr := make(chan error, 1)
	go func() {
		_, err := s.Write(data)
		if err == nil {
			err = s.Close()
		}
		werr <- err
	}()
	n, err := io.Copy(w, k)
	wchar := testenv.ProcWchar(t) - before
	if err != nil || n != int64(size) {
		t.Fatalf("io.Copy into a blocking pipe = %d, %v; want %d, nil", n, err, size)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if sum() != sha256.Sum256(data) {
		t.Fatal("the data arrived changed")
	}
	t.Logf("write(2) bytes during the copy: %d, for %d bytes copied", wchar, size)
	if wchar > int64(size)*3/2 {
		t.Fatalf("write(2) counted %d bytes for %d bytes copied: WriteTo copied instead of splicing", wchar, size)
	}
}

// newBlockingPipe returns the write end of a pipe that Go does not poll, as
// an inherited stdout that is a blocking pipe: os.NewFile leaves a descriptor
// without O_NONBLOCK blocking and out of the netpoller (src/os/file_unix.go,
// newFileFromNewFile and newFile: kindNewFile is pollable only when already
// non-blocking). The pipe holds one page (F_SETPIPE_SZ); a goroutine reads
// it slowly, and sum closes w and returns the SHA-256 of what it read. Both
// ends are closed when the test ends, the write end first: a read blocked in
// read(2) ends only at the EOF that gives.
func newBlockingPipe(t *testing.T) (w *os.File, sum func() [32]byte) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1")
	t.Cleanup(func() { w.Close(); r.Close() })
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	// Only a file outside the netpoller answers ErrNoDeadline
	// (src/internal/poll/fd_poll_runtime.go, setDeadlineImpl).
	if err := w.SetWriteDeadline(time.Now().Add(time.Hour)); !errors.Is(err, os.ErrNoDeadline) {
		t.Fatalf("SetWriteDeadline on the blocking pipe = %v; want ErrNoDeadline: the test needs a file Go does not poll", err)
	}
	done := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		buf := make([]byte, 4096)
		for i := 0; ; i++ {
			if i%8 == 0 {
				time.Sleep(time.Millisecond) // let the pipe fill
			}
			m, err := r.Read(buf)
			h.Write(buf[:m])
			if err != nil {
				break
			}
		}
		done <- [32]byte(h.Sum(nil))
	}()
	return w, func() [32]byte {
		w.Close()
		return <-done
	}
}
