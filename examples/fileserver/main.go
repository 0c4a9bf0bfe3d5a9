// Command fileserver serves a directory over HTTPS with ktls, HTTP/2 and
// HTTP/1.1 by ALPN: the handshake runs in crypto/tls, the records in the
// best engine this host has, and each connection logs which engine it got
// per direction, and why.
//
//	go run ./examples/fileserver -dir . -addr 127.0.0.1:8443
//	curl -k https://127.0.0.1:8443/README.md             # HTTP/2
//	curl -k --http1.1 https://127.0.0.1:8443/README.md   # HTTP/1.1
//	go run ./examples/get -k https://127.0.0.1:8443/README.md
//
// Without -cert and -key it makes a self-signed certificate for localhost,
// 127.0.0.1 and ::1 at start (hence curl's -k). KTLS_BACKEND forces an
// engine (for example KTLS_BACKEND=userspace or KTLS_BACKEND=stdlib). An
// interrupt (Ctrl-C) stops it gracefully: requests in flight finish, for at
// most 10 seconds.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/examples/internal/democert"
	"github.com/ktls-go/ktls/ktlshttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "address to listen on")
	dir := flag.String("dir", ".", "directory to serve")
	certFile := flag.String("cert", "", "PEM certificate chain (default: a self-signed one)")
	keyFile := flag.String("key", "", "PEM private key for -cert")
	flag.Parse()

	cert, err := democert.Load(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("fileserver: %v", err)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("fileserver: %v", err)
	}
	s := newServer(*dir, cert, log.Default())
	log.Printf("fileserver: serving %s on https://%s/ (try: curl -k https://%s/)", *dir, l.Addr(), l.Addr())

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
	}()
	if err := s.ServeTLS(l, "", ""); err != http.ErrServerClosed {
		log.Fatalf("fileserver: %v", err)
	}
	<-stopped
}

// newServer returns a server of dir's files with cert, which logs one line
// per connection to logger.
//
// http.FileServer copies a file to the response with io.Copy. Over
// HTTP/1.1 the ResponseWriter hands the *os.File to the *ktls.Conn's
// ReadFrom (net/http's response.ReadFrom, once the first 512 bytes went
// out for content sniffing): with the kernel engine that is sendfile(2),
// and the file's bytes never enter the process. Over HTTP/2 there is no
// such path: x/net's server reads the file into its buffers and writes it
// in DATA frames, which the same engine seals.
func newServer(dir string, cert tls.Certificate, logger *log.Logger) *ktlshttp.Server {
	return &ktlshttp.Server{Server: &http.Server{
		Handler:           http.FileServer(http.Dir(dir)),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          logger,
		// ktlshttp calls ConnContext once per connection, HTTP/1.1 and
		// HTTP/2 alike, once its handshake is done and its engines chosen.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if kc, ok := c.(*ktls.Conn); ok {
				logger.Print(describe(kc))
			}
			return ctx
		},
	}}
}

// describe is the log line of a connection: the peer, the TLS version,
// suite and ALPN protocol, and the engine of each direction with the reason.
func describe(c *ktls.Conn) string {
	st := c.ConnectionState()
	proto := st.NegotiatedProtocol
	if proto == "" {
		proto = "no ALPN (HTTP/1.1)"
	}
	b := c.Backend()
	return fmt.Sprintf("fileserver: %s: %s %s %s: tx=%s rx=%s (%s)", c.RemoteAddr(),
		tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), proto, b.TX, b.RX, b.Reason)
}
