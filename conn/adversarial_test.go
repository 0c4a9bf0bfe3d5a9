package conn

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
)

// Adversarial input (docs/ARCHITECTURE.md, tests layer 5). The attacker is a ktls Conn
// on the userspace engine whose records the test writes itself: through its
// sealer (right key, right sequence number, any content), as raw bytes on
// its socket, or tampered on the wire. The victim is a ktls Conn in the other
// role. Each case checks that the victim fails clearly (no panic, no hang),
// that its error names the alert, and that it sent that alert: the attacker
// reads it as a remote error, as crypto/tls would.

// advTimeout bounds every read of these tests: a victim that hangs fails.
const advTimeout = 10 * time.Second

// tamperConn flips one byte of the next Write when armed; while capture is
// set, it keeps what is written there instead of sending it.
type tamperConn struct {
	net.Conn
	mu      sync.Mutex
	arm     bool
	capture *[]byte
}

func (c *tamperConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.capture != nil {
		*c.capture = append(*c.capture, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	if c.arm && len(p) > record.HeaderLen {
		c.arm = false
		q := append([]byte(nil), p...)
		// A byte of the ciphertext, past the header and the TLS 1.2
		// explicit nonce.
		q[record.HeaderLen+(len(q)-record.HeaderLen)*2/3] ^= 0x40
		p = q
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// advVariant is one victim: role, version, and whether a TLS 1.3 client
// still reads session tickets through crypto/tls when the attack arrives
// (the drain of docs/ARCHITECTURE.md step 7).
type advVariant struct {
	name         string
	version      uint16
	victimClient bool
	drain        bool
}

var advVariants = []advVariant{
	{"TLS13/victim-client", tls.VersionTLS13, true, false},
	{"TLS13/victim-client-drain", tls.VersionTLS13, true, true},
	{"TLS13/victim-server", tls.VersionTLS13, false, false},
	{"TLS12/victim-client", tls.VersionTLS12, true, false},
	{"TLS12/victim-server", tls.VersionTLS12, false, false},
}

type advPair struct {
	v                advVariant
	attacker, victim *Conn
	attackerTCP      *net.TCPConn // the socket under the attacker
	tamper           *tamperConn  // the attacker's raw conn
}

// newAdvPair handshakes an attacker and a victim over loopback TCP, both on
// the userspace engine.
func newAdvPair(t *testing.T, v advVariant) *advPair {
	t.Helper()
	ccfg, scfg := testConfigs(v.version)
	if v.drain {
		ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	rc, rs := testenv.TCPPair(t)
	p := &advPair{v: v}
	if v.victimClient {
		p.attackerTCP = rs.(*net.TCPConn)
		p.tamper = &tamperConn{Conn: rs}
		p.attacker = Server(p.tamper, scfg, userspaceOptions())
		p.victim = Client(rc, ccfg, userspaceOptions())
	} else {
		p.attackerTCP = rc.(*net.TCPConn)
		p.tamper = &tamperConn{Conn: rc}
		p.attacker = Client(p.tamper, ccfg, userspaceOptions())
		p.victim = Server(rs, scfg, userspaceOptions())
	}
	errc := make(chan error, 1)
	go func() { errc <- p.attacker.Handshake() }()
	if err := p.victim.Handshake(); err != nil {
		t.Fatalf("victim handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("attacker handshake: %v", err)
	}
	for _, c := range []*Conn{p.attacker, p.victim} {
		if b := c.Backend(); b.TX != backend.Userspace || b.RX != backend.Userspace {
			t.Fatalf("backend %+v, want userspace both ways", b)
		}
	}
	if v.drain != p.victim.in.draining {
		t.Fatalf("victim in.draining = %v, want %v", p.victim.in.draining, v.drain)
	}
	t.Cleanup(func() { p.attacker.Close(); p.victim.Close() })
	return p
}

// seal sends payload as records of type typ under the attacker's current
// key and sequence number.
func (p *advPair) seal(t *testing.T, typ uint8, payload []byte) {
	t.Helper()
	p.attacker.out.mu.Lock()
	defer p.attacker.out.mu.Unlock()
	if _, err := p.attacker.out.sealer.WriteRecords(typ, payload); err != nil {
		t.Fatalf("attacker WriteRecords: %v", err)
	}
}

// raw writes b on the attacker's socket, below TLS.
func (p *advPair) raw(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.attackerTCP.Write(b); err != nil {
		t.Fatalf("raw write: %v", err)
	}
}

// keyUpdate sends a KeyUpdate with the given request_update byte and moves
// the attacker's TX to its next key, as a real peer does.
func (p *advPair) keyUpdate(t *testing.T, request byte) {
	t.Helper()
	p.attacker.out.mu.Lock()
	defer p.attacker.out.mu.Unlock()
	if _, err := p.attacker.out.sealer.WriteRecords(backend.TypeHandshake, []byte{typeKeyUpdate, 0, 0, 1, request}); err != nil {
		t.Fatalf("attacker KeyUpdate: %v", err)
	}
	if err := rekey(p.attacker.out.sealer.(backend.Rekeyer), p.attacker.out.keys); err != nil {
		t.Fatalf("attacker rekey: %v", err)
	}
}

// victimRead reads once from the victim under a deadline.
func (p *advPair) victimRead(t *testing.T) (string, error) {
	t.Helper()
	p.victim.SetReadDeadline(time.Now().Add(advTimeout))
	buf := make([]byte, 64<<10)
	n, err := p.victim.Read(buf)
	if isTimeout(err) {
		t.Fatalf("victim Read hung (%v)", err)
	}
	return string(buf[:n]), err
}

// victimFails checks that the victim's Read fails, naming alert want as a
// local error (as crypto/tls does), that the failure is sticky, and that the
// attacker received that alert as a remote error.
func (p *advPair) victimFails(t *testing.T, want tls.AlertError) {
	t.Helper()
	got, err := p.victimRead(t)
	if err == nil || got != "" {
		t.Fatalf("victim Read = %q, %v; want an error", got, err)
	}
	checkAlertErr(t, "victim Read", err, "local error", want)
	if _, err2 := p.victimRead(t); !errors.Is(err2, want) {
		t.Fatalf("second victim Read = %v; want the same failure", err2)
	}
	p.attacker.SetReadDeadline(time.Now().Add(advTimeout))
	n, aerr := p.attacker.Read(make([]byte, 1024))
	if isTimeout(aerr) {
		t.Fatalf("the victim sent no alert (attacker Read: %v)", aerr)
	}
	if n != 0 {
		t.Fatalf("attacker read %d bytes of data, want the alert", n)
	}
	checkAlertErr(t, "attacker Read", aerr, "remote error", want)
}

// checkAlertErr checks that err is a *net.OpError with op that wraps the
// tls.AlertError want.
func checkAlertErr(t *testing.T, what string, err error, op string, want tls.AlertError) {
	t.Helper()
	var a tls.AlertError
	if !errors.As(err, &a) || a != want {
		t.Fatalf("%s: %v (%T); want an error wrapping tls.AlertError %d (%v)", what, err, err, uint8(want), want)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != op {
		t.Fatalf("%s: %v; want a *net.OpError with Op %q", what, err, op)
	}
}

// victimSentAlert reads the next record the victim sent, below the
// attacker's protocol logic, and checks that it is the alert level/desc. A
// warning (no_renegotiation) is read this way because a reader drops it.
func (p *advPair) victimSentAlert(t *testing.T, level, desc uint8) {
	t.Helper()
	p.attacker.in.mu.Lock()
	defer p.attacker.in.mu.Unlock()
	p.attacker.SetReadDeadline(time.Now().Add(advTimeout))
	for {
		typ, data, err := p.attacker.in.opener.ReadRecord()
		if err != nil {
			t.Fatalf("reading the victim's alert: %v", err)
		}
		if typ == backend.TypeHandshake && len(data) > 0 && data[0] == typeNewSessionTicket {
			continue // a TLS 1.3 server's tickets come first
		}
		if typ != backend.TypeAlert || len(data) != 2 || data[0] != level || data[1] != desc {
			t.Fatalf("victim sent record type %d %x; want alert level %d description %d", typ, data, level, desc)
		}
		return
	}
}

// sealOversized13 builds a TLS 1.3 record under the attacker's current key
// at sequence number seq whose inner plaintext is one byte longer than RFC
// 8446 §5.4 allows (2^14 bytes of content and the type), while its length
// field stays within 2^14+256. record.Protector refuses to seal it, so this
// is AEAD by hand, RFC 8446 §5.2-5.3.
func sealOversized13(t *testing.T, d *dirKeys, seq uint64) []byte {
	t.Helper()
	key, iv := keyschedule.TrafficKey(d.suite, d.secret)
	var aead cipher.AEAD
	var err error
	if d.suite.AES {
		var b cipher.Block
		if b, err = aes.NewCipher(key); err == nil {
			aead, err = cipher.NewGCM(b)
		}
	} else {
		aead, err = chacha20poly1305.New(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	nonce := append([]byte(nil), iv...)
	for i := range 8 {
		nonce[len(nonce)-1-i] ^= byte(seq >> (8 * i))
	}
	inner := make([]byte, record.MaxPlaintext+2)
	inner[len(inner)-1] = backend.TypeApplicationData
	n := len(inner) + aead.Overhead()
	hdr := []byte{backend.TypeApplicationData, 3, 3, byte(n >> 8), byte(n)}
	return aead.Seal(hdr, nonce, inner, hdr)
}

// forVariants runs f for every variant that has the version (0: all).
func forVariants(t *testing.T, version uint16, f func(t *testing.T, p *advPair)) {
	forVariantsWhere(t, func(v advVariant) bool { return version == 0 || v.version == version }, f)
}

// forVariantsWhere runs f for every variant that keep accepts.
func forVariantsWhere(t *testing.T, keep func(advVariant) bool, f func(t *testing.T, p *advPair)) {
	for _, v := range advVariants {
		if keep(v) {
			t.Run(v.name, func(t *testing.T) { f(t, newAdvPair(t, v)) })
		}
	}
}

// TestAdversarialControl is the harness's control: a valid record from the
// attacker reaches the victim, and the victim's reply reaches the attacker.
func TestAdversarialControl(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		p.seal(t, backend.TypeApplicationData, []byte("hello"))
		if got, err := p.victimRead(t); err != nil || got != "hello" {
			t.Fatalf("victim Read = %q, %v", got, err)
		}
		if _, err := p.victim.Write([]byte("world")); err != nil {
			t.Fatal(err)
		}
		p.attacker.SetReadDeadline(time.Now().Add(advTimeout))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(p.attacker, buf); err != nil || string(buf) != "world" {
			t.Fatalf("attacker Read = %q, %v", buf, err)
		}
	})
}

func TestAdversarialTamperedCiphertext(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		p.tamper.mu.Lock()
		p.tamper.arm = true
		p.tamper.mu.Unlock()
		p.seal(t, backend.TypeApplicationData, []byte("attack at dawn"))
		p.victimFails(t, 20) // bad_record_mac
	})
}

func TestAdversarialTruncatedRecord(t *testing.T) {
	for _, cut := range []struct {
		name string
		keep func(rec []byte) int
	}{
		{"in-header", func([]byte) int { return 3 }},
		{"in-body", func(rec []byte) int { return len(rec) / 2 }},
		{"tag", func(rec []byte) int { return len(rec) - 1 }},
	} {
		t.Run(cut.name, func(t *testing.T) {
			forVariants(t, 0, func(t *testing.T, p *advPair) {
				// A record sealed by the attacker, of which only a
				// prefix reaches the wire before EOF.
				rec := captureSealed(t, p, backend.TypeApplicationData, []byte("truncated"))
				p.raw(t, rec[:cut.keep(rec)])
				if err := p.attackerTCP.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				got, err := p.victimRead(t)
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("victim Read = %q, %v; want io.ErrUnexpectedEOF", got, err)
				}
				if _, err := p.victimRead(t); err == nil || err == io.EOF {
					t.Fatalf("second victim Read: %v; want the failure to stick", err)
				}
			})
		})
	}
}

// captureSealed seals one record with the attacker's sealer and returns its
// bytes instead of sending them. The sealer's sequence number moves on, as
// if the record had been sent.
func captureSealed(t *testing.T, p *advPair, typ uint8, payload []byte) []byte {
	t.Helper()
	var rec []byte
	p.tamper.mu.Lock()
	p.tamper.capture = &rec
	p.tamper.mu.Unlock()
	p.seal(t, typ, payload)
	p.tamper.mu.Lock()
	p.tamper.capture = nil
	p.tamper.mu.Unlock()
	if len(rec) < record.HeaderLen {
		t.Fatalf("captured %d bytes", len(rec))
	}
	return rec
}

func TestAdversarialOversizedLength(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		n := record.MaxCiphertext(p.v.version) + 1
		hdr := []byte{backend.TypeApplicationData, 3, 3, byte(n >> 8), byte(n)}
		// Only the header and a little of the body: the length alone must
		// be refused, without waiting for 2^14+ bytes.
		p.raw(t, append(hdr, make([]byte, 100)...))
		p.victimFails(t, 22) // record_overflow
	})
}

func TestAdversarialOversizedPlaintext13(t *testing.T) {
	for _, v := range advVariants {
		if v.version != tls.VersionTLS13 {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			p := newAdvPair(t, v)
			// The attacker's sealer has sent nothing since the handoff,
			// so its next sequence number is the handoff's.
			p.raw(t, sealOversized13(t, p.attacker.out.keys, p.attacker.out.keys.params.Seq))
			p.victimFails(t, 22) // record_overflow
		})
	}
}

func TestAdversarialRecordVersion(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		rec := captureSealed(t, p, backend.TypeApplicationData, []byte("old version"))
		rec[2] = 1 // TLS 1.0 on the record layer
		p.raw(t, rec)
		p.victimFails(t, 70) // protocol_version
	})
}

func TestAdversarialUnknownContentType(t *testing.T) {
	t.Run("sealed", func(t *testing.T) {
		forVariants(t, 0, func(t *testing.T, p *advPair) {
			p.seal(t, 99, []byte("what is this"))
			p.victimFails(t, 10) // unexpected_message
		})
	})
	t.Run("outer", func(t *testing.T) {
		// TLS 1.3: any outer type but application_data is refused from
		// the header (RFC 8446 §5.2).
		forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
			rec := captureSealed(t, p, backend.TypeApplicationData, []byte("outer"))
			rec[0] = 99
			p.raw(t, rec)
			p.victimFails(t, 10) // unexpected_message
		})
	})
}

func TestAdversarialRenegotiation12(t *testing.T) {
	for _, v := range advVariants {
		if v.version != tls.VersionTLS12 {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			p := newAdvPair(t, v)
			if v.victimClient {
				// HelloRequest: type 0, empty body (RFC 5246 §7.4.1.1).
				p.seal(t, backend.TypeHandshake, []byte{typeHelloRequest, 0, 0, 0})
			} else {
				// A ClientHello on the established connection: legacy
				// version, random, empty session id, one suite, null
				// compression.
				body := []byte{3, 3}
				body = append(body, make([]byte, 32)...)
				body = append(body, 0, 0, 2, 0xc0, 0x2b, 1, 0)
				msg := append([]byte{typeClientHello, 0, 0, byte(len(body))}, body...)
				p.seal(t, backend.TypeHandshake, msg)
			}
			got, err := p.victimRead(t)
			if err == nil {
				t.Fatalf("victim Read = %q; want an error", got)
			}
			checkAlertErr(t, "victim Read", err, "local error", 100)
			// RFC 5746 §4.2/§4.4: no_renegotiation is a warning; a reader
			// drops it, so read it below the attacker's protocol logic.
			p.victimSentAlert(t, alertLevelWarning, 100)
			// As crypto/tls: the connection is over for the victim.
			if _, err := p.victim.Write([]byte("x")); err == nil {
				t.Fatal("victim Write after refusing renegotiation succeeded")
			}
		})
	}
}

func TestAdversarialHelloRequest13(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		p.seal(t, backend.TypeHandshake, []byte{typeHelloRequest, 0, 0, 0})
		p.victimFails(t, 10) // unexpected_message: no such message in TLS 1.3
	})
}

func TestAdversarialEmptyRecordFlood(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		for range 100 {
			p.seal(t, backend.TypeApplicationData, nil)
		}
		p.victimFails(t, 10) // unexpected_message
	})
}

// TestAdversarialEmptyRecordsThenData checks the flood limit counts
// consecutive records only: a few empty records before data are fine.
func TestAdversarialEmptyRecordsThenData(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		for range 3 {
			for range maxUselessRecords {
				p.seal(t, backend.TypeApplicationData, nil)
			}
			p.seal(t, backend.TypeApplicationData, []byte("data"))
			if got, err := p.victimRead(t); err != nil || got != "data" {
				t.Fatalf("victim Read = %q, %v", got, err)
			}
		}
	})
}

// TestAdversarialKeyUpdateFlood sends one KeyUpdate more than the cap on
// KeyUpdates without application data.
func TestAdversarialKeyUpdateFlood(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		for range maxKeyUpdates + 1 {
			p.keyUpdate(t, 0)
		}
		p.victimFails(t, 10) // unexpected_message
	})
}

// TestAdversarialKeyUpdateRequestFlood asks for an update with every
// KeyUpdate: the victim must stop, not answer forever.
func TestAdversarialKeyUpdateRequestFlood(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		for range maxKeyUpdates + 1 {
			p.keyUpdate(t, 1)
		}
		got, err := p.victimRead(t)
		if err == nil {
			t.Fatalf("victim Read = %q; want an error", got)
		}
		checkAlertErr(t, "victim Read", err, "local error", 10)
	})
}

// TestAdversarialKeyUpdates checks that valid KeyUpdates, below the flood
// limit, are followed, and that an update_requested is answered.
func TestAdversarialKeyUpdates(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		txSecret := func() string {
			p.victim.out.mu.Lock()
			defer p.victim.out.mu.Unlock()
			return string(p.victim.out.keys.secret)
		}
		for i := range 5 {
			before := txSecret()
			p.keyUpdate(t, byte(i%2))
			p.seal(t, backend.TypeApplicationData, []byte("after update"))
			if got, err := p.victimRead(t); err != nil || got != "after update" {
				t.Fatalf("update %d: victim Read = %q, %v", i, got, err)
			}
			if answered := txSecret() != before; answered != (i%2 == 1) {
				t.Fatalf("update %d (request_update=%d): victim updated its own key: %v", i, i%2, answered)
			}
			if _, err := p.victim.Write([]byte("reply")); err != nil {
				t.Fatal(err)
			}
			p.attacker.SetReadDeadline(time.Now().Add(advTimeout))
			buf := make([]byte, 5)
			if _, err := io.ReadFull(p.attacker, buf); err != nil || string(buf) != "reply" {
				t.Fatalf("update %d: attacker Read = %q, %v", i, buf, err)
			}
		}
	})
}

// TestAdversarialKeyUpdateBurst: a peer that sends 32
// KeyUpdates with update_requested in a row before its next data (RFC 8446
// allows it) is followed through every one and answered (RFC 8446 §4.6.3).
// 32 used to end the connection at the cap on records without data.
func TestAdversarialKeyUpdateBurst(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		for round := range 2 {
			p.victim.out.mu.Lock()
			victimTX := bytes.Clone(p.victim.out.keys.secret)
			p.victim.out.mu.Unlock()
			const burst = 32
			for range burst {
				p.keyUpdate(t, 1)
			}
			p.seal(t, backend.TypeApplicationData, []byte("after the burst"))
			if got, err := p.victimRead(t); err != nil || got != "after the burst" {
				t.Fatalf("round %d: victim Read = %q, %v", round, got, err)
			}
			if _, err := p.victim.Write([]byte("reply")); err != nil {
				t.Fatal(err)
			}
			p.attacker.SetReadDeadline(time.Now().Add(advTimeout))
			buf := make([]byte, 5)
			if _, err := io.ReadFull(p.attacker, buf); err != nil || string(buf) != "reply" {
				t.Fatalf("round %d: attacker Read = %q, %v", round, buf, err)
			}
			// One answer per request: the victim's key is the burst'th
			// after where it was, and the attacker followed it there.
			want := victimTX
			for range burst {
				want = keyschedule.NextTrafficSecret(p.victim.out.keys.suite, want)
			}
			p.victim.out.mu.Lock()
			got := bytes.Clone(p.victim.out.keys.secret)
			p.victim.out.mu.Unlock()
			if !bytes.Equal(got, want) {
				t.Fatalf("round %d: the victim did not answer each of %d requests with one KeyUpdate", round, burst)
			}
			p.attacker.in.mu.Lock()
			followed := bytes.Equal(p.attacker.in.keys.secret, want)
			p.attacker.in.mu.Unlock()
			if !followed {
				t.Fatalf("round %d: the attacker's RX key is not the victim's TX key", round)
			}
		}
	})
}

func TestAdversarialKeyUpdateNotLast(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		ku := []byte{typeKeyUpdate, 0, 0, 1, 0}
		// Two KeyUpdates in one record: the first does not end it.
		p.seal(t, backend.TypeHandshake, append(append([]byte(nil), ku...), ku...))
		p.victimFails(t, 10) // unexpected_message
	})
}

func TestAdversarialKeyUpdateBadRequest(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		p.seal(t, backend.TypeHandshake, []byte{typeKeyUpdate, 0, 0, 1, 5})
		p.victimFails(t, 47) // illegal_parameter
	})
}

func TestAdversarialKeyUpdateBadLength(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		p.seal(t, backend.TypeHandshake, []byte{typeKeyUpdate, 0, 0, 2, 0, 0})
		p.victimFails(t, 50) // decode_error
	})
}

func TestAdversarialKeyUpdate12(t *testing.T) {
	forVariants(t, tls.VersionTLS12, func(t *testing.T, p *advPair) {
		p.seal(t, backend.TypeHandshake, []byte{typeKeyUpdate, 0, 0, 1, 0})
		p.victimFails(t, 10) // unexpected_message: no KeyUpdate in TLS 1.2
	})
}

func TestAdversarialFatalAlert(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		p.seal(t, backend.TypeAlert, []byte{alertLevelError, 40}) // handshake_failure
		for i := range 2 {
			got, err := p.victimRead(t)
			if err == nil {
				t.Fatalf("victim Read %d = %q; want an error", i, got)
			}
			checkAlertErr(t, "victim Read", err, "remote error", 40)
		}
	})
}

// TestAdversarialWarningAlert: TLS 1.2 drops warnings other than
// close_notify; TLS 1.3 drops user_canceled only, every other alert is
// fatal whatever its level says (RFC 8446 §6).
func TestAdversarialWarningAlert(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		p.seal(t, backend.TypeAlert, []byte{alertLevelWarning, alertUserCanceled})
		p.seal(t, backend.TypeApplicationData, []byte("still here"))
		if got, err := p.victimRead(t); err != nil || got != "still here" {
			t.Fatalf("after user_canceled: victim Read = %q, %v", got, err)
		}
		p.seal(t, backend.TypeAlert, []byte{alertLevelWarning, 42}) // bad_certificate
		p.seal(t, backend.TypeApplicationData, []byte("and now"))
		got, err := p.victimRead(t)
		if p.v.version == tls.VersionTLS12 {
			if err != nil || got != "and now" {
				t.Fatalf("after a TLS 1.2 warning: victim Read = %q, %v", got, err)
			}
			return
		}
		if err == nil {
			t.Fatalf("after a TLS 1.3 warning-level bad_certificate: victim Read = %q", got)
		}
		checkAlertErr(t, "victim Read", err, "remote error", 42)
	})
}

func TestAdversarialMalformedAlert(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		p.seal(t, backend.TypeAlert, []byte{alertLevelError, 40, 0})
		p.victimFails(t, 10) // unexpected_message (crypto/tls sends the same)
	})
}

func TestAdversarialCloseNotify(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		p.seal(t, backend.TypeApplicationData, []byte("last words"))
		if err := p.attacker.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		// Whatever follows close_notify is never read. (CloseWrite leaves a
		// past write deadline on the socket, as crypto/tls does.)
		p.attackerTCP.SetWriteDeadline(time.Time{})
		p.seal(t, backend.TypeApplicationData, []byte("after close_notify"))
		if got, err := p.victimRead(t); err != nil || got != "last words" {
			t.Fatalf("victim Read = %q, %v", got, err)
		}
		for i := range 3 {
			if got, err := p.victimRead(t); err != io.EOF || got != "" {
				t.Fatalf("victim Read %d after close_notify = %q, %v; want io.EOF", i, got, err)
			}
		}
		// As crypto/tls: close_notify ends the peer's direction only.
		if _, err := p.victim.Write([]byte("goodbye")); err != nil {
			t.Fatalf("victim Write after close_notify: %v", err)
		}
		p.attacker.SetReadDeadline(time.Now().Add(advTimeout))
		buf := make([]byte, 7)
		if _, err := io.ReadFull(p.attacker, buf); err != nil || string(buf) != "goodbye" {
			t.Fatalf("attacker Read = %q, %v", buf, err)
		}
	})
}

func TestAdversarialTicketToServer(t *testing.T) {
	for _, v := range advVariants {
		if v.victimClient {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			p := newAdvPair(t, v)
			var body []byte
			if v.version == tls.VersionTLS13 {
				// lifetime, age_add, nonce<1>, ticket<2>, extensions<2>
				// (RFC 8446 §4.6.1).
				body = []byte{0, 0, 0, 60, 1, 2, 3, 4, 1, 0, 0, 1, 0xaa, 0, 0}
			} else {
				// lifetime_hint, ticket<2> (RFC 5077 §3.3).
				body = []byte{0, 0, 0, 60, 0, 1, 0xaa}
			}
			p.seal(t, backend.TypeHandshake, append([]byte{typeNewSessionTicket, 0, 0, byte(len(body))}, body...))
			p.victimFails(t, 10) // unexpected_message
		})
	}
}

func TestAdversarialChangeCipherSpec(t *testing.T) {
	t.Run("sealed", func(t *testing.T) {
		forVariants(t, 0, func(t *testing.T, p *advPair) {
			p.seal(t, backend.TypeChangeCipherSpec, []byte{1})
			p.victimFails(t, 10) // unexpected_message
		})
	})
	t.Run("plaintext", func(t *testing.T) {
		// RFC 8446 §5: a plaintext change_cipher_spec after the peer's
		// Finished is an unexpected record.
		forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
			p.raw(t, []byte{backend.TypeChangeCipherSpec, 3, 3, 0, 1, 1})
			p.victimFails(t, 10) // unexpected_message
		})
	})
}

func TestAdversarialEmptyHandshakeRecord(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		// WriteRecords sends no empty handshake record; seal one by hand
		// under the attacker's key (TLS 1.3 keeps its secret).
		seq := p.attacker.out.keys.params.Seq
		key, iv := keyschedule.TrafficKey(p.attacker.out.keys.suite, p.attacker.out.keys.secret)
		prot, err := record.NewProtector(tls.VersionTLS13, p.attacker.out.keys.suite.ID, key, iv)
		if err != nil {
			t.Fatal(err)
		}
		p.raw(t, prot.Seal(nil, seq, backend.TypeHandshake, nil))
		p.victimFails(t, 10) // unexpected_message (RFC 8446 §5.1)
	})
}

func TestAdversarialHugeHandshakeMessage(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		// A header announcing a 16 MiB message: refused from the header,
		// not buffered.
		p.seal(t, backend.TypeHandshake, []byte{typeNewSessionTicket, 0xff, 0xff, 0xff})
		p.victimFails(t, 80) // internal_error, as crypto/tls (conn.go, readHandshake)
	})
}

func TestAdversarialInterleavedHandshake(t *testing.T) {
	forVariants(t, tls.VersionTLS13, func(t *testing.T, p *advPair) {
		// The first half of a KeyUpdate, then application data: RFC 8446
		// §5.1 forbids interleaving.
		p.seal(t, backend.TypeHandshake, []byte{typeKeyUpdate, 0})
		p.seal(t, backend.TypeApplicationData, []byte("interleaved"))
		p.victimFails(t, 10)
	})
}

// TestAdversarialPeerVanishes checks EOF without close_notify at a record
// boundary: io.EOF, as crypto/tls.
func TestAdversarialPeerVanishes(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		p.seal(t, backend.TypeApplicationData, []byte("bye"))
		if err := p.attackerTCP.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got, err := p.victimRead(t); err != nil || got != "bye" {
			t.Fatalf("victim Read = %q, %v", got, err)
		}
		if got, err := p.victimRead(t); err != io.EOF {
			t.Fatalf("victim Read = %q, %v; want io.EOF", got, err)
		}
	})
}

// TestAdversarialReplayedRecord replays the attacker's previous record: the
// sequence number is implicit, so it must not open.
func TestAdversarialReplayedRecord(t *testing.T) {
	forVariants(t, 0, func(t *testing.T, p *advPair) {
		rec := captureSealed(t, p, backend.TypeApplicationData, []byte("once"))
		p.raw(t, rec)
		if got, err := p.victimRead(t); err != nil || got != "once" {
			t.Fatalf("victim Read = %q, %v", got, err)
		}
		p.raw(t, rec)
		p.victimFails(t, 20) // bad_record_mac
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestAdversarialMalformedTicketInDrain sends a TLS 1.3 client, while
// crypto/tls still reads its tickets, a NewSessionTicket whose body does not
// parse. crypto/tls rejects it and tries to send decode_error; its write is
// refused (its TX key is stale since TX moved), so the connection must read
// the alert out of the refused record and send it through the engine: the
// attacker receives decode_error (50), and nothing under crypto/tls's stale
// sequence number reaches the wire.
func TestAdversarialMalformedTicketInDrain(t *testing.T) {
	p := newAdvPair(t, advVariants[1])
	if !p.victim.in.draining {
		t.Fatal("the victim is not draining tickets")
	}
	p.seal(t, backend.TypeHandshake, []byte{typeNewSessionTicket, 0, 0, 3, 1, 2, 3})
	got, err := p.victimRead(t)
	if err == nil || got != "" {
		t.Fatalf("victim Read = %q, %v; want an error", got, err)
	}
	if a, ok := p.victim.rc.refusedAlert(); !ok || a != 50 {
		t.Fatalf("refused alert = %d, %v; want decode_error (50) read from crypto/tls's refused write", a, ok)
	}
	p.attacker.SetReadDeadline(time.Now().Add(advTimeout))
	_, aerr := p.attacker.Read(make([]byte, 1024))
	checkAlertErr(t, "attacker Read", aerr, "remote error", 50)
}
