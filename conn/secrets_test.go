package conn

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// rec12 builds a TLS 1.2 record of type typ: plaintext as it is, or, with a
// key, AES-GCM sealed at sequence number seq with explicit as its explicit
// nonce (RFC 5288 §3, RFC 5246 §6.2.3.3), by hand so that explicit can be
// other than seq, as record.Protector never makes it.
func rec12(t *testing.T, key, salt []byte, seq, explicit uint64, typ uint8, plaintext []byte) []byte {
	t.Helper()
	hdr := []byte{typ, 3, 3, 0, 0}
	if key == nil {
		binary.BigEndian.PutUint16(hdr[3:], uint16(len(plaintext)))
		return append(hdr, plaintext...)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := binary.BigEndian.AppendUint64(bytes.Clone(salt), explicit)
	aad := binary.BigEndian.AppendUint64(nil, seq)
	aad = append(aad, typ, 3, 3)
	aad = binary.BigEndian.AppendUint16(aad, uint16(len(plaintext)))
	body := binary.BigEndian.AppendUint64(nil, explicit)
	body = aead.Seal(body, nonce, plaintext, aad)
	binary.BigEndian.PutUint16(hdr[3:], uint16(len(body)))
	return append(hdr, body...)
}

// TestDir12ExplicitNonces: with AES-GCM the engines go on from crypto/tls's
// explicit nonces, so this side's must have been exactly its sequence
// numbers 0..n-1 (docs/ARCHITECTURE.md step 4); a nonce used twice, or any
// other, keeps the connection on stdlib. The peer's are its own business.
func TestDir12ExplicitNonces(t *testing.T) {
	suite, ok := keyschedule.Lookup(tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
	if !ok {
		t.Fatal("no suite")
	}
	key, salt := make([]byte, 16), make([]byte, 4)
	rand.Read(key)
	rand.Read(salt)
	hello := rec12(t, nil, nil, 0, 0, backend.TypeHandshake, []byte{typeClientHello, 0, 0, 0})
	ccs := rec12(t, nil, nil, 0, 0, backend.TypeChangeCipherSpec, []byte{1})
	sealed := func(seq, explicit uint64) []byte {
		return rec12(t, key, salt, seq, explicit, backend.TypeHandshake, []byte("finished"))
	}
	for _, tc := range []struct {
		name    string
		log     [][]byte
		ours    bool
		wantSeq uint64
		wantErr string
	}{
		{"0..n-1", [][]byte{hello, ccs, sealed(0, 0), sealed(1, 1), sealed(2, 2)}, true, 3, ""},
		{"first nonce not 0", [][]byte{hello, ccs, sealed(0, 7)}, true, 0, "explicit nonce other than its sequence number"},
		{"a nonce used twice", [][]byte{hello, ccs, sealed(0, 0), sealed(1, 0)}, true, 0, "explicit nonce other than its sequence number"},
		{"the peer's nonces", [][]byte{hello, ccs, sealed(0, 7), sealed(1, 7)}, false, 2, ""},
		{"under another sequence number", [][]byte{hello, ccs, sealed(1, 0)}, true, 0, "does not open"},
		{"nothing after ChangeCipherSpec", [][]byte{hello, ccs}, true, 0, "no protected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := dir12(suite, bytes.Clone(key), bytes.Clone(salt), tc.log, "client", tc.ours)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("dir12 = %v; want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("dir12: %v", err)
			}
			if d.params.Seq != tc.wantSeq {
				t.Errorf("Seq = %d, want %d", d.params.Seq, tc.wantSeq)
			}
		})
	}
}

// TestSessionSecret: a resumed TLS 1.2 session logs no key, and its master
// secret comes from SessionState.Bytes. It must be the secret crypto/tls
// logged when the session was made, and a session of another version or
// suite gives none.
func TestSessionSecret(t *testing.T) {
	ccfg, scfg := testConfigs(tls.VersionTLS12)
	var keyLog bytes.Buffer
	ccfg.KeyLogWriter = &keyLog
	ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	var ss *tls.SessionState
	scfg.WrapSession = func(cs tls.ConnectionState, s *tls.SessionState) ([]byte, error) {
		ss = s
		return scfg.EncryptTicket(cs, s)
	}
	rc, rs := testenv.TCPPair(t)
	c, s := tls.Client(rc, ccfg), tls.Server(rs, scfg)
	defer c.Close()
	defer s.Close()
	handshakeBoth(t, c, s)
	if ss == nil {
		t.Fatal("the server made no session")
	}
	var master []byte
	for _, line := range bytes.Split(keyLog.Bytes(), []byte("\n")) {
		if e, err := keyschedule.ParseKeyLogLine(line); err == nil && e.Label == keyschedule.LabelClientRandom {
			master = e.Secret
		}
	}
	if len(master) == 0 {
		t.Fatal("no master secret logged")
	}
	suite := c.ConnectionState().CipherSuite
	got, err := sessionSecret(ss, tls.VersionTLS12, suite)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, master) {
		t.Fatal("sessionSecret differs from the logged master secret")
	}
	if _, err := sessionSecret(ss, tls.VersionTLS13, suite); err == nil {
		t.Error("sessionSecret accepted a session of another version")
	}
	if _, err := sessionSecret(ss, tls.VersionTLS12, suite^1); err == nil {
		t.Error("sessionSecret accepted a session of another suite")
	}
}

// TestResumedTLS12Moves: a resumed TLS 1.2 connection, on either side,
// finds its keys through the session it resumed and moves to an engine.
func TestResumedTLS12Moves(t *testing.T) {
	for _, ktlsClient := range []bool{true, false} {
		ccfg, scfg := testConfigs(tls.VersionTLS12)
		ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
		for i := range 2 {
			k, peer := stockPair(t, ktlsClient, ccfg, scfg, userspaceOptions())
			errc := make(chan error, 1)
			go func() {
				if err := peer.Handshake(); err != nil {
					errc <- err
					return
				}
				_, err := io.Copy(peer, peer)
				errc <- err
			}()
			if err := k.Handshake(); err != nil {
				t.Fatal(err)
			}
			if resumed := k.ConnectionState().DidResume; resumed != (i == 1) {
				t.Fatalf("connection %d: DidResume = %v", i, resumed)
			}
			if b := k.Backend(); b.TX != backend.Userspace || b.RX != backend.Userspace {
				t.Fatalf("client=%v connection %d: Backend() = %+v; want userspace both ways", ktlsClient, i, b)
			}
			msg := []byte("resumed")
			if _, err := k.Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(k, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("echo = %q, %v", got, err)
			}
			k.Close()
			<-errc
			peer.Close()
		}
	}
}

// TestHelloRandom: the random of the first handshake message of a
// direction, which may span records, with alerts skipped (RFC 8446 §4.1.2-3,
// RFC 5246 §7.4.1.2-3).
func TestHelloRandom(t *testing.T) {
	random := make([]byte, 32)
	rand.Read(random)
	hello := func(typ uint8) []byte {
		m := []byte{typ, 0, 0, 40, 3, 3}
		m = append(m, random...)
		return append(m, 0, 0) // the start of what follows the random
	}
	recs := func(typ uint8, parts ...[]byte) [][]byte {
		var log [][]byte
		for _, p := range parts {
			log = append(log, rec12(t, nil, nil, 0, 0, typ, p))
		}
		return log
	}
	ch := hello(typeClientHello)
	alert := rec12(t, nil, nil, 0, 0, backend.TypeAlert, []byte{1, 0})
	ccs := rec12(t, nil, nil, 0, 0, backend.TypeChangeCipherSpec, []byte{1})
	for _, tc := range []struct {
		name string
		log  [][]byte
		want uint8
		ok   bool
	}{
		{"one record", recs(backend.TypeHandshake, ch), typeClientHello, true},
		{"across records", recs(backend.TypeHandshake, ch[:3], ch[3:20], ch[20:]), typeClientHello, true},
		{"after an alert", append([][]byte{alert}, recs(backend.TypeHandshake, ch)...), typeClientHello, true},
		{"ServerHello", recs(backend.TypeHandshake, hello(typeServerHello)), typeServerHello, true},
		{"another message", recs(backend.TypeHandshake, ch), typeServerHello, false},
		{"cut short", recs(backend.TypeHandshake, ch[:37]), typeClientHello, false},
		{"cut by another type", append(recs(backend.TypeHandshake, ch[:20]), append([][]byte{ccs}, recs(backend.TypeHandshake, ch[20:])...)...), typeClientHello, false},
		{"empty", nil, typeClientHello, false},
	} {
		got, ok := helloRandom(tc.log, tc.want)
		if ok != tc.ok || (ok && !bytes.Equal(got, random)) {
			t.Errorf("%s: helloRandom = %x, %v; want %v and the random", tc.name, got, ok, tc.ok)
		}
	}
}

// handshakeBoth runs the handshakes of a and b at once and fails the test
// if either fails.
func handshakeBoth(t *testing.T, a, b interface{ Handshake() error }) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- b.Handshake() }()
	if err := a.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestKeyLogKeeps: the key log keeps the secrets of the labels the handoff
// reads, for the client random they were logged with, forwards every line,
// keeps nothing in FIPS mode (discard), and wipe zeroes what it kept.
func TestKeyLogKeeps(t *testing.T) {
	cr := bytes.Repeat([]byte{0xab}, 32)
	line := func(label string, b byte) []byte {
		return []byte(label + " " + strings.Repeat("ab", 32) + " " + strings.Repeat(fmt.Sprintf("%02x", b), 32) + "\n")
	}
	var fwd bytes.Buffer
	k := &keyLog{user: &fwd}
	for i, l := range []string{keyschedule.LabelClientHandshake, "EXPORTER_SECRET", keyschedule.LabelServerTraffic0, keyschedule.LabelServerTraffic0} {
		if n, err := k.Write(line(l, byte(i+1))); err != nil || n != len(line(l, byte(i+1))) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if got := strings.Count(fwd.String(), "\n"); got != 4 {
		t.Errorf("forwarded %d lines, want 4", got)
	}
	kept, ok := k.secret(keyschedule.LabelClientHandshake, cr)
	if !ok || !bytes.Equal(kept, bytes.Repeat([]byte{1}, 32)) {
		t.Errorf("CLIENT_HANDSHAKE_TRAFFIC_SECRET: %x, %v", kept, ok)
	}
	if s, ok := k.secret(keyschedule.LabelServerTraffic0, cr); !ok || !bytes.Equal(s, bytes.Repeat([]byte{4}, 32)) {
		t.Errorf("SERVER_TRAFFIC_SECRET_0, logged twice: %x, %v; want the last", s, ok)
	}
	for _, tc := range []struct{ label string }{{"EXPORTER_SECRET"}, {keyschedule.LabelClientTraffic0}, {keyschedule.LabelClientRandom}} {
		if _, ok := k.secret(tc.label, cr); ok {
			t.Errorf("%s: kept", tc.label)
		}
	}
	if _, ok := k.secret(keyschedule.LabelClientHandshake, make([]byte, 32)); ok {
		t.Error("a secret found for another client random")
	}
	k.wipe()
	if !bytes.Equal(kept, make([]byte, 32)) {
		t.Errorf("wipe left %x", kept)
	}
	if _, ok := k.secret(keyschedule.LabelClientHandshake, cr); ok {
		t.Error("a secret found after wipe")
	}
	d := &keyLog{discard: true}
	d.Write(line(keyschedule.LabelClientHandshake, 1))
	if _, ok := d.secret(keyschedule.LabelClientHandshake, cr); ok {
		t.Error("discard kept a secret")
	}
}
