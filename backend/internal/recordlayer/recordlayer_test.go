package recordlayer

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
)

// goEngine is the record layer over Go's AEADs: the userspace engine.
func goEngine() backend.Backend { return New(backend.Userspace, nil) }

var (
	suiteName    = testenv.SuiteName
	randomParams = testenv.RandomParams
	cloneParams  = testenv.CloneParams
)

// zero clears a Params' key and IV, as the contract says the caller does.
func zero(p backend.Params) {
	clear(p.Key)
	clear(p.IV)
}

func newHalves(t testing.TB, w, r net.Conn, p backend.Params, buffered []byte) (backend.Sealer, backend.Opener) {
	t.Helper()
	e := goEngine()
	pw, pr := cloneParams(p), cloneParams(p)
	s, err := e.NewSealer(backend.Link{Conn: w}, pw)
	if err != nil {
		t.Fatal(err)
	}
	o, err := e.NewOpener(backend.Link{Conn: r, Buffered: buffered}, pr)
	if err != nil {
		t.Fatal(err)
	}
	// The engine keeps no reference to the caller's key and IV.
	zero(pw)
	zero(pr)
	t.Cleanup(func() { s.Close(); o.Close() })
	return s, o
}

func pipePair(t testing.TB) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// message is one WriteRecords call.
type message struct {
	typ  uint8
	data []byte
}

// readMessage reads records until it has len(m.data) bytes of type m.typ (a
// message of more than 2^14 bytes spans records; an empty application_data
// message is one empty record).
func readMessage(t *testing.T, o backend.Opener, m message) {
	t.Helper()
	var got []byte
	for first := true; first || len(got) < len(m.data); first = false {
		typ, data, err := o.ReadRecord()
		if err != nil {
			t.Fatalf("ReadRecord after %d of %d bytes: %v", len(got), len(m.data), err)
		}
		if typ != m.typ {
			t.Fatalf("type %d, want %d", typ, m.typ)
		}
		if len(data) > backend.MaxPlaintext {
			t.Fatalf("record of %d bytes", len(data))
		}
		got = append(got, data...)
	}
	if !bytes.Equal(got, m.data) {
		t.Fatalf("message of %d bytes differs", len(m.data))
	}
}

// TestDifferential sends random messages through a Sealer and an Opener,
// over net.Pipe (no buffering at all) and loopback TCP (read-ahead across
// records), for every suite, rekeying both halves in the middle.
func TestDifferential(t *testing.T) {
	for _, transport := range []string{"pipe", "tcp"} {
		for _, s := range keyschedule.Suites() {
			t.Run(transport+"/"+suiteName(s), func(t *testing.T) {
				t.Parallel()
				var a, b net.Conn
				if transport == "pipe" {
					a, b = pipePair(t)
				} else {
					a, b = testenv.TCPPair(t)
				}
				rng := mrand.New(mrand.NewPCG(uint64(s.ID), uint64(len(transport))))
				p := randomParams(s, rng.Uint64()>>1)
				sealer, opener := newHalves(t, a, b, p, nil)

				sizes := []int{0, 1, 2, 15, 16, 17, 100, 1000, backend.MaxPlaintext - 1, backend.MaxPlaintext, backend.MaxPlaintext + 1, 4 * backend.MaxPlaintext, 4*backend.MaxPlaintext + 1, 200000}
				for range 40 {
					sizes = append(sizes, rng.IntN(backend.MaxPlaintext+1))
				}
				var msgs []message
				for _, n := range sizes {
					typ := backend.TypeApplicationData
					if n > 0 && rng.IntN(4) == 0 {
						typ = backend.TypeHandshake
					}
					d := make([]byte, n)
					rand.Read(d)
					msgs = append(msgs, message{typ, d})
				}
				rekeyAt := len(msgs) / 2
				next := randomParams(s, 0)

				// The writer rekeys right after message rekeyAt-1 and
				// keeps writing: over TCP the reader has already read
				// records under the new key into its buffer when it
				// rekeys.
				errc := make(chan error, 1)
				go func() {
					for i, m := range msgs {
						if i == rekeyAt {
							if err := sealer.(backend.Rekeyer).Rekey(cloneParams(next)); err != nil {
								errc <- err
								return
							}
						}
						n, err := sealer.WriteRecords(m.typ, m.data)
						if err != nil || n != len(m.data) {
							errc <- fmt.Errorf("WriteRecords(%d bytes) = %d, %v", len(m.data), n, err)
							return
						}
					}
					errc <- nil
				}()
				for i, m := range msgs {
					if i == rekeyAt {
						if err := opener.(backend.Rekeyer).Rekey(cloneParams(next)); err != nil {
							t.Fatal(err)
						}
					}
					readMessage(t, opener, m)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				// Nothing else is in the stream.
				a.Close()
				if _, _, err := opener.ReadRecord(); err != io.EOF && !errors.Is(err, io.ErrClosedPipe) {
					t.Fatalf("after the last record: %v, want EOF", err)
				}
			})
		}
	}
}

// TestEmptyWrites: an empty application_data write is one empty record;
// other empty writes write nothing.
func TestEmptyWrites(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		c := &captureConn{}
		p := randomParams(s, 0)
		sealer, err := goEngine().NewSealer(backend.Link{Conn: c}, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range []uint8{backend.TypeHandshake, backend.TypeAlert, backend.TypeApplicationData} {
			if n, err := sealer.WriteRecords(typ, nil); n != 0 || err != nil {
				t.Fatalf("%d: %d %v", typ, n, err)
			}
		}
		if c.writes != 1 {
			t.Fatalf("%s: %d writes", suiteName(s), c.writes)
		}
		o, err := goEngine().NewOpener(backend.Link{Conn: eofConn{}, Buffered: c.buf.Bytes()}, p)
		if err != nil {
			t.Fatal(err)
		}
		typ, data, err := o.ReadRecord()
		if err != nil || typ != backend.TypeApplicationData || len(data) != 0 {
			t.Fatalf("%s: %d %q %v", suiteName(s), typ, data, err)
		}
		if _, _, err := o.ReadRecord(); err != io.EOF {
			t.Fatalf("%s: %v", suiteName(s), err)
		}
	}
}

// captureConn is a net.Conn that keeps what is written and counts Writes.
type captureConn struct {
	net.Conn
	buf    bytes.Buffer
	writes int
	limit  int   // if > 0, Writes fail once this many bytes went in
	err    error // the error they fail with
}

func (c *captureConn) Write(b []byte) (int, error) {
	c.writes++
	if c.limit > 0 && c.buf.Len()+len(b) > c.limit {
		n := c.limit - c.buf.Len()
		c.buf.Write(b[:n])
		return n, c.err
	}
	return c.buf.Write(b)
}

// eofConn reads EOF.
type eofConn struct{ net.Conn }

func (eofConn) Read([]byte) (int, error) { return 0, io.EOF }

// readerConn reads from r, in pieces of at most chunk bytes if chunk > 0.
type readerConn struct {
	net.Conn
	r     io.Reader
	chunk int
}

func (c *readerConn) Read(b []byte) (int, error) {
	if c.chunk > 0 && len(b) > c.chunk {
		b = b[:c.chunk]
	}
	return c.r.Read(b)
}

func TestBatching(t *testing.T) {
	s := keyschedule.Suites()[0]
	for _, tt := range []struct {
		n, writes int
	}{
		{1, 1},
		{backend.MaxPlaintext, 1},
		{4 * backend.MaxPlaintext, 1},
		{4*backend.MaxPlaintext + 1, 2},
		{1 << 20, 16},
	} {
		c := &captureConn{}
		sealer, _ := goEngine().NewSealer(backend.Link{Conn: c}, randomParams(s, 0))
		if n, err := sealer.WriteRecords(backend.TypeApplicationData, make([]byte, tt.n)); n != tt.n || err != nil {
			t.Fatal(n, err)
		}
		if c.writes != tt.writes {
			t.Errorf("%d bytes: %d Writes, want %d", tt.n, c.writes, tt.writes)
		}
		recs := (tt.n + backend.MaxPlaintext - 1) / backend.MaxPlaintext
		if want := tt.n + recs*(record.HeaderLen+17); c.buf.Len() != want {
			t.Errorf("%d bytes: %d on the wire, want %d", tt.n, c.buf.Len(), want)
		}
	}
}

// TestWriteErrorSticky: a failing Write reports the plaintext of the records
// that went out whole, and every later call fails the same way.
func TestWriteErrorSticky(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		recLen := record.HeaderLen + backend.MaxPlaintext
		p := randomParams(s, 0)
		prot, _ := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
		recLen += prot.Overhead()
		boom := errors.New("boom")
		for _, limit := range []int{1, recLen - 1, recLen, recLen + 1, 2*recLen + 7, 5 * recLen} {
			c := &captureConn{limit: limit, err: boom}
			sealer, _ := goEngine().NewSealer(backend.Link{Conn: c}, p)
			n, err := sealer.WriteRecords(backend.TypeApplicationData, make([]byte, 6*backend.MaxPlaintext))
			if want := limit / recLen * backend.MaxPlaintext; n != want || err != boom {
				t.Errorf("%s limit %d: %d, %v; want %d, boom", suiteName(s), limit, n, err, want)
			}
			if n, err := sealer.WriteRecords(backend.TypeApplicationData, []byte("x")); n != 0 || err != boom {
				t.Errorf("after the error: %d %v", n, err)
			}
			if err := sealer.(backend.Rekeyer).Rekey(p); err != boom {
				t.Errorf("Rekey after the error: %v", err)
			}
		}
	}
}

func TestSequenceExhaustion(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		p := randomParams(s, math.MaxUint64-3)
		c := &captureConn{}
		sealer, _ := goEngine().NewSealer(backend.Link{Conn: c}, p)
		// Records at 2^64-4, -3, -2 go out; 2^64-1 is never used.
		n, err := sealer.WriteRecords(backend.TypeApplicationData, make([]byte, 4*backend.MaxPlaintext))
		if n != 3*backend.MaxPlaintext || !errors.Is(err, errSeqExhausted) {
			t.Fatalf("%s: %d %v", suiteName(s), n, err)
		}
		if _, err := sealer.WriteRecords(backend.TypeApplicationData, nil); !errors.Is(err, errSeqExhausted) {
			t.Fatalf("not sticky: %v", err)
		}
		o, _ := goEngine().NewOpener(backend.Link{Conn: eofConn{}, Buffered: append(c.buf.Bytes(), c.buf.Bytes()[:100]...)}, p)
		for range 3 {
			if _, d, err := o.ReadRecord(); err != nil || len(d) != backend.MaxPlaintext {
				t.Fatalf("%s: %v", suiteName(s), err)
			}
		}
		if _, _, err := o.ReadRecord(); !errors.Is(err, errSeqExhausted) {
			t.Fatalf("%s: opener at 2^64-1: %v", suiteName(s), err)
		}
		// A Rekey (TLS 1.3 KeyUpdate) is the way on, for a Sealer that
		// has not failed.
		p2 := randomParams(s, math.MaxUint64-1)
		sealer2, _ := goEngine().NewSealer(backend.Link{Conn: &captureConn{}}, p2)
		if err := sealer2.(backend.Rekeyer).Rekey(randomParams(s, 0)); err != nil {
			t.Fatal(err)
		}
		if _, err := sealer2.WriteRecords(backend.TypeApplicationData, []byte("fresh")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNotSupported(t *testing.T) {
	e := goEngine()
	if e.Name() != backend.Userspace {
		t.Errorf("Name %q", e.Name())
	}
	c, _ := pipePair(t)
	for _, p := range []backend.Params{
		{Version: tls.VersionTLS12, CipherSuite: tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, Key: make([]byte, 16), IV: make([]byte, 16)},
		{Version: tls.VersionTLS11, CipherSuite: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, Key: make([]byte, 16), IV: make([]byte, 4)},
		{Version: tls.VersionTLS12, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Key: make([]byte, 16), IV: make([]byte, 12)},
		{Version: 0, CipherSuite: 0},
	} {
		if _, err := e.NewSealer(backend.Link{Conn: c}, p); !errors.Is(err, backend.ErrNotSupported) {
			t.Errorf("NewSealer %+v: %v", p, err)
		}
		if _, err := e.NewOpener(backend.Link{Conn: c}, p); !errors.Is(err, backend.ErrNotSupported) {
			t.Errorf("NewOpener %+v: %v", p, err)
		}
		if err := e.(backend.Checker).Check(true, p.Version, p.CipherSuite); !errors.Is(err, backend.ErrNotSupported) {
			t.Errorf("Check %+v: %v", p, err)
		}
	}
	for _, s := range keyschedule.Suites() {
		if err := e.(backend.Checker).Check(false, s.Version, s.ID); err != nil {
			t.Errorf("Check %s: %v", suiteName(s), err)
		}
		// A key of the wrong length is a caller bug, not "not supported".
		p := randomParams(s, 0)
		p.Key = p.Key[:len(p.Key)-1]
		if _, err := e.NewSealer(backend.Link{Conn: c}, p); err == nil || errors.Is(err, backend.ErrNotSupported) || !strings.HasPrefix(err.Error(), "userspace: ") {
			t.Errorf("short key: %v", err)
		}
		// Rekey to another version is refused.
		sealer, _ := e.NewSealer(backend.Link{Conn: c}, randomParams(s, 0))
		other := randomParams(keyschedule.Suites()[0], 0)
		if s.Version == tls.VersionTLS13 {
			other = randomParams(keyschedule.Suites()[3], 0)
		}
		if err := sealer.(backend.Rekeyer).Rekey(other); err == nil {
			t.Errorf("Rekey across versions accepted")
		}
	}
}

// TestOpenerTimeout: a deadline in the middle of a record is returned as
// is, is not permanent, and loses no byte.
func TestOpenerTimeout(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		a, b := pipePair(t)
		p := randomParams(s, 5)
		prot, _ := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
		stream := prot.Seal(nil, 5, backend.TypeApplicationData, []byte("first record"))
		stream = prot.Seal(stream, 6, backend.TypeApplicationData, bytes.Repeat([]byte("second"), 1000))
		_, o := newHalves(t, a, b, p, nil)

		// Nothing at all, then 3 bytes of header, then 3 bytes of body:
		// each time a timeout.
		for _, n := range []int{0, 3, 5} {
			piece := stream[:n]
			stream = stream[n:]
			done := make(chan struct{})
			b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			go func() {
				defer close(done)
				if len(piece) > 0 {
					a.Write(piece) // net.Pipe: returns once read
				}
			}()
			_, _, err := o.ReadRecord()
			<-done
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("%s: %v, want a timeout", suiteName(s), err)
			}
		}
		b.SetReadDeadline(time.Time{})
		go a.Write(stream)
		if _, d, err := o.ReadRecord(); err != nil || string(d) != "first record" {
			t.Fatalf("%s: after timeouts: %q %v", suiteName(s), d, err)
		}
		if _, d, err := o.ReadRecord(); err != nil || len(d) != 6000 {
			t.Fatalf("%s: second: %v", suiteName(s), err)
		}
	}
}

// TestBuffered: Link.Buffered is read first, and may end anywhere, even
// inside a header.
func TestBuffered(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		p := randomParams(s, 0)
		prot, _ := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
		var stream []byte
		var want []string
		for i := range 10 {
			m := fmt.Sprintf("record %d %s", i, strings.Repeat("x", i*1000))
			want = append(want, m)
			stream = prot.Seal(stream, uint64(i), backend.TypeApplicationData, []byte(m))
		}
		for _, cut := range []int{0, 1, 4, 5, 6, 50, len(stream) / 2, len(stream) - 1, len(stream)} {
			for _, chunk := range []int{0, 1, 7} {
				buffered := bytes.Clone(stream[:cut])
				conn := &readerConn{r: bytes.NewReader(stream[cut:]), chunk: chunk}
				o, err := goEngine().NewOpener(backend.Link{Conn: conn, Buffered: buffered}, p)
				if err != nil {
					t.Fatal(err)
				}
				clear(buffered) // the engine copied it
				for i, m := range want {
					if _, d, err := o.ReadRecord(); err != nil || string(d) != m {
						t.Fatalf("%s cut %d chunk %d record %d: %v", suiteName(s), cut, chunk, i, err)
					}
				}
				if _, _, err := o.ReadRecord(); err != io.EOF {
					t.Fatalf("end: %v", err)
				}
				if _, _, err := o.ReadRecord(); err != io.EOF {
					t.Fatalf("EOF is not sticky: %v", err)
				}
			}
		}
		// A Buffered larger than the read buffer.
		var big []byte
		for i := range 8 {
			big = prot.Seal(big, uint64(i), backend.TypeApplicationData, make([]byte, backend.MaxPlaintext))
		}
		o, _ := goEngine().NewOpener(backend.Link{Conn: eofConn{}, Buffered: big}, p)
		for range 8 {
			if _, d, err := o.ReadRecord(); err != nil || len(d) != backend.MaxPlaintext {
				t.Fatalf("big Buffered: %v", err)
			}
		}
	}
}

// TestOpenerAdversarial feeds the Opener broken streams: each gives the
// right alert, permanently, and never a panic.
func TestOpenerAdversarial(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			p := randomParams(s, 1000)
			prot, _ := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
			good := prot.Seal(nil, 1000, backend.TypeApplicationData, []byte("genuine"))
			tls13 := s.Version == tls.VersionTLS13

			// sealInner13 protects an arbitrary TLSInnerPlaintext with
			// a second Protector trick: Seal content with a zero type.
			allZero := prot.Seal(nil, 1000, 0, make([]byte, 10))

			mut := func(f func(r []byte) []byte) []byte { return f(bytes.Clone(good)) }
			cases := []struct {
				name   string
				stream []byte
				want   error // a tls.AlertError or an io error
			}{
				{"tampered tag", mut(func(r []byte) []byte { r[len(r)-1] ^= 1; return r }), tls.AlertError(20)},
				{"tampered body", mut(func(r []byte) []byte { r[record.HeaderLen+prot.Overhead()-16] ^= 0x40; return r }), tls.AlertError(20)},
				{"truncated", good[:len(good)-1], io.ErrUnexpectedEOF},
				{"truncated header", good[:3], io.ErrUnexpectedEOF},
				{"oversized", mut(func(r []byte) []byte {
					r[3], r[4] = byte((record.MaxCiphertext(s.Version)+1)>>8), byte(record.MaxCiphertext(s.Version)+1)
					return r
				}), tls.AlertError(22)},
				{"wrong version 0x0301", mut(func(r []byte) []byte { r[2] = 1; return r }), tls.AlertError(70)},
				{"wrong version 0x0304", mut(func(r []byte) []byte { r[2] = 4; return r }), tls.AlertError(70)},
				{"zero length", []byte{good[0], 3, 3, 0, 0}, tls.AlertError(50)},
				{"shorter than the tag", mut(func(r []byte) []byte { r[3], r[4] = 0, 15; return r[:record.HeaderLen+15] }), tls.AlertError(50)},
				{"wrong sequence number", prot.Seal(nil, 999, backend.TypeApplicationData, []byte("replayed")), tls.AlertError(20)},
			}
			if tls13 {
				cases = append(cases,
					struct {
						name   string
						stream []byte
						want   error
					}{"all-zero inner plaintext", allZero, tls.AlertError(10)},
					struct {
						name   string
						stream []byte
						want   error
					}{"outer type handshake", mut(func(r []byte) []byte { r[0] = 22; return r }), tls.AlertError(10)},
					struct {
						name   string
						stream []byte
						want   error
					}{"outer type change_cipher_spec", []byte{20, 3, 3, 0, 1, 1}, tls.AlertError(10)},
				)
			} else {
				cases = append(cases, struct {
					name   string
					stream []byte
					want   error
				}{"outer type changed", mut(func(r []byte) []byte { r[0] = 22; return r }), tls.AlertError(20)})
			}
			for _, tc := range cases {
				// Once buffered, once through the conn.
				for _, viaBuffered := range []bool{true, false} {
					l := backend.Link{Conn: &readerConn{r: bytes.NewReader(tc.stream)}}
					if viaBuffered {
						l = backend.Link{Conn: eofConn{}, Buffered: tc.stream}
					}
					o, err := goEngine().NewOpener(l, cloneParams(p))
					if err != nil {
						t.Fatal(err)
					}
					_, _, err = o.ReadRecord()
					checkErr(t, tc.name, err, tc.want)
					_, _, err2 := o.ReadRecord()
					if err2 != err {
						t.Errorf("%s: not sticky: %v then %v", tc.name, err, err2)
					}
				}
			}
			// A good record, then garbage: the good one comes out first.
			stream := append(bytes.Clone(good), 23, 3, 3, 0xff, 0xff)
			o, _ := goEngine().NewOpener(backend.Link{Conn: eofConn{}, Buffered: stream}, p)
			if _, d, err := o.ReadRecord(); err != nil || string(d) != "genuine" {
				t.Fatal(err)
			}
			_, _, err := o.ReadRecord()
			checkErr(t, "garbage after a good record", err, tls.AlertError(22))
		})
	}
}

func checkErr(t *testing.T, name string, err, want error) {
	t.Helper()
	if a, ok := want.(tls.AlertError); ok {
		var got tls.AlertError
		if !errors.As(err, &got) || got != a {
			t.Errorf("%s: %v, want alert %d (%v)", name, err, uint8(a), a)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "record: ") && !strings.HasPrefix(err.Error(), "userspace: ") {
			t.Errorf("%s: %q lacks a package prefix", name, err)
		}
		return
	}
	if err != want {
		t.Errorf("%s: %v, want %v", name, err, want)
	}
}

func TestClose(t *testing.T) {
	s := keyschedule.Suites()[0]
	a, b := pipePair(t)
	sealer, opener := newHalves(t, a, b, randomParams(s, 0), nil)
	if err := sealer.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sealer.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sealer.WriteRecords(backend.TypeApplicationData, []byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
	// Close while a ReadRecord is blocked does not wait for it; the
	// blocked call returns when the link does.
	done := make(chan error, 1)
	go func() { _, _, err := opener.ReadRecord(); done <- err }()
	time.Sleep(20 * time.Millisecond)
	if err := opener.Close(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := <-done; err == nil {
		t.Error("blocked ReadRecord returned no error")
	}
	if _, _, err := opener.ReadRecord(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
}

// TestConcurrentHalves runs both directions of two connections at once
// under the race detector: one Sealer and one Opener per direction, the
// halves of one side used from different goroutines.
func TestConcurrentHalves(t *testing.T) {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256)
	a, b := testenv.TCPPair(t)
	pab, pba := randomParams(s, 0), randomParams(s, 0)
	sab, oab := newHalves(t, a, b, pab, nil)
	sba, oba := newHalves(t, b, a, pba, nil)
	var wg sync.WaitGroup
	msg := bytes.Repeat([]byte("0123456789abcdef"), 3000)
	for _, pr := range []struct {
		s backend.Sealer
		o backend.Opener
	}{{sab, oab}, {sba, oba}} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := pr.s.WriteRecords(backend.TypeApplicationData, msg); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			got := 0
			for got < 50*len(msg) {
				_, d, err := pr.o.ReadRecord()
				if err != nil {
					t.Error(err)
					return
				}
				got += len(d)
			}
		}()
	}
	wg.Wait()
}

// discardConn accepts every Write.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }

// streamConn serves a stream of records, generated on demand.
type streamConn struct {
	net.Conn
	next func() []byte
	cur  []byte
}

func (c *streamConn) Read(b []byte) (int, error) {
	if len(c.cur) == 0 {
		c.cur = c.next()
	}
	n := copy(b, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

func TestSteadyStateAllocs(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		p := randomParams(s, 0)
		sealer, _ := goEngine().NewSealer(backend.Link{Conn: discardConn{}}, p)
		for _, n := range []int{0, 100, backend.MaxPlaintext, 100000} {
			data := make([]byte, n)
			sealer.WriteRecords(backend.TypeApplicationData, data) // warm the buffer
			if a := testing.AllocsPerRun(50, func() {
				if _, err := sealer.WriteRecords(backend.TypeApplicationData, data); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Errorf("%s: WriteRecords(%d) allocates %v times", suiteName(s), n, a)
			}
		}

		// A stream of full records, pre-sealed in a ring: the allocation
		// check must not count the producer.
		prot, _ := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
		const ring = 200
		var recs [][]byte
		for i := range ring {
			recs = append(recs, prot.Seal(nil, uint64(i), backend.TypeApplicationData, make([]byte, backend.MaxPlaintext)))
		}
		i := 0
		conn := &streamConn{next: func() []byte { r := recs[i%ring]; i++; return r }}
		o, _ := goEngine().NewOpener(backend.Link{Conn: conn}, p)
		if a := testing.AllocsPerRun(ring-2, func() {
			if _, _, err := o.ReadRecord(); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("%s: ReadRecord allocates %v times", suiteName(s), a)
		}
	}
}

// FuzzReadRecord runs arbitrary streams through an Opener, delivered in
// pieces of arbitrary size: never a panic, never a record over 2^14 bytes,
// and every error an alert or an end of stream.
func FuzzReadRecord(f *testing.F) {
	suites := keyschedule.Suites()
	params := make([]backend.Params, len(suites))
	for i, s := range suites {
		params[i] = backend.Params{Version: s.Version, CipherSuite: s.ID, Key: bytes.Repeat([]byte{byte(i + 1)}, s.KeyLen), IV: bytes.Repeat([]byte{0x42}, s.IVLen)}
		prot, _ := record.NewProtector(s.Version, s.ID, params[i].Key, params[i].IV)
		var stream []byte
		for seq, m := range []string{"one", "", "three"} {
			stream = prot.Seal(stream, uint64(seq), backend.TypeApplicationData, []byte(m))
		}
		f.Add(uint8(i), uint16(0), stream)
		f.Add(uint8(i), uint16(3), stream)
		f.Add(uint8(i), uint16(1), stream[:len(stream)-2])
	}
	f.Add(uint8(0), uint16(0), []byte{23, 3, 3, 0, 0})
	f.Add(uint8(3), uint16(0), []byte{21, 3, 3, 0x48, 0x01})
	f.Fuzz(func(t *testing.T, which uint8, chunk uint16, stream []byte) {
		p := params[int(which)%len(params)]
		conn := &readerConn{r: bytes.NewReader(stream), chunk: int(chunk)}
		o, err := goEngine().NewOpener(backend.Link{Conn: conn}, cloneParams(p))
		if err != nil {
			t.Fatal(err)
		}
		for range len(stream) + 1 {
			_, d, err := o.ReadRecord()
			if err == nil {
				if len(d) > backend.MaxPlaintext {
					t.Fatalf("record of %d bytes", len(d))
				}
				continue
			}
			var a tls.AlertError
			if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.As(err, &a) {
				t.Fatalf("error %v", err)
			}
			return
		}
		t.Fatal("more records than bytes")
	})
}

// TestReadBufferGrows checks that an Opener starts with no buffer, takes one
// of one largest record, keeps that size while the peer sends records one at
// a time, and grows it to readBufSize once a Read fills it (the peer
// streams), with every record intact across the move.
func TestReadBufferGrows(t *testing.T) {
	s := keyschedule.Suites()[0]
	w, r := testenv.TCPPair(t)
	sealer, op := newHalves(t, w, r, randomParams(s, 0), nil)
	o := op.(*opener)
	if o.buf != nil {
		t.Fatalf("new opener holds a buffer of %d bytes before any record", len(o.buf))
	}
	if _, err := sealer.WriteRecords(backend.TypeApplicationData, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := o.ReadRecord(); err != nil || string(data) != "first" {
		t.Fatalf("first record: %q, %v", data, err)
	}
	// The first record, small, was in the socket when the buffer was
	// taken: a tiny buffer (a server's first request).
	if len(o.buf) != tinyReadBuf {
		t.Fatalf("buffer of %d bytes after the first record, want %d", len(o.buf), tinyReadBuf)
	}
	// A record that does not fit it: the buffer grows to one record.
	big := make([]byte, 2*tinyReadBuf)
	rand.Read(big)
	if _, err := sealer.WriteRecords(backend.TypeApplicationData, big); err != nil {
		t.Fatal(err)
	}
	if _, data, err := o.ReadRecord(); err != nil || !bytes.Equal(data, big) {
		t.Fatalf("record larger than the tiny buffer: %d bytes, %v", len(data), err)
	}
	if len(o.buf) != smallReadBuf {
		t.Fatalf("buffer of %d bytes after a record of %d, want %d", len(o.buf), len(big), smallReadBuf)
	}
	// One small record at a time: the buffer stays small.
	for i := range 5 {
		msg := []byte{byte(i), 1, 2, 3}
		if _, err := sealer.WriteRecords(backend.TypeApplicationData, msg); err != nil {
			t.Fatal(err)
		}
		if _, data, err := o.ReadRecord(); err != nil || !bytes.Equal(data, msg) {
			t.Fatalf("record %d: %x, %v", i, data, err)
		}
	}
	if len(o.buf) != smallReadBuf {
		t.Fatalf("buffer grew to %d bytes without a stream", len(o.buf))
	}
	// A stream of full records, already in the socket: a Read fills the
	// buffer and the next call grows it.
	// Three records (49 KiB) fit in any loopback socket buffer, so the
	// write cannot block before the read.
	want := make([]byte, 3*backend.MaxPlaintext)
	rand.Read(want)
	if _, err := sealer.WriteRecords(backend.TypeApplicationData, want); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < len(want) {
		_, data, err := o.ReadRecord()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, data...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("streamed records differ")
	}
	if len(o.buf) != readBufSize {
		t.Fatalf("buffer of %d bytes after a stream, want %d", len(o.buf), readBufSize)
	}
}

// TestIdleHalvesHoldNoBuffer: between calls a Sealer holds no buffer, and an
// Opener whose link is a socket gives its buffer back when it has to wait
// for the peer with nothing pending (a server's idle keep-alive connection
// waits so), and reads on after that with every record intact; one with
// half a record pending keeps it (issue 18).
func TestIdleHalvesHoldNoBuffer(t *testing.T) {
	s := keyschedule.Suites()[0]
	w, r := testenv.TCPPair(t)
	sh, op := newHalves(t, w, r, randomParams(s, 0), nil)
	o := op.(*opener)
	sl := sh.(*sealer)
	timeout := func() {
		t.Helper()
		r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		defer r.SetReadDeadline(time.Time{})
		if _, _, err := o.ReadRecord(); !isTimeout(err) {
			t.Fatalf("ReadRecord on an idle socket: %v, want a timeout", err)
		}
	}
	// A new half waiting for its first record peeks and takes no buffer.
	gets := tinyReadBufs.Gets() + smallReadBufs.Gets() + bigReadBufs.Gets()
	timeout()
	if o.buf != nil || tinyReadBufs.Gets()+smallReadBufs.Gets()+bigReadBufs.Gets() != gets {
		t.Fatalf("new opener waiting for its first record took a buffer (holds %d bytes)", len(o.buf))
	}
	for i := range 3 {
		msg := bytes.Repeat([]byte{byte(i)}, 100+i*backend.MaxPlaintext)
		if _, err := sh.WriteRecords(backend.TypeApplicationData, msg); err != nil {
			t.Fatal(err)
		}
		if sl.buf != nil {
			t.Fatalf("sealer holds %d bytes after WriteRecords", cap(sl.buf))
		}
		var got []byte
		for len(got) < len(msg) {
			_, data, err := o.ReadRecord()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, data...)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("message %d differs", i)
		}
		held := o.bufp
		timeout()
		if o.buf != nil {
			t.Fatalf("opener waiting with nothing pending holds %d bytes", len(o.buf))
		}
		// The buffer went back cleared, all of it that held this
		// connection's records (putBufLocked clears up to dirty).
		if held != nil && slices.ContainsFunc(*held, func(b byte) bool { return b != 0 }) {
			t.Fatalf("message %d: the read buffer went back to its pool with %d bytes not cleared", i, len(*held)-bytes.Count(*held, []byte{0}))
		}
	}
	// Half a record in the socket (a header that announces 100 bytes, and
	// 10 of them): the buffer holds it through the wait.
	if _, err := w.Write(append([]byte{23, 3, 3, 0, 100}, make([]byte, 10)...)); err != nil {
		t.Fatal(err)
	}
	timeout()
	if o.w-o.r != 15 || o.buf == nil {
		t.Fatalf("opener waiting with half a record holds %d bytes of it in a buffer of %d", o.w-o.r, len(o.buf))
	}
}

// TestSteadyStateAllocsSocket: an Opener over a TCP socket, which reads
// through the socket's RawConn and hands its buffer back to a pool when the
// socket is empty, allocates nothing per record, whether the records wait in
// the socket or the half waits for each one (issue 18: no allocation per
// record in the steady state).
func TestSteadyStateAllocsSocket(t *testing.T) {
	s := keyschedule.Suites()[0]
	p := randomParams(s, 0)
	w, r := testenv.TCPPair(t)
	o, err := goEngine().NewOpener(backend.Link{Conn: r}, cloneParams(p))
	if err != nil {
		t.Fatal(err)
	}
	if o.(*opener).raw == nil {
		t.Fatal("opener over a *net.TCPConn reads without its RawConn")
	}
	prot, _ := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
	const n = 400
	var stream []byte
	for i := range n {
		stream = prot.Seal(stream, p.Seq+uint64(i), backend.TypeApplicationData, make([]byte, 100))
	}
	// Records already in the socket: 400 × 122 bytes fit its buffer.
	if _, err := w.Write(stream[:len(stream)/2]); err != nil {
		t.Fatal(err)
	}
	read := func() {
		if _, data, err := o.ReadRecord(); err != nil || len(data) != 100 {
			t.Fatalf("ReadRecord: %d bytes, %v", len(data), err)
		}
	}
	read() // the first buffer
	if a := testing.AllocsPerRun(n/2-10, read); a != 0 {
		t.Errorf("ReadRecord of records waiting in the socket allocates %v times", a)
	}
	for o.(*opener).w > o.(*opener).r {
		read()
	}
	// Now each record arrives while the half waits for it: the buffer
	// goes back to the pool and comes out again. The writer writes one
	// record only when the reader asks, so that each ReadRecord waits.
	rest := stream[len(stream)/2:]
	recLen := len(stream) / n
	next := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range next {
			time.Sleep(time.Millisecond)
			w.Write(rest[:recLen])
			rest = rest[recLen:]
		}
	}()
	defer func() { close(next); <-done }()
	// Channel operations do not allocate; AllocsPerRun counts every
	// goroutine, so the writer's Write must not either (it does not: a
	// TCPConn's Write of a slice).
	waited := func() { next <- struct{}{}; read() }
	if a := testing.AllocsPerRun(50, waited); a > 0.1 {
		t.Errorf("ReadRecord that waits for each record allocates %v times per record", a)
	}
}

// TestOpenerPeerReset: a reset from the peer reaches ReadRecord as
// ECONNRESET (conn stops TX on it, protocol.go), whether the half has no
// buffer yet and peeks (the socket error goes to whichever call comes first,
// the peek) or reads into its buffer after a record.
func TestOpenerPeerReset(t *testing.T) {
	for _, first := range []bool{true, false} {
		s := keyschedule.Suites()[0]
		w, r := testenv.TCPPair(t)
		sh, o := newHalves(t, w, r, randomParams(s, 0), nil)
		if !first {
			if _, err := sh.WriteRecords(backend.TypeApplicationData, []byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, _, err := o.ReadRecord(); err != nil {
				t.Fatal(err)
			}
		}
		w.(*net.TCPConn).SetLinger(0)
		w.Close()
		time.Sleep(20 * time.Millisecond) // the RST arrives before the read
		_, _, err := o.ReadRecord()
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("first record %v: ReadRecord after a reset: %v, want ECONNRESET", first, err)
		}
	}
}

// TestSealBufferSized: a WriteRecords takes the smallest pooled buffer that
// holds its first batch, so that a small Write blocked on a slow peer holds
// 4 KiB, not 64 (issue 18), and the batch is never reallocated.
func TestSealBufferSized(t *testing.T) {
	for _, tt := range []struct{ need, size int }{
		{0, 4 << 10}, {100, 4 << 10}, {4 << 10, 4 << 10}, {4<<10 + 1, sealPools[1].Size()},
		{record.HeaderLen + backend.MaxPlaintext + 17, sealPools[1].Size()},
		{record.HeaderLen + backend.MaxPlaintext + 257, sealBufSize}, {sealBufSize, sealBufSize},
	} {
		bp := getSealBuf(tt.need)
		if len(*bp) != tt.size || cap(*bp) != tt.size {
			t.Errorf("getSealBuf(%d): %d bytes, want %d", tt.need, cap(*bp), tt.size)
		}
		putSealBuf(bp)
	}
	// The largest batch fits the largest buffer, in every suite.
	for _, s := range keyschedule.Suites() {
		prot, _ := record.NewProtector(s.Version, s.ID, make([]byte, s.KeyLen), make([]byte, s.IVLen))
		if need := maxBatch * prot.SealedLen(backend.MaxPlaintext); need > sealBufSize {
			t.Errorf("%s: a batch of %d bytes, buffers of %d", suiteName(s), need, sealBufSize)
		}
	}
}
