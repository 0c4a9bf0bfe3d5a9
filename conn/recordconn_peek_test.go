package conn

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// fakeRecord is a record of type t whose body is n bytes of b.
func fakeRecord(t byte, n int, b byte) []byte {
	rec := []byte{t, 3, 3, byte(n >> 8), byte(n)}
	return append(rec, bytes.Repeat([]byte{b}, n)...)
}

// readRecord reads one record through r as crypto/tls does: the header,
// then the body, in Reads of at most the size asked for.
func readRecord(t *testing.T, r io.Reader) []byte {
	t.Helper()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(r, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, recordLen(hdr))
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// TestRecordConnPeek checks the handshake reads through a peek
// (recordConn.fillAhead): crypto/tls gets the records in order, the log has
// each once, and after endHandshake the socket holds exactly what crypto/tls
// was not given, the counts say what it was, whether the records came in one
// segment or a byte at a time, and a record too long to peek is read as
// without a peek.
func TestRecordConnPeek(t *testing.T) {
	recs := [][]byte{fakeRecord(22, 90, 1), fakeRecord(20, 1, 2), fakeRecord(23, 700, 3), fakeRecord(23, 40, 4)}
	long := []byte{23, 3, 3, 0xff, 0xff, 9, 9}
	for _, tc := range []struct {
		name      string
		trickle   bool
		give      int    // records read through recordConn
		after     []byte // sent after the records
		wantAhead bool   // the peek path read them
	}{
		{name: "flight", give: 3, wantAhead: true},
		{name: "all", give: 4, after: []byte{23, 3}, wantAhead: true},
		{name: "trickle", trickle: true, give: 2, wantAhead: true},
		{name: "long", give: 0, after: long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testenv.TCPPair(t)
			defer a.Close()
			defer b.Close()
			r := newRecordConn(b)
			if r.peek == nil {
				if runtime.GOOS == "linux" {
					t.Fatal("no peek on a Linux TCP socket")
				}
				t.Skip("peek is Linux only")
			}
			var stream []byte
			for _, rec := range recs[:max(tc.give, 3)] {
				stream = append(stream, rec...)
			}
			if tc.name == "long" {
				stream = nil
			}
			stream = append(stream, tc.after...)
			go func() {
				if !tc.trickle {
					a.Write(stream)
					return
				}
				for i := range stream {
					a.Write(stream[i : i+1])
					time.Sleep(100 * time.Microsecond)
				}
			}()
			var given int
			for i := range tc.give {
				if tc.name == "flight" && i == tc.give-1 {
					// The last record peeked is read from the socket
					// when it is given to crypto/tls. A read deadline
					// already past fails that read: the Read fails,
					// nothing is lost, and the next Read has the record.
					b.SetReadDeadline(time.Now().Add(-time.Second))
					if n, err := r.Read(make([]byte, 5)); err == nil {
						t.Fatalf("Read %d bytes past an expired deadline", n)
					}
					b.SetReadDeadline(time.Time{})
				}
				got := readRecord(t, r)
				if !bytes.Equal(got, recs[i]) {
					t.Fatalf("record %d: %x, want %x", i, got, recs[i])
				}
				if tc.wantAhead && r.aheadBuf == nil {
					t.Fatalf("record %d was not peeked", i)
				}
				given += len(got)
			}
			if tc.name == "long" {
				// A header longer than any record: crypto/tls gets the
				// header alone and rejects it.
				hdr := make([]byte, 5)
				if _, err := io.ReadFull(r, hdr); err != nil || !bytes.Equal(hdr, long[:5]) {
					t.Fatalf("header %x, %v", hdr, err)
				}
				given = 5
			}
			if err := r.endHandshake(); err != nil {
				t.Fatal(err)
			}
			if n := len(r.buffered()); n != 0 {
				t.Fatalf("%d bytes buffered", n)
			}
			if r.readBytes() != uint64(given) {
				t.Fatalf("counted %d bytes read, crypto/tls was given %d", r.readBytes(), given)
			}
			if len(r.rxLog) != tc.give {
				t.Fatalf("%d records logged, %d given", len(r.rxLog), tc.give)
			}
			for i, rec := range r.rxLog {
				if !bytes.Equal(rec, recs[i]) {
					t.Fatalf("log %d: %x", i, rec)
				}
			}
			rest := make([]byte, len(stream)-given)
			b.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(b, rest); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rest, stream[given:]) {
				t.Fatalf("the socket holds %x, want %x", rest, stream[given:])
			}
			if r.ahead != nil || r.aheadBuf != nil || r.peek != nil {
				t.Fatal("the peek buffer is still held after endHandshake")
			}
		})
	}
}

// TestPlainHTTPToServer: a client that sends plain HTTP to a ktls server and
// waits gets crypto/tls's refusal at once, as from crypto/tls itself, whose
// record layer refuses the first header ("GET /" is no TLS record). The
// handshake peek must not wait for the 8,239 bytes that header seems to
// announce (peekRecords, plausibleHeader); it did, and Caddy's test of this
// timed out.
func TestPlainHTTPToServer(t *testing.T) {
	for _, kind := range []string{"crypto/tls", "ktls"} {
		t.Run(kind, func(t *testing.T) {
			a, b := testenv.TCPPair(t)
			defer a.Close()
			defer b.Close()
			_, scfg := testConfigs(tls.VersionTLS13)
			var s interface{ Handshake() error }
			if kind == "ktls" {
				s = Server(b, scfg, userspaceOptions())
			} else {
				s = tls.Server(b, scfg)
			}
			if _, err := a.Write([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { errc <- s.Handshake() }()
			select {
			case err := <-errc:
				var rhe tls.RecordHeaderError
				if !errors.As(err, &rhe) {
					t.Fatalf("handshake: %v, want a tls.RecordHeaderError", err)
				}
			case <-time.After(5 * time.Second):
				b.Close()
				<-errc
				t.Fatal("the server was still waiting 5 s after a plain HTTP request")
			}
		})
	}
}
