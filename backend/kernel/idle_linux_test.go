//go:build linux

package kernel_test

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// TestIdleOpenerHoldsNoBuffer: a kernel opener waiting for the peer with
// nothing pending holds no read buffer (issue 18: an idle connection's
// memory), one that reads takes one, and the one it gives back is cleared
// as far as the kernel wrote plaintext into it.
func TestIdleOpenerHoldsNoBuffer(t *testing.T) {
	s := tls13AES128()
	require(t, false, s)
	a, b, us, o := userspaceToKernel(t, s, 9)
	defer a.Close()
	wait := func() {
		t.Helper()
		b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		defer b.SetReadDeadline(time.Time{})
		if _, _, err := o.ReadRecord(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("ReadRecord on an idle socket: %v, want a timeout", err)
		}
		if n, _ := kernel.ReadBuf(o); n != 0 {
			t.Fatalf("opener waiting with nothing pending holds a %d-byte buffer", n)
		}
	}
	wait()
	for i, size := range []int{100, backend.MaxPlaintext, 3 * backend.MaxPlaintext} {
		msg := testenv.Pattern(size, byte(i+1))
		if _, err := us.WriteRecords(backend.TypeApplicationData, msg); err != nil {
			t.Fatal(err)
		}
		var got []byte
		var held []byte
		for len(got) < len(msg) {
			typ, data, err := o.ReadRecord()
			if err != nil || typ != backend.TypeApplicationData {
				t.Fatalf("ReadRecord: type %d, %v", typ, err)
			}
			if n, _ := kernel.ReadBuf(o); n == 0 {
				t.Fatal("ReadRecord returned data, and its opener holds no buffer")
			}
			held = kernel.HeldReadBuf(o)
			got = append(got, data...)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("message %d differs", i)
		}
		wait()
		if slices.ContainsFunc(held, func(c byte) bool { return c != 0 }) {
			t.Fatalf("message %d: the read buffer went back to its pool with plaintext in it", i)
		}
	}
}
