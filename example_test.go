package ktls_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testpki"
)

// A server and a client, each as they would be with crypto/tls, and what
// engines the client's connection got.
func Example() {
	client, server := testpki.Configs(tls.VersionTLS13, 0)

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
	client, server := testpki.Configs(tls.VersionTLS12, 0)
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
