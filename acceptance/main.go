// Command acceptance is a program outside the ktls module that uses only its
// public API, as a user would: for each TLS version and AEAD suite, in both
// roles, it talks to a stock crypto/tls peer, checks that both directions run
// on the userspace engine (not stdlib), moves 32 MiB each way checked by
// SHA-256, and resumes the session on a second connection.
//
//	cd acceptance && go run .            # 32 MiB each way
//	cd acceptance && go run . -mib 4     # quicker
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/ktls-go/ktls"
)

type suiteCase struct {
	version uint16
	suite   uint16 // 0 for TLS 1.3, whose suite Go picks
}

var suites = []suiteCase{
	{tls.VersionTLS13, 0},
	{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
}

func main() {
	mib := flag.Int("mib", 32, "MiB to move in each direction per connection")
	flag.Parse()
	cert, pool := makeCert()
	passed, failed := 0, 0
	for _, sc := range suites {
		for _, ktlsClient := range []bool{true, false} {
			role := "ktls server"
			if ktlsClient {
				role = "ktls client"
			}
			name := tls.VersionName(sc.version)
			if sc.suite != 0 {
				name += " " + tls.CipherSuiteName(sc.suite)
			}
			start := time.Now()
			err := run(sc, ktlsClient, cert, pool, *mib<<20)
			if err != nil {
				failed++
				fmt.Printf("FAIL %s, %s: %v\n", name, role, err)
				continue
			}
			passed++
			fmt.Printf("ok   %s, %s (%.1fs)\n", name, role, time.Since(start).Seconds())
		}
	}
	fmt.Printf("acceptance: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

// run makes two connections with one session cache: the second must resume.
func run(sc suiteCase, ktlsClient bool, cert tls.Certificate, pool *x509.CertPool, size int) error {
	scfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: sc.version, MaxVersion: sc.version}
	ccfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: sc.version, MaxVersion: sc.version,
		ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	if sc.suite != 0 {
		scfg.CipherSuites = []uint16{sc.suite}
		ccfg.CipherSuites = []uint16{sc.suite}
	}
	var l net.Listener
	var err error
	if ktlsClient {
		l, err = tls.Listen("tcp", "127.0.0.1:0", scfg)
	} else {
		l, err = ktls.Listen("tcp", "127.0.0.1:0", scfg)
	}
	if err != nil {
		return err
	}
	defer l.Close()
	for i, wantResume := range []bool{false, true} {
		size := size
		if i > 0 {
			size = 1 << 20
		}
		if err := connect(l, ktlsClient, ccfg, size, wantResume); err != nil {
			return fmt.Errorf("connection %d: %w", i+1, err)
		}
	}
	return nil
}

func connect(l net.Listener, ktlsClient bool, ccfg *tls.Config, size int, wantResume bool) error {
	peerErr := make(chan error, 1)
	var k *ktls.Conn
	if ktlsClient {
		go func() { peerErr <- serveOne(l, size) }()
		c, err := ktls.Dial("tcp", l.Addr().String(), ccfg)
		if err != nil {
			return err
		}
		k = c
	} else {
		go func() {
			c, err := tls.Dial("tcp", l.Addr().String(), ccfg)
			if err != nil {
				peerErr <- err
				return
			}
			peerErr <- echoCheck(c, size)
		}()
		c, err := l.Accept()
		if err != nil {
			return err
		}
		k = c.(*ktls.Conn)
		if err := k.Handshake(); err != nil {
			return err
		}
	}
	defer k.Close()
	if err := echoCheck(k, size); err != nil {
		return err
	}
	if err := <-peerErr; err != nil {
		return fmt.Errorf("stock peer: %w", err)
	}
	if b := k.Backend(); b.TX != "userspace" || b.RX != "userspace" {
		return fmt.Errorf("engines tx=%s rx=%s, want userspace both ways (%s)", b.TX, b.RX, b.Reason)
	}
	if got := k.ConnectionState().DidResume; got != wantResume {
		return fmt.Errorf("DidResume = %v, want %v", got, wantResume)
	}
	return nil
}

func serveOne(l net.Listener, size int) error {
	c, err := l.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	return echoCheck(c, size)
}

// echoCheck sends size bytes of its own and reads size bytes of the peer's,
// at the same time, and checks what it read by hash.
func echoCheck(c net.Conn, size int) error {
	mine := make([]byte, size)
	rand.Read(mine)
	sum := sha256.Sum256(mine)
	werr := make(chan error, 1)
	go func() {
		// The peer's hash first, then the data: each side checks the other.
		if _, err := c.Write(sum[:]); err != nil {
			werr <- err
			return
		}
		_, err := c.Write(mine)
		werr <- err
	}()
	var theirSum [32]byte
	if _, err := io.ReadFull(c, theirSum[:]); err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.CopyN(h, c, int64(size)); err != nil {
		return err
	}
	if [32]byte(h.Sum(nil)) != theirSum {
		return errors.New("received data does not match its hash")
	}
	return <-werr
}

func makeCert() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}
