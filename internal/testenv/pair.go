package testenv

import (
	"net"
	"testing"
)

// TCPPair returns both ends of a connected loopback TCP connection (a real
// socket, as the kernel engines need); both are closed when the test ends.
func TCPPair(t testing.TB) (client, server net.Conn) {
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
			close(ch)
			return
		}
		ch <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-ch
	if !ok {
		client.Close()
		t.Fatal("testenv: accepting the loopback connection failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}
