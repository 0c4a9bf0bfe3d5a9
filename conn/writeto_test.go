package conn_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// TestWriteTo copies from ktls with io.Copy, which is Conn.WriteTo, into
// each kind of destination: those the kernel engine splices into (a pipe, a
// regular file, a TCP socket) and a plain writer, for every suite in both
// roles, with the engines auto picks (in the VM: splice where RX is in the
// kernel, Read otherwise). The peer's session tickets and close_notify come
// between and after the data.
func TestWriteTo(t *testing.T) {
	size := 1 << 20
	data := testenv.Pattern(size, 11)
	for _, tc := range ktlstest.InteropSuites {
		t.Run(tc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			for _, dst := range []string{"pipe", "file", "tcp", "buffer"} {
				t.Run(dst, func(t *testing.T) {
					ccfg, scfg := testpki.Configs(tc.Version, tc.Suite)
					ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
					k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
					defer k.Close()
					ktlstest.WantAuto(t, k)
					go func() {
						s.Write(data)
						s.Close()
					}()
					w, collect := writeToDst(t, dst)
					n, err := io.Copy(w, k)
					if err != nil || n != int64(size) {
						t.Fatalf("io.Copy = %d, %v; want %d, nil", n, err, size)
					}
					if got := collect(); !bytes.Equal(got, data) {
						t.Fatalf("%d bytes arrived, %d sent, or they differ", len(got), size)
					}
				})
			}
		}))
	}
}

// TestWriteToStdlib: with crypto/tls's own record layer, WriteTo copies
// through crypto/tls.
func TestWriteToStdlib(t *testing.T) {
	data := testenv.Pattern(1<<20, 12)
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, s := ktlstest.PairWithStock(t, true, ccfg, scfg, ktls.WithBackend("stdlib"))
	defer k.Close()
	ktlstest.WantBackend(t, k, "stdlib", "stdlib")
	go func() {
		s.Write(data)
		s.Close()
	}()
	w, collect := writeToDst(t, "pipe")
	n, err := io.Copy(w, k)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("io.Copy = %d, %v; want %d, nil", n, err, len(data))
	}
	if !bytes.Equal(collect(), data) {
		t.Fatal("the data arrived changed")
	}
}

// writeToDst makes a destination of a kind for TestWriteTo, and a function
// that closes it and returns what it got.
func writeToDst(t *testing.T, kind string) (io.Writer, func() []byte) {
	t.Helper()
	drain := func(r io.ReadCloser, w io.Closer) func() []byte {
		res := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(r)
			r.Close()
			res <- b
		}()
		return func() []byte {
			w.Close()
			return <-res
		}
	}
	switch kind {
	case "pipe":
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return w, drain(r, w)
	case "file":
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		return f, func() []byte {
			f.Close()
			b, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	case "tcp":
		a, b := testenv.TCPPair(t)
		return a, drain(b, a)
	default:
		var buf bytes.Buffer
		return &buf, func() []byte { return buf.Bytes() }
	}
}
