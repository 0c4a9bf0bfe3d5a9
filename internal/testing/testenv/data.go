package testenv

import (
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Prompt is how long an operation that must return "promptly" may take:
// generous, for emulated kernels under load, and still far below a hang.
const Prompt = 5 * time.Second

// HandshakeBoth runs both handshakes concurrently and fails the test on error.
func HandshakeBoth(t testing.TB, a, b interface{ Handshake() error }) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- b.Handshake() }()
	if err := a.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("peer handshake: %v", err)
	}
}

// Pattern returns n deterministic pseudo-random bytes.
func Pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	var ctr uint64
	for i := 0; i < n; i += sha256.Size {
		ctr++
		h := sha256.Sum256([]byte{seed, byte(ctr), byte(ctr >> 8), byte(ctr >> 16), byte(ctr >> 24)})
		copy(b[i:], h[:])
	}
	return b
}

// Exchange sends n bytes each way at once and checks them by hash.
func Exchange(t testing.TB, a, b io.ReadWriter, n int) {
	t.Helper()
	da, db := Pattern(n, 1), Pattern(n, 2)
	errc := make(chan error, 4)
	send := func(w io.Writer, d []byte) {
		_, err := w.Write(d)
		errc <- err
	}
	recv := func(r io.Reader, want []byte) {
		h := sha256.New()
		_, err := io.CopyN(h, r, int64(len(want)))
		if err == nil && [32]byte(h.Sum(nil)) != sha256.Sum256(want) {
			err = ErrMismatch
		}
		errc <- err
	}
	go send(a, da)
	go send(b, db)
	go recv(b, da)
	go recv(a, db)
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatalf("exchange of %d bytes: %v", n, err)
		}
	}
}

// ErrMismatch is the error of a check that received other bytes than were
// sent.
var ErrMismatch = errors.New("received bytes differ from those sent")

// ProcWchar returns the bytes this process has written with write(2) and
// its kin (/proc/self/io, "wchar", Documentation/filesystems/proc.rst);
// splice(2) is not counted there.
func ProcWchar(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no wchar in /proc/self/io:\n%s", b)
	return 0
}
