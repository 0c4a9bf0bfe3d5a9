//go:build linux

package conn_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// openPipes counts this process's open pipe descriptors.
func openPipes(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("reading /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range ents {
		if target, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// wantPipes waits up to testenv.Prompt for want pipe descriptors to be open,
// and fails the test if they are not.
func wantPipes(t *testing.T, want int, what string) {
	t.Helper()
	for deadline := time.Now().Add(testenv.Prompt); ; time.Sleep(10 * time.Millisecond) {
		n := openPipes(t)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d pipe fds open, want %d", what, n, want)
		}
	}
}

// TestSplicePipesClosed is a proxy's two copies over one connection with
// the kernel engine both ways: WriteTo into a TCP socket and ReadFrom a TCP
// socket, with bursts both ways. Each direction keeps one splice pipe (two
// descriptors) between its splice calls, and Close, while both copies are
// still running, leaves no pipe open.
func TestSplicePipesClosed(t *testing.T) {
	ktlstest.RequireKTLS(t, tls.VersionTLS13, 0)
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, s := ktlstest.PairWithStock(t, true, ccfg, scfg, ktlstest.KernelStrict()...)
	defer k.Close()
	ktlstest.WantBackend(t, k, "kernel", "kernel")
	dst, dstR := testenv.TCPPair(t)
	src, srcW := testenv.TCPPair(t)
	base := openPipes(t)

	type result struct {
		n   int64
		err error
	}
	wrote, read := make(chan result, 1), make(chan result, 1)
	go func() {
		n, err := k.WriteTo(dst)
		wrote <- result{n, err}
	}()
	go func() {
		n, err := k.ReadFrom(src)
		read <- result{n, err}
	}()
	s.SetDeadline(time.Now().Add(time.Minute))
	dstR.SetDeadline(time.Now().Add(time.Minute))
	for i := range 3 {
		out := testenv.Pattern(200_000, byte(i))
		if _, err := s.Write(out); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(out))
		if _, err := io.ReadFull(dstR, got); err != nil || !bytes.Equal(got, out) {
			t.Fatalf("burst %d through WriteTo: %v, or it arrived changed", i, err)
		}
		in := testenv.Pattern(200_000, byte(i+10))
		if _, err := srcW.Write(in); err != nil {
			t.Fatal(err)
		}
		got = make([]byte, len(in))
		if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, in) {
			t.Fatalf("burst %d through ReadFrom: %v, or it arrived changed", i, err)
		}
	}
	wantPipes(t, base+4, "one pipe per direction after three bursts each way")

	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-wrote:
		if r.n != 3*200_000 || r.err == nil {
			t.Fatalf("WriteTo after Close = %d, %v; want %d and an error", r.n, r.err, 3*200_000)
		}
	case <-time.After(testenv.Prompt):
		t.Fatal("Close did not end WriteTo")
	}
	// ReadFrom still waits for its source, which Close does not wake: the
	// pipe it keeps between calls is closed all the same.
	wantPipes(t, base, "after Close")
	srcW.Close()
	select {
	case r := <-read:
		if r.n != 3*200_000 || r.err == nil {
			t.Fatalf("ReadFrom after Close = %d, %v; want %d and an error", r.n, r.err, 3*200_000)
		}
	case <-time.After(testenv.Prompt):
		t.Fatal("ReadFrom did not end with its source after Close")
	}
}
