package ktls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// testPKI is a CA with an ECDSA and an RSA server certificate and a client
// certificate, made once per test binary.
type testPKI struct {
	caDER      []byte
	pool       *x509.CertPool
	ecdsaCert  tls.Certificate
	rsaCert    tls.Certificate
	clientCert tls.Certificate
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

// getPKI returns the test PKI; t may be nil (in examples).
func getPKI(t testing.TB) *testPKI {
	if t != nil {
		t.Helper()
	}
	pkiOnce.Do(func() {
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		caTmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "ktls test CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		ca, _ := x509.ParseCertificate(caDER)
		pki.caDER = caDER
		pki.pool = x509.NewCertPool()
		pki.pool.AddCert(ca)
		leaf := func(serial int64, pub, priv any, client bool) tls.Certificate {
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(serial),
				Subject:      pkix.Name{CommonName: "ktls test"},
				NotBefore:    time.Now().Add(-time.Hour),
				NotAfter:     time.Now().Add(24 * time.Hour),
				DNSNames:     []string{"localhost", "example.test"},
				IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
				KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
				ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}
			if client {
				tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
			if err != nil {
				panic(err)
			}
			return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
		}
		ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pki.ecdsaCert = leaf(2, &ek.PublicKey, ek, false)
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		pki.rsaCert = leaf(3, &rk.PublicKey, rk, false)
		ck, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pki.clientCert = leaf(4, &ck.PublicKey, ck, true)
	})
	return &pki
}

// configs returns a matching client and server config for one version and,
// for TLS 1.2, one suite (0: crypto/tls's choice).
func configs(t testing.TB, version, suite uint16) (client, server *tls.Config) {
	p := getPKI(t)
	cert := p.ecdsaCert
	switch suite {
	case tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		cert = p.rsaCert
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   version,
		MaxVersion:   version,
	}
	client = &tls.Config{
		RootCAs:    p.pool,
		ServerName: "localhost",
		MinVersion: version,
		MaxVersion: version,
	}
	if suite != 0 {
		server.CipherSuites = []uint16{suite}
		client.CipherSuites = []uint16{suite}
	}
	return client, server
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-ch
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// handshakeBoth runs both handshakes concurrently and fails the test on error.
func handshakeBoth(t testing.TB, a, b interface{ Handshake() error }) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- b.Handshake() }()
	if err := a.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("peer handshake: %v", err)
	}
}

// pattern returns n deterministic pseudo-random bytes.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	var ctr uint64
	for i := 0; i < n; i += sha256.Size {
		ctr++
		h := sha256.Sum256([]byte{seed, byte(ctr), byte(ctr >> 8), byte(ctr >> 16), byte(ctr >> 24)})
		copy(b[i:], h[:])
	}
	return b
}

// exchange sends n bytes each way at once and checks them by hash.
func exchange(t testing.TB, a, b io.ReadWriter, n int) {
	t.Helper()
	da, db := pattern(n, 1), pattern(n, 2)
	errc := make(chan error, 4)
	send := func(w io.Writer, d []byte) {
		_, err := w.Write(d)
		errc <- err
	}
	recv := func(r io.Reader, want []byte) {
		h := sha256.New()
		_, err := io.CopyN(h, r, int64(len(want)))
		if err == nil && [32]byte(h.Sum(nil)) != sha256.Sum256(want) {
			err = errMismatch
		}
		errc <- err
	}
	go send(a, da)
	go send(b, db)
	go recv(b, da)
	go recv(a, db)
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatalf("exchange of %d bytes: %v", n, err)
		}
	}
}

type mismatchError struct{}

func (mismatchError) Error() string { return "received bytes differ from those sent" }

var errMismatch error = mismatchError{}
