package ktls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// Leak discipline (docs/ARCHITECTURE.md, house rule 13): connections opened, used and closed, in
// every role and on every path that ends one (clean close, failed
// handshake, cancelled handshake, peer gone, Close during I/O), leave no
// goroutine and no file descriptor behind.

// leakScenario opens, uses and closes one connection (or fails to). It
// passes every Conn it makes to keep, so that a socket ktls forgot to close
// stays reachable and open: the runtime's finalizer on an unreachable
// socket would otherwise close it and hide the leak.
type leakScenario struct {
	name string
	run  func(t *testing.T, keep func(...any))
}

// leakPair is pairWithStock over a loopback pair that the test does not
// close behind ktls's back: closing is the Conns' job.
func leakPair(t *testing.T, keep func(...any), ktlsClient bool, ccfg, scfg *tls.Config, opts ...ktls.Option) (*ktls.Conn, *tls.Conn) {
	t.Helper()
	rc, rs, err := testenv.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	var k *ktls.Conn
	var s *tls.Conn
	if ktlsClient {
		k, s = ktls.Client(rc, ccfg, opts...), tls.Server(rs, scfg)
	} else {
		k, s = ktls.Server(rs, scfg, opts...), tls.Client(rc, ccfg)
	}
	keep(k, s)
	testenv.HandshakeBoth(t, k, s)
	return k, s
}

func leakScenarios(engines []string) []leakScenario {
	var ss []leakScenario
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		vn := tls.VersionName(v)
		for _, be := range engines {
			opt := ktls.WithBackend(be)
			ss = append(ss,
				leakScenario{vn + "/" + be + "/ktls-both-dial-listen", func(t *testing.T, keep func(...any)) {
					ccfg, scfg := testpki.Configs(v, 0)
					ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
					l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg, opt)
					if err != nil {
						t.Fatal(err)
					}
					defer l.Close()
					done := make(chan error, 1)
					go func() {
						c, err := l.Accept()
						if err != nil {
							done <- err
							return
						}
						keep(c)
						defer c.Close()
						_, err = io.Copy(c, c)
						done <- err
					}()
					d := &ktls.Dialer{Config: ccfg, Options: []ktls.Option{opt}}
					c, err := d.Dial("tcp", l.Addr().String())
					if err != nil {
						t.Fatal(err)
					}
					keep(c)
					msg := testenv.Pattern(20<<10, 9)
					if _, err := c.Write(msg); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
						t.Fatal(err)
					}
					if err := c.Close(); err != nil {
						t.Fatal(err)
					}
					if err := <-done; err != nil {
						t.Fatalf("echo server: %v", err)
					}
				}},
				leakScenario{vn + "/" + be + "/ktls-client-stock-server", func(t *testing.T, keep func(...any)) {
					ccfg, scfg := testpki.Configs(v, 0)
					ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
					k, s := leakPair(t, keep, true, ccfg, scfg, opt)
					testenv.Exchange(t, k, s, 10<<10)
					ktlstest.CloseBoth(t, k, s)
				}},
				leakScenario{vn + "/" + be + "/stock-client-ktls-server", func(t *testing.T, keep func(...any)) {
					ccfg, scfg := testpki.Configs(v, 0)
					k, s := leakPair(t, keep, false, ccfg, scfg, opt)
					testenv.Exchange(t, k, s, 10<<10)
					ktlstest.CloseBoth(t, k, s)
				}},
				leakScenario{vn + "/" + be + "/close-during-read", func(t *testing.T, keep func(...any)) {
					// The reader holds the read lock when Close runs.
					ccfg, scfg := testpki.Configs(v, 0)
					ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
					k, s := leakPair(t, keep, true, ccfg, scfg, opt)
					testenv.Exchange(t, k, s, 1<<10)
					errc := make(chan error, 1)
					go func() {
						_, err := k.Read(make([]byte, 10))
						errc <- err
					}()
					time.Sleep(5 * time.Millisecond)
					k.Close()
					select {
					case <-errc:
					case <-time.After(testenv.Prompt):
						t.Fatal("Close did not end the Read")
					}
					s.Close()
				}},
			)
		}
		ss = append(ss,
			leakScenario{vn + "/failed-handshake", func(t *testing.T, keep func(...any)) {
				ccfg, scfg := testpki.Configs(v, 0)
				ccfg.ServerName = "wrong.example"
				rc, rs, err := testenv.Loopback()
				if err != nil {
					t.Fatal(err)
				}
				k, s := ktls.Client(rc, ccfg), ktls.Server(rs, scfg)
				keep(k, s)
				errc := make(chan error, 1)
				go func() { errc <- s.Handshake() }()
				if err := k.Handshake(); err == nil {
					t.Fatal("handshake with the wrong name succeeded")
				}
				<-errc
				k.Close()
				s.Close()
			}},
			leakScenario{vn + "/cancelled-handshake", func(t *testing.T, keep func(...any)) {
				ccfg, _ := testpki.Configs(v, 0)
				rc, rs, err := testenv.Loopback()
				if err != nil {
					t.Fatal(err)
				}
				defer rs.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				defer cancel()
				k := ktls.Client(rc, ccfg)
				keep(k)
				if err := k.HandshakeContext(ctx); err == nil {
					t.Fatal("handshake with a silent peer succeeded")
				}
				k.Close()
			}},
			leakScenario{vn + "/close-during-handshake", func(t *testing.T, keep func(...any)) {
				// Close from another goroutine while the handshake waits
				// for a peer that never answers.
				ccfg, _ := testpki.Configs(v, 0)
				rc, rs, err := testenv.Loopback()
				if err != nil {
					t.Fatal(err)
				}
				defer rs.Close()
				k := ktls.Client(rc, ccfg)
				keep(k)
				errc := make(chan error, 1)
				go func() { errc <- k.Handshake() }()
				time.Sleep(5 * time.Millisecond)
				if err := k.Close(); err != nil {
					t.Fatalf("Close during the handshake: %v", err)
				}
				select {
				case err := <-errc:
					if !errors.Is(err, net.ErrClosed) {
						t.Fatalf("handshake after Close: %v; want net.ErrClosed", err)
					}
				case <-time.After(testenv.Prompt):
					t.Fatal("Close did not end the handshake")
				}
			}},
			leakScenario{vn + "/peer-gone", func(t *testing.T, keep func(...any)) {
				for _, ktlsClient := range []bool{true, false} {
					ccfg, scfg := testpki.Configs(v, 0)
					k, s := leakPair(t, keep, ktlsClient, ccfg, scfg)
					testenv.Exchange(t, k, s, 1<<10)
					s.NetConn().Close()
					k.SetReadDeadline(time.Now().Add(testenv.Prompt))
					if _, err := k.Read(make([]byte, 10)); err == nil {
						t.Fatal("Read from a vanished peer succeeded")
					}
					k.Close()
				}
			}},
			leakScenario{vn + "/close-during-io", func(t *testing.T, keep func(...any)) {
				for _, ktlsClient := range []bool{true, false} {
					ccfg, scfg := testpki.Configs(v, 0)
					k, s := leakPair(t, keep, ktlsClient, ccfg, scfg)
					errc := make(chan error, 2)
					go func() {
						_, err := k.Read(make([]byte, 10))
						errc <- err
					}()
					go func() {
						_, err := k.Write(make([]byte, 16<<20))
						errc <- err
					}()
					time.Sleep(20 * time.Millisecond)
					k.Close()
					for range 2 {
						select {
						case <-errc:
						case <-time.After(testenv.Prompt):
							t.Fatal("Close did not end Read and Write")
						}
					}
					s.Close()
				}
			}},
		)
	}
	return ss
}

// TestNoLeaks runs every scenario several times and checks that the
// goroutine and file descriptor counts come back to where they were.
func TestNoLeaks(t *testing.T) {
	rounds := 5
	if testing.Short() {
		rounds = 2
	}
	keep := keeper(t)
	// One connection first, so that what the runtime and the test helpers
	// set up once (the network poller, the test PKI) is in the baseline.
	engines := ktlstest.Engines(t)
	leakScenarios(engines)[0].run(t, keep)
	baseG, baseFD := runtime.NumGoroutine(), testenv.OpenFDs(t)
	for _, sc := range leakScenarios(engines) {
		t.Run(sc.name, func(t *testing.T) {
			for range rounds {
				sc.run(t, keep)
			}
		})
	}
	if t.Failed() {
		return
	}
	waitBaseline(t, baseG, baseFD, 10*time.Second, fmt.Sprintf("after %d rounds of %d scenarios", rounds, len(leakScenarios(engines))))
}

// keeper returns a keep function for the scenarios: what it is given stays
// reachable until the test ends, so that a socket ktls forgot to close is
// not closed by the runtime's finalizer, which would hide the leak.
func keeper(t *testing.T) func(...any) {
	var mu sync.Mutex
	var kept []any
	t.Cleanup(func() {
		mu.Lock()
		runtime.KeepAlive(kept)
		mu.Unlock()
	})
	return func(v ...any) {
		mu.Lock()
		kept = append(kept, v...)
		mu.Unlock()
	}
}

// waitBaseline waits up to limit for the goroutine and file descriptor
// counts to come back to baseG and baseFD, and fails the test with both
// lists if they do not.
func waitBaseline(t *testing.T, baseG, baseFD int, limit time.Duration, after string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		g, fd := runtime.NumGoroutine(), testenv.OpenFDs(t)
		if g <= baseG && fd <= baseFD {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s: %d goroutines (baseline %d), %d fds (baseline %d)\nfds:\n%s\ngoroutines:\n%s",
				after, g, baseG, fd, baseFD, testenv.FDTable(), buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
