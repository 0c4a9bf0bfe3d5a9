package ktls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"time"

	"github.com/ktls-go/ktls"
)

// A server and a client, each as they would be with crypto/tls, and what
// engines the client's connection got.
func Example() {
	client, server := configs(tls.VersionTLS13)

	l, err := ktls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()

	c, err := ktls.Dial("tcp", l.Addr().String(), client)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "hello")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", buf)
	// Which engines serve depends on the host: kernel where kTLS takes the
	// suite, userspace elsewhere.
	b := c.Backend()
	log.Printf("tx=%s rx=%s: %s", b.TX, b.RX, b.Reason)
	// Output: hello
}

// Forcing crypto/tls's own record layer for one connection; KTLS_BACKEND,
// when set, would still win.
func ExampleWithBackend() {
	client, server := configs(tls.VersionTLS12)
	l, err := tls.Listen("tcp", "127.0.0.1:0", server) // a stock server
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	go func() {
		s, err := l.Accept()
		if err == nil {
			io.Copy(io.Discard, s)
			s.Close()
		}
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	c := ktls.Client(raw, client, ktls.WithBackend("stdlib"))
	if err := c.Handshake(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Backend().TX, c.Backend().RX)
	c.Close()
	// Output: stdlib stdlib
}

// configs returns a server config with a fresh self-signed certificate for
// localhost and a client config that trusts it, for one version (0:
// crypto/tls's default range). A program has its own certificate
// (tls.LoadX509KeyPair) and the system's roots.
func configs(version uint16) (client, server *tls.Config) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   version, MaxVersion: version,
	}
	client = &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: version, MaxVersion: version}
	return client, server
}
