package userspace

// The engine against a stock crypto/tls peer: crypto/tls does the handshake
// on both sides, then the client's record layer moves into a userspace
// Sealer and Opener on the raw TCP connection, with keys derived from the
// client's key log, while the server stays crypto/tls. This is what package
// conn does, minus its bookkeeping.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
)

func selfSigned(t testing.TB, pub, priv any) tls.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ktls userspace test"},
		DNSNames:     []string{"example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}

// readTap keeps what the client reads during the handshake (for the
// ServerHello random).
type readTap struct {
	net.Conn
	mu   sync.Mutex
	read []byte
}

func (r *readTap) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.read = append(r.read, b[:n]...)
	r.mu.Unlock()
	return n, err
}

func TestCryptoTLSPeer(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec := selfSigned(t, &ecKey.PublicKey, ecKey)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rs := selfSigned(t, &rsaKey.PublicKey, rsaKey)

	cfgs := map[string]*tls.Config{"TLS13": {MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ec}}}
	for _, s := range keyschedule.Suites() {
		if s.Version == tls.VersionTLS12 {
			cert := rs
			if strings.Contains(s.Name(), "ECDSA") {
				cert = ec
			}
			cfgs[s.Name()] = &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{s.ID}, Certificates: []tls.Certificate{cert}}
		}
	}
	for name, cfg := range cfgs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testCryptoTLSPeer(t, cfg)
		})
	}
}

func testCryptoTLSPeer(t *testing.T, cfg *tls.Config) {
	rawC, rawS := testenv.TCPPair(t)
	keyLog := &testenv.Buffer{}
	ccfg := cfg.Clone()
	ccfg.InsecureSkipVerify, ccfg.ServerName, ccfg.KeyLogWriter = true, "example.com", keyLog
	tapC := &readTap{Conn: rawC}
	client := tls.Client(tapC, ccfg)
	server := tls.Server(rawS, cfg)
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	cs := client.ConnectionState()
	s, ok := keyschedule.Lookup(cs.Version, cs.CipherSuite)
	if !ok {
		t.Fatalf("suite %x", cs.CipherSuite)
	}

	// Keys from the key log, as conn derives them.
	entries := map[string]keyschedule.KeyLogEntry{}
	for _, line := range bytes.SplitAfter([]byte(keyLog.String()), []byte("\n")) {
		if len(line) > 0 {
			e, err := keyschedule.ParseKeyLogLine(line)
			if err != nil {
				t.Fatal(err)
			}
			entries[e.Label] = e
		}
	}
	var tx, rx backend.Params
	tx.Version, tx.CipherSuite = cs.Version, cs.CipherSuite
	rx.Version, rx.CipherSuite = cs.Version, cs.CipherSuite
	if cs.Version == tls.VersionTLS13 {
		tx.Key, tx.IV = keyschedule.TrafficKey(s, entries[keyschedule.LabelClientTraffic0].Secret)
		rx.Key, rx.IV = keyschedule.TrafficKey(s, entries[keyschedule.LabelServerTraffic0].Secret)
	} else {
		e := entries[keyschedule.LabelClientRandom]
		tapC.mu.Lock()
		sh := tapC.read // the ServerHello is the client's first record in
		tapC.mu.Unlock()
		serverRandom := sh[5+6 : 5+38]
		tx.Key, rx.Key, tx.IV, rx.IV = keyschedule.KeyBlock12(s, e.Secret, e.ClientRandom[:], serverRandom)
		tx.Seq, rx.Seq = 1, 1 // each side's Finished went out at 0
	}

	e := New()
	sealer, err := e.NewSealer(backend.Link{Conn: rawC}, tx)
	if err != nil {
		t.Fatal(err)
	}
	opener, err := e.NewOpener(backend.Link{Conn: rawC}, rx)
	if err != nil {
		t.Fatal(err)
	}
	defer sealer.Close()
	defer opener.Close()

	// readData reads n bytes of application data through the Opener,
	// handing any handshake message to onHandshake.
	//
	// It alternates ReadRecord with ReadRecordInto (backend.IntoReader)
	// into buffers of MaxPlaintext bytes, which a TLS 1.3 record of
	// 2^14 bytes does not fit opened (its inner type byte, RFC 8446 §5.2),
	// of one byte more, which it just fits, and of 64 KiB.
	into := opener.(backend.IntoReader)
	sizes := []int{0, backend.MaxPlaintext, backend.MaxPlaintext + 1, 64 << 10}
	calls := 0
	readData := func(n int, onHandshake func([]byte)) []byte {
		t.Helper()
		var got []byte
		for len(got) < n {
			var typ uint8
			var d []byte
			var err error
			if size := sizes[calls%len(sizes)]; size == 0 {
				typ, d, err = opener.ReadRecord()
			} else {
				buf := bytes.Repeat([]byte{0xee}, size)
				var m int
				typ, m, err = into.ReadRecordInto(buf)
				d = buf[:m]
			}
			calls++
			if err != nil {
				t.Fatalf("ReadRecord: %v", err)
			}
			switch typ {
			case backend.TypeApplicationData:
				got = append(got, d...)
			case backend.TypeHandshake:
				onHandshake(bytes.Clone(d))
			default:
				t.Fatalf("record type %d", typ)
			}
		}
		return got
	}
	tickets := func(msg []byte) {
		if cs.Version != tls.VersionTLS13 || msg[0] != 4 {
			t.Fatalf("unexpected handshake message %d", msg[0])
		}
	}

	// Both directions, many records per call, crypto/tls on the far side.
	up := make([]byte, 300000)
	rand.Read(up)
	go func() {
		_, err := sealer.WriteRecords(backend.TypeApplicationData, up)
		errc <- err
	}()
	got := make([]byte, len(up))
	if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, up) {
		t.Fatalf("crypto/tls read what the Sealer wrote: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	down := make([]byte, 200000)
	rand.Read(down)
	go func() { _, err := server.Write(down); errc <- err }()
	if !bytes.Equal(readData(len(down), tickets), down) {
		t.Fatal("the Opener read other bytes than crypto/tls wrote")
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	if cs.Version == tls.VersionTLS13 {
		// KeyUpdate, update_requested (RFC 8446 §4.6.3): we send it
		// and rekey our Sealer; crypto/tls answers with its own under
		// its old key, and the Opener rekeys when it reads that.
		if _, err := sealer.WriteRecords(backend.TypeHandshake, []byte{24, 0, 0, 1, 1}); err != nil {
			t.Fatal(err)
		}
		next := func(label string) backend.Params {
			p := backend.Params{Version: cs.Version, CipherSuite: cs.CipherSuite}
			p.Key, p.IV = keyschedule.TrafficKey(s, keyschedule.NextTrafficSecret(s, entries[label].Secret))
			return p
		}
		if err := sealer.(backend.Rekeyer).Rekey(next(keyschedule.LabelClientTraffic0)); err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := sealer.WriteRecords(backend.TypeApplicationData, []byte("after the update"))
			errc <- err
		}()
		buf := make([]byte, len("after the update"))
		if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "after the update" {
			t.Fatalf("crypto/tls after our KeyUpdate: %q %v", buf, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		go func() { _, err := server.Write([]byte("server, updated")); errc <- err }()
		rekeyed := false
		got := readData(len("server, updated"), func(msg []byte) {
			if bytes.Equal(msg, []byte{24, 0, 0, 1, 0}) {
				if err := opener.(backend.Rekeyer).Rekey(next(keyschedule.LabelServerTraffic0)); err != nil {
					t.Fatal(err)
				}
				rekeyed = true
				return
			}
			tickets(msg)
		})
		if !rekeyed || string(got) != "server, updated" {
			t.Fatalf("after crypto/tls's KeyUpdate: rekeyed %v, %q", rekeyed, got)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}

	// close_notify from crypto/tls (RFC 8446 §6.1) is an alert record,
	// then EOF.
	go func() { errc <- server.Close() }()
	typ, d, err := opener.ReadRecord()
	if err != nil || typ != backend.TypeAlert || !bytes.Equal(d, []byte{1, 0}) {
		t.Fatalf("close_notify: %d %x %v", typ, d, err)
	}
	<-errc
	if _, _, err := opener.ReadRecord(); err != io.EOF {
		t.Fatalf("after close_notify: %v", err)
	}
}
