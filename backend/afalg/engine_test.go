package afalg_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/afalg"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

func TestMain(m *testing.M) { testenv.MainWithLeakCheck(m) }

var (
	suiteName    = testenv.SuiteName
	randomParams = testenv.RandomParams
	clone        = testenv.CloneParams
)

// suites are the suites the engine takes: one per AEAD, key size and version.
var suites = testenv.EngineSuites

// require makes the test depend on AF_ALG serving s: it fails in the VM,
// where the harness loads algif_aead and the AEADs' modules (unless Linux
// 7.3's af_alg_restrict refuses them), and skips on a host without AF_ALG.
func require(t *testing.T, s keyschedule.Suite) {
	t.Helper()
	testenv.RequireKernelFeature(t, testenv.FeatureAFALG, afalg.New().(backend.Checker).Check(true, s.Version, s.ID))
}

// captureConn is a net.Conn whose writes land in a buffer.
type captureConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *captureConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(b)
}

// readerConn is a net.Conn that reads from a reader.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

type msg struct {
	typ  uint8
	data []byte
}

// sizes are the plaintext sizes of the differential test: the edges of
// every block, tag and record boundary, and random ones. Every size from 0
// to 2^14 would be too slow where AES is emulated (the VMs run TCG).
func sizes(r *mrand.Rand) []int {
	out := []int{0, 1, 2, 3, 12, 13, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 257,
		1023, 1024, 4095, 4096, 4097, 8191, 16383, 16384, 16385, 32768, 50000}
	for range 48 {
		out = append(out, r.IntN(backend.MaxPlaintext+1))
	}
	return out
}

func messages(seed uint64) []msg {
	r := mrand.New(mrand.NewPCG(seed, seed))
	var ms []msg
	for _, n := range sizes(r) {
		b := make([]byte, n)
		rand.Read(b)
		ms = append(ms, msg{backend.TypeApplicationData, b})
	}
	ms = append(ms, msg{backend.TypeHandshake, []byte{4, 0, 0, 3, 1, 2, 3}})
	ms = append(ms, msg{backend.TypeAlert, []byte{1, 0}})
	return ms
}

// sealAll writes ms through s into a buffer and returns the bytes.
func sealAll(t *testing.T, newSealer func(net.Conn) backend.Sealer, ms []msg) []byte {
	t.Helper()
	c := &captureConn{}
	s := newSealer(c)
	defer s.Close()
	for i, m := range ms {
		n, err := s.WriteRecords(m.typ, m.data)
		if err != nil || n != len(m.data) {
			t.Fatalf("message %d (%d bytes): WriteRecords = %d, %v", i, len(m.data), n, err)
		}
	}
	return c.buf.Bytes()
}

// openAll reads ms back from stream through an Opener.
func openAll(t *testing.T, o backend.Opener, ms []msg) {
	t.Helper()
	for i, m := range ms {
		var got []byte
		for first := true; first || len(got) < len(m.data); first = false {
			typ, data, err := o.ReadRecord()
			if err != nil {
				t.Fatalf("message %d: ReadRecord after %d of %d bytes: %v", i, len(got), len(m.data), err)
			}
			if typ != m.typ {
				t.Fatalf("message %d: type %d, want %d", i, typ, m.typ)
			}
			got = append(got, data...)
		}
		if !bytes.Equal(got, m.data) {
			t.Fatalf("message %d: %d bytes differ", i, len(m.data))
		}
	}
}

func sealerOf(t *testing.T, e backend.Backend, p backend.Params) func(net.Conn) backend.Sealer {
	return func(c net.Conn) backend.Sealer {
		t.Helper()
		pc := clone(p)
		s, err := e.NewSealer(backend.Link{Conn: c}, pc)
		if err != nil {
			t.Fatalf("%s NewSealer: %v", e.Name(), err)
		}
		clear(pc.Key) // the engine keeps no reference to the caller's key
		return s
	}
}

func openerOf(t *testing.T, e backend.Backend, p backend.Params, stream []byte) backend.Opener {
	t.Helper()
	pc := clone(p)
	o, err := e.NewOpener(backend.Link{Conn: &readerConn{r: bytes.NewReader(stream)}}, pc)
	if err != nil {
		t.Fatalf("%s NewOpener: %v", e.Name(), err)
	}
	clear(pc.Key)
	t.Cleanup(func() { o.Close() })
	return o
}

// TestDifferential checks the engine against userspace, the reference, on
// records of many sizes and three types, for both versions and every
// algorithm and key size: the records afalg seals are byte for byte those
// userspace seals (the AEADs are deterministic), and each opens the other's.
// The first sequence number is high, so that the nonces use all their bytes.
func TestDifferential(t *testing.T) {
	for i, s := range suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			require(t, s)
			p := randomParams(s, 1<<40+uint64(i))
			ms := messages(uint64(i))
			want := sealAll(t, sealerOf(t, userspace.New(), p), ms)
			got := sealAll(t, sealerOf(t, afalg.New(), p), ms)
			if !bytes.Equal(got, want) {
				t.Fatalf("afalg sealed %d bytes that differ from userspace's %d", len(got), len(want))
			}
			openAll(t, openerOf(t, afalg.New(), p, want), ms)
			openAll(t, openerOf(t, userspace.New(), p, got), ms)
		})
	}
}

// TestBuffered: bytes the handshake read ahead (Link.Buffered) come first.
func TestBuffered(t *testing.T) {
	s := suites()[0]
	require(t, s)
	p := randomParams(s, 0)
	ms := messages(7)[:8]
	stream := sealAll(t, sealerOf(t, userspace.New(), p), ms)
	cut := len(stream) / 2
	pc := clone(p)
	o, err := afalg.New().NewOpener(backend.Link{Conn: &readerConn{r: bytes.NewReader(stream[cut:])}, Buffered: stream[:cut]}, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	openAll(t, o, ms)
}

// TestRekey follows TLS 1.3 KeyUpdates on both halves (RFC 8446 §4.6.3):
// each rekey opens a new transform and operation socket, and the records
// match userspace's under every key.
func TestRekey(t *testing.T) {
	for _, s := range suites() {
		if s.Version != tls.VersionTLS13 {
			continue
		}
		t.Run(suiteName(s), func(t *testing.T) {
			require(t, s)
			keys := []backend.Params{randomParams(s, 5)}
			for range 3 {
				keys = append(keys, randomParams(s, 0))
			}
			ms := []msg{{backend.TypeApplicationData, []byte("before")}, {backend.TypeApplicationData, bytes.Repeat([]byte("x"), 20000)}}
			run := func(e backend.Backend) []byte {
				c := &captureConn{}
				sl := sealerOf(t, e, keys[0])(c)
				defer sl.Close()
				for i, k := range keys {
					if i > 0 {
						if err := sl.(backend.Rekeyer).Rekey(clone(k)); err != nil {
							t.Fatalf("%s Rekey %d: %v", e.Name(), i, err)
						}
					}
					for _, m := range ms {
						if _, err := sl.WriteRecords(m.typ, m.data); err != nil {
							t.Fatal(err)
						}
					}
				}
				return c.buf.Bytes()
			}
			want, got := run(userspace.New()), run(afalg.New())
			if !bytes.Equal(got, want) {
				t.Fatal("afalg's records across rekeys differ from userspace's")
			}
			o := openerOf(t, afalg.New(), keys[0], want)
			for i, k := range keys {
				if i > 0 {
					if err := o.(backend.Rekeyer).Rekey(clone(k)); err != nil {
						t.Fatalf("opener Rekey %d: %v", i, err)
					}
				}
				openAll(t, o, ms)
			}
		})
	}
}

// TestTampered: a record that fails authentication in the kernel (EBADMSG)
// is bad_record_mac, and so is one opened at the wrong sequence number; the
// error is sticky and nothing panics.
func TestTampered(t *testing.T) {
	for _, s := range suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			require(t, s)
			p := randomParams(s, 1000)
			prot, err := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
			if err != nil {
				t.Fatal(err)
			}
			good := prot.Seal(nil, 1000, backend.TypeApplicationData, []byte("genuine"))
			mut := func(f func(r []byte)) []byte { r := bytes.Clone(good); f(r); return r }
			for _, tc := range []struct {
				name   string
				stream []byte
				want   error
			}{
				{"tag", mut(func(r []byte) { r[len(r)-1] ^= 1 }), tls.AlertError(20)},
				{"ciphertext", mut(func(r []byte) { r[len(r)-20] ^= 0x80 }), tls.AlertError(20)},
				{"length", mut(func(r []byte) { r[4]-- }), tls.AlertError(20)},
				{"wrong sequence number", prot.Seal(nil, 999, backend.TypeApplicationData, []byte("replayed")), tls.AlertError(20)},
				{"oversized", mut(func(r []byte) { r[3], r[4] = 0x48, 0x01 }), tls.AlertError(22)},
				{"too short", good[:record.HeaderLen+3], io.ErrUnexpectedEOF},
			} {
				t.Run(tc.name, func(t *testing.T) {
					o := openerOf(t, afalg.New(), p, tc.stream)
					_, _, err := o.ReadRecord()
					if !errors.Is(err, tc.want) {
						t.Fatalf("ReadRecord = %v, want %v", err, tc.want)
					}
					if _, _, err2 := o.ReadRecord(); !errors.Is(err2, tc.want) {
						t.Fatalf("second ReadRecord = %v, want the same sticky error", err2)
					}
				})
			}
		})
	}
}

// TestSequenceExhaustion: the sequence number is used as given and never
// wraps (RFC 8446 §5.3, RFC 5246 §6.1): the record at 2^64-2 goes out, the
// next one is an error.
func TestSequenceExhaustion(t *testing.T) {
	s := suites()[3]
	require(t, s)
	p := randomParams(s, math.MaxUint64-1)
	c := &captureConn{}
	sl := sealerOf(t, afalg.New(), p)(c)
	defer sl.Close()
	if _, err := sl.WriteRecords(backend.TypeApplicationData, []byte("last")); err != nil {
		t.Fatal(err)
	}
	n := c.buf.Len()
	if _, err := sl.WriteRecords(backend.TypeApplicationData, []byte("one too many")); err == nil {
		t.Fatal("a record past the last sequence number went out")
	}
	if c.buf.Len() != n {
		t.Fatal("bytes were written after the sequence number ran out")
	}
	// The explicit nonce of TLS 1.2 AES-GCM is the sequence number.
	if got := c.buf.Bytes()[record.HeaderLen : record.HeaderLen+8]; !bytes.Equal(got, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}) {
		t.Fatalf("explicit nonce %x, want the sequence number 2^64-2", got)
	}
}

// TestNotSupported: what the engine does not serve wraps ErrNotSupported
// and names why; off Linux, the platform.
func TestNotSupported(t *testing.T) {
	e := afalg.New()
	for _, tc := range []struct {
		version, suite uint16
		want           string
	}{
		{tls.VersionTLS11, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "protocol version"},
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, "cipher suite"},
	} {
		err := e.(backend.Checker).Check(true, tc.version, tc.suite)
		if runtime.GOOS != "linux" {
			tc.want = "AF_ALG needs Linux; this is " + runtime.GOOS
		}
		if !errors.Is(err, backend.ErrNotSupported) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "afalg: ") {
			t.Errorf("Check(%#04x, %#04x) = %v; want ErrNotSupported naming %q", tc.version, tc.suite, err, tc.want)
		}
		_, err = e.NewSealer(backend.Link{Conn: &captureConn{}}, backend.Params{Version: tc.version, CipherSuite: tc.suite, Key: make([]byte, 16), IV: make([]byte, 4)})
		if !errors.Is(err, backend.ErrNotSupported) {
			t.Errorf("NewSealer(%#04x, %#04x) = %v; want ErrNotSupported", tc.version, tc.suite, err)
		}
	}
	if ok, what := e.(backend.Accelerator).Hardware(tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA); ok || what == "" {
		t.Errorf("Hardware(CBC) = %v, %q; want false and a reason", ok, what)
	}
}

// TestProbeOutcome: on Linux the probe is conclusive, and inside the VM
// AF_ALG serves both algorithms wherever the harness expects it.
func TestProbeOutcome(t *testing.T) {
	for _, a := range afalg.AEADs {
		err := afalg.Probe(a.Name)
		t.Logf("Probe(%s) = %v", a.Name, err)
		if err != nil && !errors.Is(err, backend.ErrNotSupported) {
			t.Errorf("Probe(%s) is inconclusive: %v", a.Name, err)
		}
		if err != nil && testenv.InVM() && testenv.ExpectedInVM(testenv.FeatureAFALG) {
			t.Errorf("AF_ALG must serve %s in the VM: %v", a.Name, err)
		}
		if err != nil && runtime.GOOS == "linux" && !strings.Contains(err.Error(), "socket(AF_ALG)") && !strings.Contains(err.Error(), "bind(aead, "+a.Name+")") {
			t.Errorf("Probe(%s) = %v; want the step that failed named", a.Name, err)
		}
	}
}

// TestHardware asks which implementation serves each suite. The VMs run on
// emulated CPUs whose kernels have no crypto engine off the CPU, so there
// the answer is no, naming the CPU implementation.
func TestHardware(t *testing.T) {
	e := afalg.New().(backend.Accelerator)
	for _, s := range suites() {
		ok, what := e.Hardware(s.Version, s.ID)
		t.Logf("%s: hardware %v: %s", suiteName(s), ok, what)
		if what == "" {
			t.Errorf("%s: Hardware gave no reason", suiteName(s))
		}
		if testenv.InVM() && testenv.ExpectedInVM(testenv.FeatureAFALG) && (ok || !strings.Contains(what, "cpu")) {
			t.Errorf("%s: Hardware = %v, %q; want a CPU implementation named", suiteName(s), ok, what)
		}
	}
}

// fdCount counts this process's open file descriptors.
func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestNoFDLeak: each half holds one operation socket, a rekey swaps it for
// another, and Close leaves nothing open, also when Close finds the half
// busy in a blocked read.
func TestNoFDLeak(t *testing.T) {
	s := suites()[0]
	require(t, s)
	before := fdCount(t)
	e := afalg.New()
	var halves []interface{ Close() error }
	for range 4 {
		p := randomParams(s, 0)
		sl := sealerOf(t, e, p)(&captureConn{})
		o := openerOf(t, e, p, nil)
		if err := sl.(backend.Rekeyer).Rekey(randomParams(s, 0)); err != nil {
			t.Fatal(err)
		}
		if err := o.(backend.Rekeyer).Rekey(randomParams(s, 0)); err != nil {
			t.Fatal(err)
		}
		halves = append(halves, sl, o)
	}
	if n := fdCount(t); n != before+len(halves) {
		t.Errorf("%d fds with %d halves open, %d before: want one per half", n, len(halves), before)
	}
	for _, h := range halves {
		h.Close()
	}
	if n := fdCount(t); n != before {
		t.Errorf("%d fds after Close, %d before", n, before)
	}

	// Close while a ReadRecord waits on the link; the link's close
	// ends the read, and the operation socket goes with it.
	a, b := net.Pipe()
	defer a.Close()
	pc := clone(randomParams(s, 0))
	o, err := e.NewOpener(backend.Link{Conn: b}, pc)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := o.ReadRecord()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	o.Close()
	b.Close()
	if err := <-done; err == nil {
		t.Error("ReadRecord on a closed link succeeded")
	}
	if n := fdCount(t); n != before {
		t.Errorf("%d fds after closing a busy opener, %d before", n, before)
	}
}
