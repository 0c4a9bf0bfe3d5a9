package conn

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestFileOfNested: io.LimitedReaders nested in one another over a file are
// unwrapped, the tightest limit bounds the send, and consuming lowers every
// limit as reading through them would; one with nothing left is not a file
// to send.
func TestFileOfNested(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		name         string
		outer, inner int64
		ok           bool
		n            int64
	}{
		{"outer tighter", 10, 15, true, 10},
		{"inner tighter", 15, 10, true, 10},
		{"inner empty", 15, 0, false, 0},
	} {
		inner := &io.LimitedReader{R: f, N: tc.inner}
		outer := &io.LimitedReader{R: inner, N: tc.outer}
		src, ok := fileOf(outer)
		if ok != tc.ok {
			t.Fatalf("%s: fileOf ok = %v, want %v", tc.name, ok, tc.ok)
		}
		if !ok {
			continue
		}
		if src.f != f || src.n != tc.n {
			t.Fatalf("%s: fileOf = file %v, n %d; want the file, n %d", tc.name, src.f == f, src.n, tc.n)
		}
		src.consume(4)
		if outer.N != tc.outer-4 || inner.N != tc.inner-4 {
			t.Errorf("%s: after consuming 4 the limits are %d and %d, want %d and %d", tc.name, outer.N, inner.N, tc.outer-4, tc.inner-4)
		}
	}
}
