package record

// Differential tests against crypto/tls itself: a real crypto/tls connection
// over loopback TCP, with a KeyLogWriter and a tap on each side that keeps
// every byte written. Keys are derived from the key log with package
// keyschedule; the records crypto/tls wrote must open with a Protector, and
// records a Protector seals (written raw under crypto/tls) must be accepted
// by crypto/tls.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/keyschedule"
)

var (
	certsOnce          sync.Once
	ecdsaCert, rsaCert tls.Certificate
)

func testCerts() (ec, rs tls.Certificate) {
	certsOnce.Do(func() {
		ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		mk := func(pub, priv any) tls.Certificate {
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(1),
				Subject:      pkix.Name{CommonName: "ktls test"},
				DNSNames:     []string{"example.com"},
				NotBefore:    time.Now().Add(-time.Hour),
				NotAfter:     time.Now().Add(time.Hour),
				KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
				ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
			if err != nil {
				panic(err)
			}
			return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
		}
		ecdsaCert = mk(&ecKey.PublicKey, ecKey)
		rsaCert = mk(&rsaKey.PublicKey, rsaKey)
	})
	return ecdsaCert, rsaCert
}

// tap keeps a copy of everything written through it. For benchmarks it can
// also drop what is written and serve reads from a function.
type tap struct {
	net.Conn
	mu    sync.Mutex
	wrote []byte
	read  []byte

	discard bool          // drop writes (benchmarks, after the handshake)
	feed    func() []byte // serve reads from this (benchmarks)
	fed     []byte
}

func (t *tap) Write(b []byte) (int, error) {
	if t.discard {
		return len(b), nil
	}
	t.mu.Lock()
	t.wrote = append(t.wrote, b...)
	t.mu.Unlock()
	return t.Conn.Write(b)
}

func (t *tap) Read(b []byte) (int, error) {
	if t.feed == nil {
		n, err := t.Conn.Read(b)
		t.mu.Lock()
		t.read = append(t.read, b[:n]...)
		t.mu.Unlock()
		return n, err
	}
	if len(t.fed) == 0 {
		t.fed = t.feed()
	}
	n := copy(b, t.fed)
	t.fed = t.fed[n:]
	return n, nil
}

func (t *tap) stream() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.wrote)
}

func (t *tap) readStream() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.read)
}

// splitRecords cuts a byte stream into complete records.
func splitRecords(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var recs [][]byte
	for len(b) > 0 {
		h, err := ParseHeader(b)
		if err != nil || len(b) < HeaderLen+h.Length {
			t.Fatalf("stream ends inside a record")
		}
		recs = append(recs, b[:HeaderLen+h.Length])
		b = b[HeaderLen+h.Length:]
	}
	return recs
}

// tlsPair is a crypto/tls connection over loopback TCP with taps and key log.
type tlsPair struct {
	client, server       *tls.Conn
	clientTap, serverTap *tap
	keyLog               *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// entries parses the key log; every line crypto/tls wrote must parse.
func (s *syncBuffer) entries(t testing.TB) map[string]keyschedule.KeyLogEntry {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]keyschedule.KeyLogEntry{}
	for _, line := range bytes.SplitAfter(s.b.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		e, err := keyschedule.ParseKeyLogLine(line)
		if err != nil {
			t.Fatalf("crypto/tls key log line: %v", err)
		}
		m[e.Label] = e
	}
	return m
}

func newTLSPair(t testing.TB, clientCfg, serverCfg *tls.Config) *tlsPair {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	rawC, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rawS, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	p := &tlsPair{clientTap: &tap{Conn: rawC}, serverTap: &tap{Conn: rawS}, keyLog: &syncBuffer{}}
	t.Cleanup(func() { rawC.Close(); rawS.Close() })
	clientCfg = clientCfg.Clone()
	clientCfg.KeyLogWriter = p.keyLog
	clientCfg.InsecureSkipVerify = true
	clientCfg.ServerName = "example.com"
	p.client = tls.Client(p.clientTap, clientCfg)
	p.server = tls.Server(p.serverTap, serverCfg)
	errc := make(chan error, 1)
	go func() { errc <- p.server.Handshake() }()
	if err := p.client.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return p
}

// exchange sends each message as one Write through crypto/tls and reads it
// on the other side.
func exchange(t *testing.T, from, to *tls.Conn, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		errc := make(chan error, 1)
		go func() { _, err := from.Write([]byte(m)); errc <- err }()
		got := make([]byte, len(m))
		to.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(to, got); err != nil || string(got) != m {
			t.Fatalf("crypto/tls exchange: %q %v", got, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// inject writes records sealed by p straight to raw, under crypto/tls, and
// checks that the crypto/tls peer reads the plaintexts back.
func inject(t *testing.T, p *Protector, seq *uint64, raw net.Conn, peer *tls.Conn, msgs ...[]byte) {
	t.Helper()
	for _, m := range msgs {
		rec := p.Seal(nil, *seq, TypeApplicationData, m)
		*seq++
		if _, err := raw.Write(rec); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(m))
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(peer, got); err != nil {
			t.Fatalf("crypto/tls did not accept a sealed record: %v", err)
		}
		if !bytes.Equal(got, m) {
			t.Fatal("crypto/tls read other bytes than were sealed")
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestCryptoTLS12(t *testing.T) {
	ec, rs := testCerts()
	for _, s := range keyschedule.Suites() {
		if s.Version != tls.VersionTLS12 {
			continue
		}
		t.Run(s.Name(), func(t *testing.T) {
			cert := rs
			if strings.Contains(s.Name(), "ECDSA") {
				cert = ec
			}
			cfg := &tls.Config{
				MaxVersion:   tls.VersionTLS12,
				CipherSuites: []uint16{s.ID},
				Certificates: []tls.Certificate{cert},
			}
			p := newTLSPair(t, cfg, cfg)
			if cs := p.client.ConnectionState(); cs.CipherSuite != s.ID || cs.Version != tls.VersionTLS12 {
				t.Fatalf("negotiated %s %x", tls.CipherSuiteName(cs.CipherSuite), cs.Version)
			}
			big := string(randomBytes(MaxPlaintext + 1000))
			exchange(t, p.client, p.server, "client one", "client two, a little longer")
			exchange(t, p.server, p.client, "server one", big)

			entries := p.keyLog.entries(t)
			e, ok := entries[keyschedule.LabelClientRandom]
			if !ok || len(e.Secret) != 48 {
				t.Fatalf("no CLIENT_RANDOM line: %v", entries)
			}
			master := e.Secret

			// Randoms from the wire: ClientHello and ServerHello bodies
			// are type(1) length(3) version(2) random(32) (RFC 5246 §7.4.1).
			cRecs := splitRecords(t, p.clientTap.stream())
			sRecs := splitRecords(t, p.serverTap.stream())
			clientRandom := cRecs[0][HeaderLen+6 : HeaderLen+38]
			if cRecs[0][0] != TypeHandshake || cRecs[0][HeaderLen] != 1 || !bytes.Equal(clientRandom, e.ClientRandom[:]) {
				t.Fatal("the key log's client random is not the ClientHello's")
			}
			if sRecs[0][0] != TypeHandshake || sRecs[0][HeaderLen] != 2 {
				t.Fatal("first server record is not a ServerHello")
			}
			serverRandom := sRecs[0][HeaderLen+6 : HeaderLen+38]

			// PRF12 against crypto/tls's RFC 5705 exporter, which is
			// PRF(master_secret, label, client_random + server_random).
			const label = "EXPERIMENTAL ktls"
			cs := p.client.ConnectionState()
			ekm, err := cs.ExportKeyingMaterial(label, nil, 77)
			if err != nil {
				t.Fatal(err)
			}
			if got := keyschedule.PRF12(s.Hash, master, label, append(bytes.Clone(clientRandom), serverRandom...), 77); !bytes.Equal(got, ekm) {
				t.Fatalf("PRF12 disagrees with ExportKeyingMaterial")
			}

			ck, sk, civ, siv := keyschedule.KeyBlock12(s, master, clientRandom, serverRandom)
			cp, err := NewProtector(tls.VersionTLS12, s.ID, ck, civ)
			if err != nil {
				t.Fatal(err)
			}
			sp, err := NewProtector(tls.VersionTLS12, s.ID, sk, siv)
			if err != nil {
				t.Fatal(err)
			}

			cData, cSeq := openAfterCCS(t, cp, cRecs)
			sData, sSeq := openAfterCCS(t, sp, sRecs)
			if string(cData) != "client one"+"client two, a little longer" || string(sData) != "server one"+big {
				t.Fatal("opened records do not carry what crypto/tls was given")
			}

			// Records we seal, crypto/tls accepts, at the next sequence
			// numbers, in both directions, up to 2^14 bytes.
			inject(t, cp, &cSeq, p.clientTap.Conn, p.server, []byte("sealed by ktls"), randomBytes(MaxPlaintext), []byte("x"))
			inject(t, sp, &sSeq, p.serverTap.Conn, p.client, randomBytes(1000), []byte("and back"))
			// (crypto/tls's own writers are now behind: they never
			// write again.)
		})
	}
}

// openAfterCCS opens the records after the ChangeCipherSpec: the Finished at
// seq 0 (RFC 5246 §7.4.9), then application data, whose concatenation it
// returns (crypto/tls may split a Write into several records). It returns the
// next sequence number too.
func openAfterCCS(t testing.TB, p *Protector, recs [][]byte) (data []byte, next uint64) {
	t.Helper()
	i := 0
	for i < len(recs) && recs[i][0] != TypeChangeCipherSpec {
		i++
	}
	recs = recs[i+1:]
	var seq uint64
	for j, rec := range recs {
		typ, pt, err := p.Open(seq, bytes.Clone(rec))
		if err != nil {
			t.Fatalf("record %d at seq %d: %v", j, seq, err)
		}
		seq++
		if j == 0 {
			// Finished: type 20, 12 bytes of verify_data.
			if typ != TypeHandshake || len(pt) != 16 || pt[0] != 20 {
				t.Fatalf("first protected record: type %d, %x", typ, pt)
			}
			continue
		}
		if typ != TypeApplicationData {
			t.Fatalf("record %d: type %d", j, typ)
		}
		data = append(data, pt...)
	}
	return data, seq
}

// TestCryptoTLS13 checks the TLS 1.3 suite crypto/tls negotiates on this
// machine (AES-128-GCM where AES is in hardware), and ChaCha20-Poly1305 in a
// child process that tells crypto/tls there is no AES hardware. Go's TLS 1.3
// suite choice is not configurable; AES-256-GCM is covered by the RFC-derived,
// round-trip and userspace differential tests.
func TestCryptoTLS13(t *testing.T) {
	want := os.Getenv("KTLS_RECORD_TEST_TLS13_SUITE")
	if want == "" {
		t.Run("ChaCha20 child", func(t *testing.T) {
			if testing.Short() {
				t.Skip("short")
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestCryptoTLS13$", "-test.v")
			cmd.Env = append(os.Environ(), "GODEBUG=cpu.aes=off", "KTLS_RECORD_TEST_TLS13_SUITE=TLS_CHACHA20_POLY1305_SHA256")
			out, err := cmd.CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("--- PASS: TestCryptoTLS13")) {
				t.Fatalf("child: %v\n%s", err, out)
			}
		})
	}
	ec, _ := testCerts()
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ec}}
	p := newTLSPair(t, cfg, cfg)
	cs := p.client.ConnectionState()
	if want != "" && tls.CipherSuiteName(cs.CipherSuite) != want {
		t.Fatalf("negotiated %s, want %s", tls.CipherSuiteName(cs.CipherSuite), want)
	}
	t.Logf("negotiated %s", tls.CipherSuiteName(cs.CipherSuite))
	s, ok := keyschedule.Lookup(tls.VersionTLS13, cs.CipherSuite)
	if !ok {
		t.Fatalf("unknown suite %x", cs.CipherSuite)
	}
	big := string(randomBytes(MaxPlaintext + 1000))
	exchange(t, p.client, p.server, "client one", "client two")
	exchange(t, p.server, p.client, "server one", big)

	e := p.keyLog.entries(t)
	prot := func(label string) *Protector {
		key, iv := keyschedule.TrafficKey(s, e[label].Secret)
		pr, err := NewProtector(tls.VersionTLS13, s.ID, key, iv)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		return pr
	}
	cHS, cApp := prot(keyschedule.LabelClientHandshake), prot(keyschedule.LabelClientTraffic0)
	sHS, sApp := prot(keyschedule.LabelServerHandshake), prot(keyschedule.LabelServerTraffic0)

	// Client: Finished under the handshake key, then the two messages.
	cHSSeq, cSeq, cData := openTLS13(t, cHS, cApp, splitRecords(t, p.clientTap.stream()))
	if cHSSeq != 1 || cSeq != 2 || string(cData) != "client one"+"client two" {
		t.Fatalf("client records: %d handshake, %d application", cHSSeq, cSeq)
	}
	// Server: EncryptedExtensions..Finished under the handshake key, then
	// NewSessionTickets and the data under the application key.
	sHSSeq, sSeq, sData := openTLS13(t, sHS, sApp, splitRecords(t, p.serverTap.stream()))
	if sHSSeq < 1 || string(sData) != "server one"+big {
		t.Fatalf("server records: %d handshake, %d application", sHSSeq, sSeq)
	}
	t.Logf("server wrote %d handshake-key and %d application-key records", sHSSeq, sSeq)

	// From here on only we write client to server: the client's crypto/tls
	// writer is behind.
	inject(t, cApp, &cSeq, p.clientTap.Conn, p.server, []byte("sealed by ktls"), randomBytes(MaxPlaintext))

	// KeyUpdate (RFC 8446 §4.6.3) checks NextTrafficSecret against
	// crypto/tls: we send one from the client with update_requested; the
	// server must then read our records under the next client key and
	// answer with a KeyUpdate under its old key, switching to its next one.
	keyUpdate := []byte{24, 0, 0, 1, 1} // HandshakeType key_update(24), request_update = update_requested
	if _, err := p.clientTap.Conn.Write(cApp.Seal(nil, cSeq, TypeHandshake, keyUpdate)); err != nil {
		t.Fatal(err)
	}
	next := func(label string) *Protector {
		key, iv := keyschedule.TrafficKey(s, keyschedule.NextTrafficSecret(s, e[label].Secret))
		pr, err := NewProtector(tls.VersionTLS13, s.ID, key, iv)
		if err != nil {
			t.Fatal(err)
		}
		return pr
	}
	cApp1, cSeq1 := next(keyschedule.LabelClientTraffic0), uint64(0)
	serverBefore := len(p.serverTap.stream())
	inject(t, cApp1, &cSeq1, p.clientTap.Conn, p.server, []byte("under the next client key"))
	exchange(t, p.server, p.client, "server under its next key") // crypto/tls client follows too
	after := splitRecords(t, p.serverTap.stream()[serverBefore:])
	if len(after) != 2 {
		t.Fatalf("%d server records after the KeyUpdate, want 2", len(after))
	}
	typ, pt, err := sApp.Open(sSeq, bytes.Clone(after[0]))
	if err != nil || typ != TypeHandshake || !bytes.Equal(pt, []byte{24, 0, 0, 1, 0}) {
		t.Fatalf("server's KeyUpdate: %d %x %v", typ, pt, err)
	}
	sApp1 := next(keyschedule.LabelServerTraffic0)
	typ, pt, err = sApp1.Open(0, bytes.Clone(after[1]))
	if err != nil || typ != TypeApplicationData || string(pt) != "server under its next key" {
		t.Fatalf("server record under its next key: %d %q %v", typ, pt, err)
	}
	sSeq1 := uint64(1)
	inject(t, sApp1, &sSeq1, p.serverTap.Conn, p.client, []byte("and back, under the next server key"))
}

// openTLS13 opens every protected record of a TLS 1.3 stream, trying the
// handshake key first and then the application key, each at its own count.
// It returns both counts and the application_data plaintexts.
func openTLS13(t *testing.T, hs, app *Protector, recs [][]byte) (hsSeq, appSeq uint64, data []byte) {
	t.Helper()
	for i, rec := range recs {
		if rec[0] != TypeApplicationData {
			continue // ClientHello, ServerHello, compatibility CCS
		}
		if typ, _, err := hs.Open(hsSeq, bytes.Clone(rec)); err == nil {
			if typ != TypeHandshake || appSeq > 0 {
				t.Fatalf("record %d: handshake key, type %d", i, typ)
			}
			hsSeq++
			continue
		}
		typ, pt, err := app.Open(appSeq, bytes.Clone(rec))
		if err != nil {
			t.Fatalf("record %d opens under neither key: %v", i, err)
		}
		appSeq++
		switch typ {
		case TypeApplicationData:
			data = append(data, pt...)
		case TypeHandshake:
			if pt[0] != 4 { // NewSessionTicket
				t.Fatalf("record %d: handshake message %d under the application key", i, pt[0])
			}
		default:
			t.Fatalf("record %d: type %d", i, typ)
		}
	}
	return hsSeq, appSeq, data
}

func ExampleProtector() {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	key, iv := keyschedule.TrafficKey(s, make([]byte, 32))
	p, _ := NewProtector(tls.VersionTLS13, s.ID, key, iv)
	rec := p.Seal(nil, 0, TypeApplicationData, []byte("hello"))
	typ, pt, err := p.Open(0, rec)
	fmt.Println(len(rec), typ, string(pt), err)
	// Output: 27 23 hello <nil>
}
