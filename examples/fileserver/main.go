// Command fileserver serves a directory over HTTPS with ktls: the handshake
// runs in crypto/tls, the records in the best engine this host has, and each
// connection logs which engine it got and why.
//
//	go run ./examples/fileserver -dir . -addr 127.0.0.1:8443
//	curl -k https://127.0.0.1:8443/README.md
//
// Without -cert and -key it makes a self-signed certificate for localhost and
// 127.0.0.1 at start. KTLS_BACKEND forces an engine (for example
// KTLS_BACKEND=userspace or KTLS_BACKEND=stdlib).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/ktls-go/ktls"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "address to listen on")
	dir := flag.String("dir", ".", "directory to serve")
	certFile := flag.String("cert", "", "PEM certificate chain (default: a self-signed one)")
	keyFile := flag.String("key", "", "PEM private key for -cert")
	flag.Parse()

	cert, err := loadOrMakeCert(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("fileserver: %v", err)
	}
	config := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}

	l, err := ktls.Listen("tcp", *addr, config)
	if err != nil {
		log.Fatalf("fileserver: %v", err)
	}
	log.Printf("fileserver: serving %s on https://%s/ (try: curl -k https://%s/)", *dir, l.Addr(), l.Addr())

	var logged sync.Map
	srv := &http.Server{
		Handler:           http.FileServer(http.Dir(*dir)),
		ReadHeaderTimeout: 10 * time.Second,
		// A connection becomes active once a request's first bytes were
		// read, so its handshake is done and its engines are known.
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateActive:
				if kc, ok := c.(*ktls.Conn); ok {
					if _, seen := logged.LoadOrStore(c, true); !seen {
						b := kc.Backend()
						st := kc.ConnectionState()
						log.Printf("fileserver: %s: %s %s: tx=%s rx=%s (%s)", c.RemoteAddr(),
							tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), b.TX, b.RX, b.Reason)
					}
				}
			case http.StateClosed, http.StateHijacked:
				logged.Delete(c)
			}
		},
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		<-sig
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
		log.Fatalf("fileserver: %v", err)
	}
}

func loadOrMakeCert(certFile, keyFile string) (tls.Certificate, error) {
	if certFile != "" || keyFile != "" {
		return tls.LoadX509KeyPair(certFile, keyFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "ktls example"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("making a self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
