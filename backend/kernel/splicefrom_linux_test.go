package kernel_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

type spliceFromResult struct {
	sent              int64
	held              int
	records           uint64
	readErr, writeErr error
}

// kernelToUserspace connects a kernel sealer on one end of a TCP pair to a
// userspace opener on the other, keyed for s from sequence number 5.
func kernelToUserspace(t *testing.T, s keyschedule.Suite) (a net.Conn, ks backend.Sealer, o backend.Opener) {
	t.Helper()
	a, b := testenv.TCPPair(t)
	p := randomParams(s, 5)
	ks, err := kernel.New(kernel.Options{}).NewSealer(backend.Link{Conn: a}, clone(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ks.Close() })
	o, err = userspace.New().NewOpener(backend.Link{Conn: b}, clone(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return a, ks, o
}

// readRecords reads application data through o until want bytes came, and
// counts the records. It runs beside the sender, so it returns its error.
func readRecords(o backend.Opener, want int) (got []byte, records uint64, err error) {
	for len(got) < want {
		typ, d, err := o.ReadRecord()
		if err != nil {
			return got, records, fmt.Errorf("ReadRecord after %d of %d bytes: %w", len(got), want, err)
		}
		if typ != backend.TypeApplicationData {
			return got, records, fmt.Errorf("record of type %d", typ)
		}
		got = append(got, d...)
		records++
	}
	return got, records, nil
}

// TestSpliceFrom splices a TCP source into the kernel sealer for every
// suite, first a bounded part and then to the source's end; the userspace
// engine opens what arrives. The records SpliceFrom reports are those on
// the wire, and a bound leaves the source's other bytes in it.
func TestSpliceFrom(t *testing.T) {
	for _, s := range suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			require(t, true, s)
			a, ks, o := kernelToUserspace(t, s)
			data := testenv.Pattern(3<<20+12345, 31)
			r, w := testenv.TCPPair(t)
			go func() {
				w.Write(data)
				w.Close()
			}()
			ss := ks.(backend.SocketSender)
			src := rawConn(t, r.(*net.TCPConn))
			const first = 100_000
			for i, want := range []int64{first, -1} {
				res := make(chan spliceFromResult, 1)
				go func() {
					// SpliceFrom returns, as a Read, once src is empty
					// after it moved something: call it again, as
					// package conn does, until the bound or the end.
					var x spliceFromResult
					for x.readErr == nil && x.writeErr == nil && (want < 0 || x.sent < want) {
						m := want
						if want >= 0 {
							m = want - x.sent
						}
						sent, held, records, readErr, writeErr := ss.SpliceFrom(src, m)
						x.sent += sent
						x.held += held
						x.records += records
						x.readErr, x.writeErr = readErr, writeErr
					}
					res <- x
				}()
				n := first
				if want < 0 {
					n = len(data) - first
				}
				got, records, err := readRecords(o, n)
				if err != nil {
					a.Close()
					<-res
					t.Fatal(err)
				}
				x := <-res
				wantRead := error(nil)
				if want < 0 {
					wantRead = io.EOF
				}
				if x.sent != int64(n) || x.held != 0 || x.readErr != wantRead || x.writeErr != nil {
					t.Fatalf("SpliceFrom(%d) = sent %d, held %d, %v, %v; want %d, 0, %v, nil", want, x.sent, x.held, x.readErr, x.writeErr, n, wantRead)
				}
				if x.records != records {
					t.Errorf("SpliceFrom(%d) counted %d records, the wire had %d", want, x.records, records)
				}
				off := 0
				if i == 1 {
					off = first
				}
				if !bytes.Equal(got, data[off:off+n]) {
					t.Fatalf("SpliceFrom(%d): the data arrived changed", want)
				}
			}
		})
	}
}

// TestSpliceFromHeld: the TLS socket's write deadline passes while the peer
// does not read. SpliceFrom returns the timeout, and the bytes it had read
// from the source into the pipe and the socket did not take are held, not
// lost: the next WriteRecords sends them first, then its own, and a second
// SpliceFrom the source's rest. The peer gets every byte, in order.
func TestSpliceFromHeld(t *testing.T) {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	require(t, true, s)
	a, ks, o := kernelToUserspace(t, s)
	a.(*net.TCPConn).SetWriteBuffer(64 << 10)
	data := testenv.Pattern(16<<20, 32)
	r, w := testenv.TCPPair(t)
	go func() {
		w.Write(data)
		w.Close()
	}()
	ss := ks.(backend.SocketSender)
	src := rawConn(t, r.(*net.TCPConn))
	a.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	// SpliceFrom returns whenever the source runs dry, as a Read does;
	// call it again, as package conn does, until the socket fails.
	var sent int64
	var held int
	var readErr, writeErr error
	for readErr == nil && writeErr == nil {
		var m int64
		m, held, _, readErr, writeErr = ss.SpliceFrom(src, -1)
		sent += m
	}
	if !errors.Is(writeErr, os.ErrDeadlineExceeded) || readErr != nil {
		t.Fatalf("SpliceFrom against a peer that does not read = sent %d, held %d, %v, %v; want a write timeout", sent, held, readErr, writeErr)
	}
	if held <= 0 || sent+int64(held) >= int64(len(data)) {
		t.Fatalf("SpliceFrom timed out with sent %d, held %d of %d: nothing was left in the pipe, the test tests nothing", sent, held, len(data))
	}
	t.Logf("timed out after sending %d bytes, holding %d", sent, held)
	// The held bytes left the pipe: it is empty and serves the next call.
	ino, queued, ok := kernel.HalfPipe(ks)
	if !ok || queued != 0 {
		t.Fatalf("after the timeout: pipe kept %v, holding %d bytes; want kept, empty", ok, queued)
	}
	a.SetWriteDeadline(time.Time{})
	taken := int(sent) + held
	want := append(bytes.Clone(data[:taken]), "between"...)
	want = append(want, data[taken:]...)
	got := make(chan []byte, 1)
	go func() {
		b, _, err := readRecords(o, len(want))
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	if n, err := ks.WriteRecords(backend.TypeApplicationData, []byte("between")); n != 7 || err != nil {
		t.Fatalf("WriteRecords after the timeout = %d, %v", n, err)
	}
	var sent2 int64
	var held2 int
	for readErr, writeErr = nil, nil; readErr == nil && writeErr == nil; {
		// As above: until the end of the source.
		var m int64
		var h int
		m, h, _, readErr, writeErr = ss.SpliceFrom(src, -1)
		sent2 += m
		held2 += h
	}
	if sent2 != int64(len(data)-taken) || held2 != 0 || readErr != io.EOF || writeErr != nil {
		t.Fatalf("SpliceFrom of the rest = %d, %d, %v, %v; want %d, 0, EOF, nil", sent2, held2, readErr, writeErr, len(data)-taken)
	}
	if ino2, _, ok := kernel.HalfPipe(ks); !ok || ino2 != ino {
		t.Fatalf("SpliceFrom after the timeout used another pipe (kept %v)", ok)
	}
	if !bytes.Equal(<-got, want) {
		t.Fatal("the stream arrived changed: the held bytes were lost or out of order")
	}
}

// TestSpliceFromNotSupported: a source splice cannot read as a stream (a
// UDP socket, a regular file) is refused with ErrNotSupported, and nothing
// is read from it.
func TestSpliceFromNotSupported(t *testing.T) {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	require(t, true, s)
	_, ks, _ := kernelToUserspace(t, s)
	ss := ks.(backend.SocketSender)
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("file")
	for _, src := range []struct {
		name string
		c    syscall.Conn
	}{{"udp", u}, {"file", f}} {
		sent, held, records, readErr, writeErr := ss.SpliceFrom(rawConn(t, src.c), -1)
		if !errors.Is(writeErr, backend.ErrNotSupported) || sent != 0 || held != 0 || records != 0 || readErr != nil {
			t.Errorf("SpliceFrom(%s) = %d, %d, %d, %v, %v; want ErrNotSupported and nothing done", src.name, sent, held, records, readErr, writeErr)
		}
	}
	// The file was written, not read: its offset is still at its end.
	if pos, _ := f.Seek(0, io.SeekCurrent); pos != 4 {
		t.Errorf("the file's offset moved to %d", pos)
	}
}
