package testenv

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// TCPPair returns both ends of a connected loopback TCP connection (a real
// socket, as the kernel engines need); both are closed when the test ends.
func TCPPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	return TCPPairAt(t, "127.0.0.1:0")
}

// TCPPairAt is TCPPair with the listener on addr: another loopback address,
// or an address inside a network namespace the test made.
func TCPPairAt(t testing.TB, addr string) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return PairOn(t, l)
}

// PairOn dials l, accepts that one connection and closes l: for a listener
// made where net.Listen cannot reach (a socket opened on a thread inside
// another network namespace). Both ends are closed when the test ends.
func PairOn(t testing.TB, l net.Listener) (client, server net.Conn) {
	t.Helper()
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
	client, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		l.Close()
		<-ch
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

// Loopback returns both ends of a loopback TCP connection, for callers that
// have no test to fail (a goroutine, a pairing made many times over); the
// caller closes them.
func Loopback() (client, server net.Conn, err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	if server = <-ch; server == nil {
		client.Close()
		return nil, nil, fmt.Errorf("accept failed")
	}
	return client, server, nil
}

// PeerSeesClose reads from the raw peer of a connection until it fails and
// checks that it sees the connection closed (EOF or a reset), promptly.
func PeerSeesClose(t testing.TB, peer net.Conn) {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(Prompt))
	buf := make([]byte, 4096)
	for {
		_, err := peer.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the peer did not see the connection closed: %v", err)
		}
		return
	}
}
