package conn

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"testing"

	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// captureReadFrom records the reader io.Copy hands its ReadFrom, as
// Conn.ReadFrom would get it.
type captureReadFrom struct{ got io.Reader }

func (w *captureReadFrom) Write(b []byte) (int, error) { return len(b), nil }

func (w *captureReadFrom) ReadFrom(r io.Reader) (int64, error) {
	w.got = r
	return 0, nil
}

// namedWrapper is a wrapper of this package's own, which may declare a Read
// of its own: it is never taken for the socket.
type namedWrapper struct{ *net.TCPConn }

type zeroSize struct{}

// TestSpliceSourceOf: which readers ReadFrom splices from. Above all, the
// reader io.Copy(conn, tcpConn) really hands ReadFrom (net's
// tcpConnWithoutWriteTo, through TCPConn.WriteTo), captured here rather
// than assumed; and nothing that could hold buffered bytes or mean its own
// Read.
func TestSpliceSourceOf(t *testing.T) {
	tcp, _ := testenv.TCPPair(t)
	tc := tcp.(*net.TCPConn)
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	uc, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	var capture captureReadFrom
	if _, err := io.Copy(&capture, tc); err != nil {
		t.Fatal(err)
	}
	if capture.got == nil || capture.got == io.Reader(tc) {
		t.Fatalf("io.Copy from a *net.TCPConn handed ReadFrom %T, not net's wrapper: the test no longer sees what it tests", capture.got)
	}
	t.Logf("io.Copy(w, tcpConn) hands w.ReadFrom a %T", capture.got)
	var nilTCP *net.TCPConn
	for _, tc := range []struct {
		name  string
		r     io.Reader
		want  bool
		n     int64
		isTCP bool
	}{
		{"TCPConn", tc, true, -1, true},
		{"UnixConn", uc, true, -1, false},
		{"net's wrapper from io.Copy", capture.got, true, -1, true},
		{"LimitedReader", io.LimitReader(tc, 1000), true, 1000, true},
		{"LimitedReader of net's wrapper", io.LimitReader(capture.got, 7), true, 7, true},
		{"LimitedReader with nothing left", io.LimitReader(tc, 0), false, 0, false},
		{"unnamed struct", struct{ *net.TCPConn }{tc}, true, -1, true},
		{"unnamed struct with a zero-size field", struct {
			zeroSize
			*net.TCPConn
		}{TCPConn: tc}, true, -1, true},
		{"unnamed struct with state", struct {
			*net.TCPConn
			n int
		}{tc, 1}, false, 0, false},
		{"unnamed struct of a nil conn", struct{ *net.TCPConn }{nilTCP}, false, 0, false},
		{"nil *TCPConn", nilTCP, false, 0, false},
		{"named wrapper elsewhere", namedWrapper{tc}, false, 0, false},
		{"pointer to a wrapper", &struct{ *net.TCPConn }{tc}, false, 0, false},
		{"bufio.Reader", bufio.NewReader(tc), false, 0, false},
		{"net.Conn wrapped in an interface field", struct{ net.Conn }{tc}, false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, ok := spliceSourceOf(tc.r)
			if ok != tc.want {
				t.Fatalf("spliceSourceOf(%T) = %v, want %v", tc.r, ok, tc.want)
			}
			if !ok {
				return
			}
			if src.n != tc.n || src.rc == nil {
				t.Errorf("spliceSourceOf(%T) = n %d, rc %v; want n %d", tc.r, src.n, src.rc, tc.n)
			}
			if _, isTCP := src.conn.(*net.TCPConn); isTCP != tc.isTCP {
				t.Errorf("spliceSourceOf(%T) found %T", tc.r, src.conn)
			}
		})
	}
}
