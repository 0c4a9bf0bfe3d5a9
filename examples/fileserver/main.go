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
//
// Files and directories whose name starts with "." (.git, .env) are not
// served, and not listed: any such path component is a 404. -dotfiles serves
// them too.
//
// -debug-addr serves ktls's counters (ktls.Stats, as package ktlsexpvar
// publishes them) at /debug/vars on a second, plain-HTTP listener, never on
// the file listener; it is off by default, and meant for a loopback
// address, since the counters tell anyone who can reach it about the
// server's traffic:
//
//	go run ./examples/fileserver -debug-addr 127.0.0.1:6060
//	go run ./cmd/ktls doctor -stats http://127.0.0.1:6060/debug/vars
package main

import (
	"context"
	"crypto/tls"
	"expvar"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/examples/internal/democert"
	"github.com/ktls-go/ktls/ktlshttp"
	// The counters, as the expvar "ktls". expvar registers /debug/vars on
	// http.DefaultServeMux, which this program never serves: the debug
	// listener has a mux of its own.
	_ "github.com/ktls-go/ktls/ktlsexpvar"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "address to listen on")
	dir := flag.String("dir", ".", "directory to serve")
	certFile := flag.String("cert", "", "PEM certificate chain (default: a self-signed one)")
	keyFile := flag.String("key", "", "PEM private key for -cert")
	dotfiles := flag.Bool("dotfiles", false, "serve and list files and directories whose name starts with \".\" (.git, .env)")
	debugAddr := flag.String("debug-addr", "", "serve ktls's counters at /debug/vars on this address, over plain HTTP (for example 127.0.0.1:6060; off when empty)")
	flag.Parse()

	cert, err := democert.Load(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("fileserver: %v", err)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("fileserver: %v", err)
	}
	s := newServer(*dir, *dotfiles, cert, log.Default())
	if *debugAddr != "" {
		dl, err := net.Listen("tcp", *debugAddr)
		if err != nil {
			log.Fatalf("fileserver: -debug-addr: %v", err)
		}
		if !isLoopback(dl.Addr()) {
			log.Printf("fileserver: warning: the counters at %s are reachable from other hosts", dl.Addr())
		}
		log.Printf("fileserver: counters on http://%s/debug/vars", dl.Addr())
		go func() { log.Printf("fileserver: debug listener: %v", newDebugServer().Serve(dl)) }()
	}
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
// such path: the HTTP/2 server (x/net's on Go 1.26, net/http's own on Go
// 1.27) reads the file into its buffers and writes it in DATA frames, which
// the same engine seals.
//
// Unless dotfiles is set, a path with a component that starts with "." is
// not found, and such names are left out of directory listings (noDotFS).
func newServer(dir string, dotfiles bool, cert tls.Certificate, logger *log.Logger) *ktlshttp.Server {
	var root http.FileSystem = http.Dir(dir)
	if !dotfiles {
		root = noDotFS{root}
	}
	return &ktlshttp.Server{Server: &http.Server{
		Handler:           http.FileServer(root),
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

// newDebugServer serves the expvar variables, the "ktls" counters among
// them, at /debug/vars and nothing else, on a mux of its own.
func newDebugServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /debug/vars", expvar.Handler())
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// noDotFS hides the names that start with ".": Open of a path with such a
// component fails with fs.ErrNotExist, which http.FileServer answers with
// 404, and directory listings leave them out. It is the standard library's
// own example (net/http, ExampleFileServer_dotFileHiding), for every
// component rather than the last: /.git/config is hidden as /.git is.
type noDotFS struct{ http.FileSystem }

// hasDotComponent reports whether a slash-separated path has a component
// that starts with "." ("." and ".." included: http.FileServer cleans the
// path first, so they do not reach here from a request).
func hasDotComponent(name string) bool {
	for part := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(part, ".") {
			return true
		}
	}
	return false
}

func (f noDotFS) Open(name string) (http.File, error) {
	if hasDotComponent(name) {
		return nil, fs.ErrNotExist
	}
	file, err := f.FileSystem.Open(name)
	if err != nil {
		return nil, err
	}
	return noDotFile{file}, nil
}

// noDotFile is a file of noDotFS. It has no ReadDir (the embedded
// interface hides *os.File's), so http.FileServer lists a directory with
// Readdir, which leaves the dot names out.
type noDotFile struct{ http.File }

// Readdir keeps fs.File's promise for n > 0: an empty result comes with an
// error, so it reads on past a batch of dot names only.
func (f noDotFile) Readdir(n int) ([]fs.FileInfo, error) {
	for {
		all, err := f.File.Readdir(n)
		kept := all[:0]
		for _, fi := range all {
			if !strings.HasPrefix(fi.Name(), ".") {
				kept = append(kept, fi)
			}
		}
		if len(kept) > 0 || err != nil || n <= 0 {
			return kept, err
		}
	}
}
