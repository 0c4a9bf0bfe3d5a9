package ktlshttp_test

import (
	"context"
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
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/ktlshttp"
)

// A server and a client on ktls: HTTP/2 by ALPN, and the TLS state on
// both sides complete.
func Example() {
	client, server := configs(0)

	s := &ktlshttp.Server{Server: &http.Server{
		TLSConfig: server,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s, %s", r.Proto, r.TLS.NegotiatedProtocol)
		}),
		// Each connection, once its handshake is done.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			b := c.(*ktls.Conn).Backend()
			log.Printf("%s: tx=%s rx=%s (%s)", c.RemoteAddr(), b.TX, b.RX, b.Reason)
			return ctx
		},
	}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go s.ServeTLS(l, "", "")
	defer s.Close()

	c := &http.Client{Transport: ktlshttp.NewTransport(client)}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + l.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("client: %s, %s, handshake complete: %v\n", resp.Proto, resp.TLS.NegotiatedProtocol, resp.TLS.HandshakeComplete)
	fmt.Printf("server: %s\n", body)
	// Output:
	// client: HTTP/2.0, h2, handshake complete: true
	// server: HTTP/2.0, h2
}

// A file server on :8443 that stops gracefully on an interrupt.
func ExampleServer_ListenAndServeTLS() {
	s := &ktlshttp.Server{Server: &http.Server{
		Addr:              ":8443",
		Handler:           http.FileServer(http.Dir(".")),
		ReadHeaderTimeout: 10 * time.Second,
	}}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Shutdown waits for the requests in flight, HTTP/2 ones too;
		// Close ends what is left.
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
	}()
	if err := s.ListenAndServeTLS("cert.pem", "key.pem"); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	<-stopped
}

// Serving a ktls listener made elsewhere: its config decides the
// protocols, so it offers "h2" for HTTP/2.
func ExampleServer_Serve() {
	config := &tls.Config{
		Certificates: []tls.Certificate{ /* ... */ },
		NextProtos:   []string{"h2", "http/1.1"},
	}
	l, err := ktls.Listen("tcp", ":8443", config, ktls.WithBackend("tx=kernel"))
	if err != nil {
		log.Fatal(err)
	}
	s := &ktlshttp.Server{Server: &http.Server{Handler: http.FileServer(http.Dir("."))}}
	log.Fatal(s.Serve(l))
}

// Fetching a page, and which engines carried it.
func ExampleNewTransport() {
	c := &http.Client{Transport: ktlshttp.NewTransport(&tls.Config{})}
	req, err := http.NewRequest("GET", "https://example.com/", nil)
	if err != nil {
		log.Fatal(err)
	}
	var conn net.Conn
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { conn = info.Conn },
	}))
	resp, err := c.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status, resp.Proto, tls.VersionName(resp.TLS.Version), tls.CipherSuiteName(resp.TLS.CipherSuite))
	if kc, ok := conn.(*ktls.Conn); ok {
		b := kc.Backend()
		fmt.Printf("tx=%s rx=%s (%s)\n", b.TX, b.RX, b.Reason)
	}
	io.Copy(os.Stdout, resp.Body)
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
