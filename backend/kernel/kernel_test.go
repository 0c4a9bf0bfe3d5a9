package kernel_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

func TestMain(m *testing.M) { testenv.MainWithLeakCheck(m) }

// suites are the suites the engine takes: one per AEAD, key size and version.
var suites = testenv.EngineSuites

var (
	suiteName    = testenv.SuiteName
	randomParams = testenv.RandomParams
	clone        = testenv.CloneParams
)

func newUserspaceSealer(c net.Conn, p backend.Params) (backend.Sealer, error) {
	return userspace.New().NewSealer(backend.Link{Conn: c}, clone(p))
}

// require makes the test depend on kTLS for s in direction tx: it fails in
// the VM, where the kernel must have it, and skips elsewhere.
func require(t *testing.T, tx bool, s keyschedule.Suite) {
	t.Helper()
	testenv.RequireKernelFeature(t, testenv.KTLSFeature(s.Version, s.ID), kernel.Probe(tx, s.Version, s.ID))
}

type msg struct {
	typ  uint8
	data []byte
}

func messages() []msg {
	var ms []msg
	for _, n := range []int{1, 100, 16384, 16385, 100000} {
		b := make([]byte, n)
		rand.Read(b)
		ms = append(ms, msg{backend.TypeApplicationData, b})
	}
	// A NewSessionTicket-shaped handshake message (not a KeyUpdate: a
	// kernel with rekey would wait for a new key after one) and a
	// warning alert, between data.
	ms = append(ms, msg{backend.TypeHandshake, []byte{4, 0, 0, 3, 1, 2, 3}})
	ms = append(ms, msg{backend.TypeApplicationData, []byte("after the ticket")})
	ms = append(ms, msg{backend.TypeAlert, []byte{1, 0}})
	return ms
}

// reader reads messages through an Opener, checking types and bytes.
// Application data may come in other slices than it was written: the kernel
// returns the data of several records at once, so what belongs to the next
// message is kept for it.
type reader struct {
	o       backend.Opener
	pending []byte
}

func (r *reader) readAll(t *testing.T, ms []msg) {
	t.Helper()
	for i, m := range ms {
		got := r.pending
		r.pending = nil
		for len(got) < len(m.data) {
			typ, data, err := r.o.ReadRecord()
			if err != nil {
				t.Fatalf("message %d: ReadRecord after %d of %d bytes: %v", i, len(got), len(m.data), err)
			}
			if typ != m.typ {
				t.Fatalf("message %d: type %d, want %d", i, typ, m.typ)
			}
			if typ != backend.TypeApplicationData && len(data) != len(m.data) {
				t.Fatalf("message %d: control record of %d bytes, want %d", i, len(data), len(m.data))
			}
			got = append(got, data...)
		}
		got, r.pending = got[:len(m.data)], bytes.Clone(got[len(m.data):])
		if !bytes.Equal(got, m.data) {
			t.Fatalf("message %d: %d bytes differ", i, len(got))
		}
	}
}

func readAll(t *testing.T, o backend.Opener, ms []msg) {
	t.Helper()
	(&reader{o: o}).readAll(t, ms)
}

// writeAll writes the messages; it runs in its own goroutine in most tests,
// so it returns its error rather than failing the test.
func writeAll(s backend.Sealer, ms []msg) error {
	for i, m := range ms {
		n, err := s.WriteRecords(m.typ, m.data)
		if err != nil || n != len(m.data) {
			return fmt.Errorf("message %d: WriteRecords = %d, %v", i, n, err)
		}
	}
	return nil
}

// goWrite runs writeAll in a goroutine; the returned function waits for it,
// closing c first if the test failed, so that a blocked write ends.
func goWrite(t *testing.T, s backend.Sealer, ms []msg, c net.Conn) func() {
	errc := make(chan error, 1)
	go func() { errc <- writeAll(s, ms) }()
	return func() {
		t.Helper()
		if t.Failed() {
			c.Close()
		}
		if err := <-errc; err != nil && !t.Failed() {
			t.Error(err)
		}
	}
}

// TestDifferential is the cross-check FreeBSD's ktls_test.c does with
// OpenSSL: the kernel seals and the userspace engine opens, then the other
// way round, for each suite, starting at a sequence number other than 0 as a
// handoff does. On the kernel's TX side, the wire is also read raw: a TLS 1.2
// AES-GCM explicit nonce must equal the record's sequence number (what
// crypto/tls does, and what keeps nonces unique across the handoff).
func TestDifferential(t *testing.T) {
	for _, s := range suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			require(t, true, s)
			require(t, false, s)
			const seq = 1000
			ms := messages()
			t.Run("kernel-to-userspace", func(t *testing.T) {
				a, b := testenv.TCPPair(t)
				p := randomParams(s, seq)
				ks, err := kernel.New(kernel.Options{}).NewSealer(backend.Link{Conn: a}, clone(p))
				if err != nil {
					t.Fatal(err)
				}
				defer ks.Close()
				wait := goWrite(t, ks, ms, a)
				defer wait()
				raw := readRaw(t, b, s, ms)
				if s.Version == tls.VersionTLS12 && s.IVLen == 4 {
					checkExplicitNonces(t, raw, seq)
				}
				uo, err := userspace.New().NewOpener(backend.Link{Conn: b, Buffered: raw}, clone(p))
				if err != nil {
					t.Fatal(err)
				}
				defer uo.Close()
				readAll(t, uo, ms)
			})
			t.Run("userspace-to-kernel", func(t *testing.T) {
				a, b := testenv.TCPPair(t)
				p := randomParams(s, seq)
				us, err := userspace.New().NewSealer(backend.Link{Conn: a}, clone(p))
				if err != nil {
					t.Fatal(err)
				}
				defer us.Close()
				ko, err := kernel.New(kernel.Options{}).NewOpener(backend.Link{Conn: b}, clone(p))
				if err != nil {
					t.Fatal(err)
				}
				defer ko.Close()
				wait := goWrite(t, us, ms, a)
				defer wait()
				readAll(t, ko, ms)
			})
		})
	}
}

// readRaw reads from c the records that carry ms, as bytes off the wire.
func readRaw(t *testing.T, c net.Conn, s keyschedule.Suite, ms []msg) []byte {
	t.Helper()
	want := 0
	for _, m := range ms {
		want += len(m.data)
	}
	overhead := 16 // the tag
	switch {
	case s.Version == tls.VersionTLS13:
		overhead++ // the inner content type; the kernel does not pad
	case s.IVLen == 4:
		overhead += 8 // the explicit nonce
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	defer c.SetReadDeadline(time.Time{})
	var raw []byte
	got := 0
	hdr := make([]byte, record.HeaderLen)
	for got < want {
		if _, err := io.ReadFull(c, hdr); err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, want, err)
		}
		body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatal(err)
		}
		raw = append(append(raw, hdr...), body...)
		got += len(body) - overhead
	}
	return raw
}

func checkExplicitNonces(t *testing.T, raw []byte, seq uint64) {
	t.Helper()
	for i := uint64(0); len(raw) > 0; i++ {
		n := record.HeaderLen + (int(raw[3])<<8 | int(raw[4]))
		if got := binary.BigEndian.Uint64(raw[record.HeaderLen:]); got != seq+i {
			t.Fatalf("record %d: explicit nonce %d, want its sequence number %d", i, got, seq+i)
		}
		raw = raw[n:]
	}
}

// TestRekey follows TLS 1.3 KeyUpdates through the kernel, both ways, where
// the kernel takes a second key (Linux 6.14), and checks the clean refusal
// where it does not.
func TestRekey(t *testing.T) {
	for _, s := range suites() {
		if s.Version != tls.VersionTLS13 {
			continue
		}
		t.Run(suiteName(s), func(t *testing.T) {
			require(t, true, s)
			require(t, false, s)
			rekeyErr := kernel.ProbeRekey()
			if rekeyErr != nil && !errors.Is(rekeyErr, backend.ErrNotSupported) {
				t.Fatalf("ProbeRekey: %v", rekeyErr)
			}
			if rekeyErr != nil {
				testRekeyRefused(t, s, rekeyErr)
			}
			testenv.RequireKernelFeature(t, testenv.FeatureKTLSRekey, rekeyErr)
			keyUpdate := msg{backend.TypeHandshake, []byte{24, 0, 0, 1, 0}}
			before, after := msg{backend.TypeApplicationData, []byte("under the first key")}, msg{backend.TypeApplicationData, []byte("under the next key")}
			p, next := randomParams(s, 7), randomParams(s, 0)
			for _, kernelTX := range []bool{true, false} {
				a, b := testenv.TCPPair(t)
				var se backend.Backend = userspace.New()
				var op backend.Backend = kernel.New(kernel.Options{})
				if kernelTX {
					se, op = op, se
				}
				sl, err := se.NewSealer(backend.Link{Conn: a}, clone(p))
				if err != nil {
					t.Fatal(err)
				}
				o, err := op.NewOpener(backend.Link{Conn: b}, clone(p))
				if err != nil {
					t.Fatal(err)
				}
				if err := writeAll(sl, []msg{before, keyUpdate}); err != nil {
					t.Fatal(err)
				}
				if err := sl.(backend.Rekeyer).Rekey(clone(next)); err != nil {
					t.Fatalf("sealer Rekey: %v", err)
				}
				if err := writeAll(sl, []msg{after}); err != nil {
					t.Fatal(err)
				}
				r := &reader{o: o}
				r.readAll(t, []msg{before, keyUpdate})
				if err := o.(backend.Rekeyer).Rekey(clone(next)); err != nil {
					t.Fatalf("opener Rekey: %v", err)
				}
				r.readAll(t, []msg{after})
				sl.Close()
				o.Close()
			}
		})
	}
}

// testRekeyRefused checks what a kernel without rekey does: the sealer does
// not offer Rekey (so the connection never sends a KeyUpdate it could not
// follow with a key), and the opener's Rekey wraps ErrNotSupported and names
// the kernel requirement.
func testRekeyRefused(t *testing.T, s keyschedule.Suite, why error) {
	t.Helper()
	if testenv.InVM() && testenv.ExpectedInVM(testenv.FeatureKTLSRekey) {
		t.Fatalf("the kernel must take a new key here: %v", why)
	}
	a, b := testenv.TCPPair(t)
	p := randomParams(s, 0)
	sl, err := kernel.New(kernel.Options{}).NewSealer(backend.Link{Conn: a}, clone(p))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sl.(backend.Rekeyer); ok {
		t.Error("a sealer on a kernel without rekey offers Rekey")
	}
	o, err := kernel.New(kernel.Options{}).NewOpener(backend.Link{Conn: b}, clone(p))
	if err != nil {
		t.Fatal(err)
	}
	err = o.(backend.Rekeyer).Rekey(randomParams(s, 0))
	if !errors.Is(err, backend.ErrNotSupported) || !strings.Contains(err.Error(), "6.14") {
		t.Errorf("opener Rekey = %v, want ErrNotSupported naming Linux 6.14", err)
	}
}

// TestSendFile sends a file through the kernel with sendfile and opens it
// with the userspace engine: whole, from an offset, and a short read at the
// end of the file.
func TestSendFile(t *testing.T) {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	require(t, true, s)
	data := make([]byte, 300<<10)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		off, n int64
		want   []byte
	}{
		{-1, -1, data},
		{1000, 70000, data[1000:71000]},
		{int64(len(data)) - 10, 100, data[len(data)-10:]},
	} {
		t.Run(fmt.Sprintf("off=%d,n=%d", tc.off, tc.n), func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			a, b := testenv.TCPPair(t)
			p := randomParams(s, 3)
			ks, err := kernel.New(kernel.Options{}).NewSealer(backend.Link{Conn: a}, clone(p))
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				n       int64
				records uint64
				handled bool
				err     error
			}
			res := make(chan result, 1)
			go func() {
				var r result
				r.n, r.records, r.handled, r.err = ks.(backend.FileSender).SendFile(f, tc.off, tc.n)
				res <- r
			}()
			o, err := userspace.New().NewOpener(backend.Link{Conn: b}, clone(p))
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			records := uint64(0)
			for len(got) < len(tc.want) {
				_, d, err := o.ReadRecord()
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, d...)
				records++
			}
			r := <-res
			if !r.handled || r.err != nil || r.n != int64(len(tc.want)) {
				t.Fatalf("SendFile = %d, %d records, handled %v, %v", r.n, r.records, r.handled, r.err)
			}
			if r.records != records {
				t.Errorf("SendFile counted %d records, the wire had %d", r.records, records)
			}
			if sha256.Sum256(got) != sha256.Sum256(tc.want) {
				t.Fatal("the file arrived changed")
			}
			pos, _ := f.Seek(0, io.SeekCurrent)
			if wantPos := int64(len(tc.want)); tc.off >= 0 && pos != 0 || tc.off < 0 && pos != wantPos {
				t.Errorf("file offset %d after SendFile(off=%d)", pos, tc.off)
			}
		})
	}
}

// TestNotSupported checks the answers that say "nothing done": a non-TCP
// connection, bytes already buffered for RX, a suite without a kernel
// cipher.
func TestNotSupported(t *testing.T) {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	e := kernel.New(kernel.Options{})
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := e.NewSealer(backend.Link{Conn: a}, randomParams(s, 0)); !errors.Is(err, backend.ErrNotSupported) {
		t.Errorf("NewSealer on net.Pipe: %v, want ErrNotSupported", err)
	}
	c, _ := testenv.TCPPair(t)
	if _, err := e.NewOpener(backend.Link{Conn: c, Buffered: []byte{23}}, randomParams(s, 0)); !errors.Is(err, backend.ErrNotSupported) {
		t.Errorf("NewOpener with Buffered: %v, want ErrNotSupported", err)
	}
	if err := e.(backend.Checker).Check(true, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA); !errors.Is(err, backend.ErrNotSupported) {
		t.Errorf("Check of a CBC suite: %v, want ErrNotSupported", err)
	}
	if err := e.(backend.Checker).Check(true, tls.VersionTLS11, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); !errors.Is(err, backend.ErrNotSupported) {
		t.Errorf("Check of TLS 1.1: %v, want ErrNotSupported", err)
	}
}

// TestOpenerTampered writes broken records into a kernel Opener's socket
// (the kernel selftests' bad_rec and bad_auth, and the tls_err fixture's
// tampering): each read gives an error that carries the alert the connection
// sends, and never hangs.
func TestOpenerTampered(t *testing.T) {
	for _, s := range suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			require(t, false, s)
			p := randomParams(s, 1000)
			for _, tc := range brokenRecords(t, p) {
				t.Run(tc.name, func(t *testing.T) {
					a, b := testenv.TCPPair(t)
					o, err := kernel.New(kernel.Options{}).NewOpener(backend.Link{Conn: b}, clone(p))
					if err != nil {
						t.Fatal(err)
					}
					defer o.Close()
					if _, err := a.Write(tc.stream); err != nil {
						t.Fatal(err)
					}
					b.SetReadDeadline(time.Now().Add(30 * time.Second))
					_, _, err = o.ReadRecord()
					if !errors.Is(err, tc.want) {
						t.Fatalf("ReadRecord = %v, want %v", err, tc.want)
					}
				})
			}
		})
	}
}

// brokenRecord is a record an opener at sequence number 1000 must refuse,
// and the alert its error must carry.
type brokenRecord struct {
	name   string
	stream []byte
	want   tls.AlertError
}

// brokenRecords are the records TestOpenerTampered and
// TestAlertAfterRefusedRecord send to a kernel opener with key p at
// sequence number 1000.
func brokenRecords(t *testing.T, p backend.Params) []brokenRecord {
	t.Helper()
	prot, err := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
	if err != nil {
		t.Fatal(err)
	}
	good := prot.Seal(nil, 1000, backend.TypeApplicationData, []byte("genuine"))
	mut := func(f func(r []byte) []byte) []byte { return f(bytes.Clone(good)) }
	return []brokenRecord{
		{"tampered tag", mut(func(r []byte) []byte { r[len(r)-1] ^= 1; return r }), 20},
		{"tampered body", mut(func(r []byte) []byte { r[record.HeaderLen+prot.Overhead()-16] ^= 0x40; return r }), 20},
		{"wrong sequence number", prot.Seal(nil, 999, backend.TypeApplicationData, []byte("replayed")), 20},
		{"oversized", mut(func(r []byte) []byte {
			r[3], r[4] = 0x48, 0x01 // 2^14 + 2048 + 1 and more
			return r
		}), 22},
		{"wrong version", mut(func(r []byte) []byte { r[2] = 1; return r }), 70},
	}
}

// TestAlertAfterRefusedRecord checks that the alert for a record the kernel
// refused still goes out (RFC 8446 §5.2, §6), through the kernel's TX and
// through a user-space sealer on the same socket: a failed decryption marks
// the socket with an error (tls_err_abort sets sk_err) that would refuse
// every later send (tls_sw_sendmsg_locked, tcp_sendmsg_locked), so the
// opener takes it back. The peer opens the alert under the connection's TX
// key, and the refused record stays refused.
func TestAlertAfterRefusedRecord(t *testing.T) {
	for _, s := range suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			require(t, false, s)
			require(t, true, s)
			rx, tx := randomParams(s, 1000), randomParams(s, 50)
			for _, tc := range brokenRecords(t, rx) {
				for _, sealer := range []string{"kernel", "userspace"} {
					t.Run(tc.name+"/tx="+sealer, func(t *testing.T) {
						a, b := testenv.TCPPair(t)
						o, err := kernel.New(kernel.Options{}).NewOpener(backend.Link{Conn: b}, clone(rx))
						if err != nil {
							t.Fatal(err)
						}
						defer o.Close()
						var sl backend.Sealer
						if sealer == "kernel" {
							sl, err = kernel.New(kernel.Options{}).NewSealer(backend.Link{Conn: b}, clone(tx))
						} else {
							sl, err = newUserspaceSealer(b, tx)
						}
						if err != nil {
							t.Fatal(err)
						}
						defer sl.Close()
						peer, err := userspace.New().NewOpener(backend.Link{Conn: a}, clone(tx))
						if err != nil {
							t.Fatal(err)
						}
						defer peer.Close()
						if _, err := a.Write(tc.stream); err != nil {
							t.Fatal(err)
						}
						b.SetDeadline(time.Now().Add(30 * time.Second))
						if _, _, err := o.ReadRecord(); !errors.Is(err, tc.want) {
							t.Fatalf("ReadRecord = %v, want %v", err, tc.want)
						}
						alert := []byte{2, byte(tc.want)}
						if n, err := sl.WriteRecords(backend.TypeAlert, alert); err != nil || n != len(alert) {
							t.Fatalf("WriteRecords of the alert after the refused record = %d, %v", n, err)
						}
						a.SetReadDeadline(time.Now().Add(30 * time.Second))
						typ, data, err := peer.ReadRecord()
						if err != nil || typ != backend.TypeAlert || !bytes.Equal(data, alert) {
							t.Fatalf("the peer read type %d %x, %v; want the alert %x", typ, data, err, alert)
						}
						if tc.want == 20 {
							// The kernel keeps the record and fails it
							// again (tls_sw_recvmsg).
							if _, _, err := o.ReadRecord(); !errors.Is(err, tc.want) {
								t.Fatalf("second ReadRecord = %v, want %v", err, tc.want)
							}
						}
					})
				}
			}
		})
	}
}
