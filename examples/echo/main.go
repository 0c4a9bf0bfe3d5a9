// Command echo is a TLS echo server and its client on ktls, with no HTTP:
// the server sends back whatever a client sends, and both say which engine
// each direction of their connection got, and why.
//
//	go run ./examples/echo -server                        # listens on 127.0.0.1:8444
//	go run ./examples/echo -client -k                     # each line typed comes back
//	echo hello | go run ./examples/echo -client -k
//	openssl s_client -connect 127.0.0.1:8444 -quiet       # any TLS client will do
//
// Without -cert and -key the server makes a self-signed certificate for
// localhost, 127.0.0.1 and ::1 at start, which the client accepts only with
// -k. The client sends its standard input, then close_notify, and prints
// what comes back until the server closes. KTLS_BACKEND forces an engine
// (for example KTLS_BACKEND=userspace).
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/examples/internal/democert"
)

func main() {
	server := flag.Bool("server", false, "run the server")
	client := flag.Bool("client", false, "run the client: send standard input, print the echo")
	addr := flag.String("addr", "127.0.0.1:8444", "address to listen on (-server) or connect to (-client)")
	certFile := flag.String("cert", "", "server: PEM certificate chain (default: a self-signed one)")
	keyFile := flag.String("key", "", "server: PEM private key for -cert")
	insecure := flag.Bool("k", false, "client: accept any server certificate, such as the server's self-signed one")
	flag.Parse()

	switch {
	case *server && !*client:
		cert, err := democert.Load(*certFile, *keyFile)
		if err != nil {
			log.Fatalf("echo: %v", err)
		}
		l, err := ktls.Listen("tcp", *addr, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err != nil {
			log.Fatalf("echo: %v", err)
		}
		log.Printf("echo: listening on %s", l.Addr())
		log.Fatalf("echo: %v", serve(l, log.Default()))
	case *client && !*server:
		config := &tls.Config{InsecureSkipVerify: *insecure}
		if err := runClient(*addr, config, os.Stdin, os.Stdout, log.Default()); err != nil {
			log.Fatalf("echo: %v", err)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: echo -server | echo -client [-k]")
		flag.PrintDefaults()
		os.Exit(2)
	}
}

// serve echoes on every connection that l accepts, until l fails.
func serve(l net.Listener, logger *log.Logger) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go echo(c.(*ktls.Conn), logger)
	}
}

// echo sends back what c sends, until c's close_notify.
func echo(c *ktls.Conn, logger *log.Logger) {
	defer c.Close()
	// A client gets ten seconds for its handshake.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		logger.Printf("echo: %s: handshake: %v", c.RemoteAddr(), err)
		return
	}
	c.SetDeadline(time.Time{})
	logger.Printf("echo: %s: %s", c.RemoteAddr(), describe(c))
	// io.Copy takes c's ReadFrom, which copies through Write: only a file
	// as the source gives it something to send without copying.
	n, err := io.Copy(c, c)
	if err != nil {
		logger.Printf("echo: %s: echoed %d bytes: %v", c.RemoteAddr(), n, err)
		return
	}
	logger.Printf("echo: %s: echoed %d bytes; the client closed", c.RemoteAddr(), n)
}

// runClient connects to addr, sends in, then close_notify, and writes what
// comes back to out until the server closes.
func runClient(addr string, config *tls.Config, in io.Reader, out io.Writer, logger *log.Logger) error {
	c, err := ktls.Dial("tcp", addr, config)
	if err != nil {
		return err
	}
	defer c.Close()
	logger.Printf("echo: %s: %s", c.RemoteAddr(), describe(c))
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, in)
		if err == nil {
			err = c.CloseWrite()
		}
		sent <- err
	}()
	if _, err := io.Copy(out, c); err != nil {
		// The sender may be stuck reading a terminal: leave it.
		return err
	}
	// The server closed after our close_notify, so the sender is done.
	return <-sent
}

// describe says what a connection negotiated and which engines it got.
func describe(c *ktls.Conn) string {
	st := c.ConnectionState()
	b := c.Backend()
	return fmt.Sprintf("%s %s: tx=%s rx=%s (%s)", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), b.TX, b.RX, b.Reason)
}
