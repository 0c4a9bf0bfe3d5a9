package conn_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// Deadlines, context cancellation and Close behave as in crypto/tls on every
// engine (docs/ARCHITECTURE.md, invariants).

// TestHandshakeContextCancel cancels a handshake that the peer never
// answers: it returns promptly with the context's error, stays failed, and
// the peer sees the connection closed.
func TestHandshakeContextCancel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		wantIs error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
		{"already-cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			rc, rs := testenv.TCPPair(t)
			var k *ktls.Conn
			var peer net.Conn
			if ktlsClient {
				k, peer = ktls.Client(rc, ccfg), rs
			} else {
				k, peer = ktls.Server(rs, scfg), rc
			}
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			err := k.HandshakeContext(ctx)
			if d := time.Since(start); d > testenv.Prompt {
				t.Fatalf("HandshakeContext returned after %v", d)
			}
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("HandshakeContext = %v, want %v", err, tc.wantIs)
			}
			testenv.PeerSeesClose(t, peer)
			if err := k.Handshake(); err == nil {
				t.Fatal("Handshake after a cancelled one succeeded")
			}
			if _, err := k.Write([]byte("x")); err == nil {
				t.Fatal("Write after a cancelled handshake succeeded")
			}
			if b := k.Backend(); b.TX != "" || b.RX != "" {
				t.Fatalf("Backend() = %+v after a failed handshake, want none", b)
			}
			k.Close()
		}))
	}
}

// splitConn writes, when armed, the first cut bytes of the next Write, then
// signals and holds the rest until released: a record arrives in two parts.
type splitConn struct {
	net.Conn
	mu      sync.Mutex
	cut     int
	first   chan struct{} // closed when the first part is written
	release chan struct{} // close to send the rest
}

func (c *splitConn) arm(cut int) {
	c.mu.Lock()
	c.cut, c.first, c.release = cut, make(chan struct{}), make(chan struct{})
	c.mu.Unlock()
}

func (c *splitConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	cut, first, release := c.cut, c.first, c.release
	c.cut = 0
	c.mu.Unlock()
	if cut == 0 || cut >= len(p) {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:cut])
	close(first)
	if err != nil {
		return n, err
	}
	<-release
	m, err := c.Conn.Write(p[cut:])
	return n + m, err
}

// deadlineCase is one ktls connection under test against a stock peer.
type deadlineCase struct {
	name       string
	version    uint16
	ktlsClient bool
	cache      bool // TLS 1.3 client: first reads go through the ticket drain
	backend    string
}

func deadlineCases() []deadlineCase {
	var cs []deadlineCase
	for _, be := range []string{"userspace", "stdlib"} {
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			for _, client := range []bool{true, false} {
				name := tls.VersionName(v) + "/" + be
				if client {
					name += "/ktls-client"
				} else {
					name += "/ktls-server"
				}
				cs = append(cs, deadlineCase{name, v, client, false, be})
			}
		}
	}
	cs = append(cs, deadlineCase{"TLS 1.3/userspace/ktls-client-ticket-drain", tls.VersionTLS13, true, true, "userspace"})
	return cs
}

// pairSplit returns a handshaken ktls Conn and a stock peer whose writes can
// be split.
func (dc deadlineCase) pairSplit(t testing.TB) (*ktls.Conn, *tls.Conn, *splitConn) {
	t.Helper()
	ccfg, scfg := testpki.Configs(dc.version, 0)
	if dc.cache {
		ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	rc, rs := testenv.TCPPair(t)
	var k *ktls.Conn
	var s *tls.Conn
	var split *splitConn
	opt := ktls.WithBackend(dc.backend)
	if dc.ktlsClient {
		split = &splitConn{Conn: rs}
		k, s = ktls.Client(rc, ccfg, opt), tls.Server(split, scfg)
	} else {
		split = &splitConn{Conn: rc}
		k, s = ktls.Server(rs, scfg, opt), tls.Client(split, ccfg)
	}
	testenv.HandshakeBoth(t, k, s)
	ktlstest.WantBackend(t, k, dc.backend, dc.backend)
	t.Cleanup(func() { k.Close(); s.Close() })
	return k, s, split
}

// checkTimeout checks that err is a read or write deadline error as
// crypto/tls returns it.
func checkTimeout(t testing.TB, what string, n int, err error) {
	t.Helper()
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s = %d, %v (%T); want 0 and a net.Error with Timeout() that wraps os.ErrDeadlineExceeded", what, n, err, err)
	}
}

// readExactly reads len(want) bytes under a deadline and compares them.
func readExactly(t testing.TB, r interface {
	io.Reader
	SetReadDeadline(time.Time) error
}, want []byte) {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(testenv.Prompt))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	r.SetReadDeadline(time.Time{})
	if string(got) != string(want) {
		t.Fatalf("read %q, want %q", trunc(got), trunc(want))
	}
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// TestReadDeadline: a read deadline times out a Read with crypto/tls's
// error, and is not fatal: the connection reads (and writes) afterwards,
// also when the deadline fires in the middle of a record, whose first part
// must then be kept.
func TestReadDeadline(t *testing.T) {
	for _, dc := range deadlineCases() {
		t.Run(dc.name, func(t *testing.T) {
			k, s, split := dc.pairSplit(t)

			// Nothing comes: a plain timeout.
			k.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			start := time.Now()
			n, err := k.Read(make([]byte, 100))
			checkTimeout(t, "Read with nothing to read", n, err)
			if d := time.Since(start); d > testenv.Prompt {
				t.Fatalf("Read timed out after %v", d)
			}
			// A past deadline times out at once, even with data waiting.
			if _, err := s.Write([]byte("waiting")); err != nil {
				t.Fatal(err)
			}
			k.SetReadDeadline(time.Now().Add(-time.Second))
			n, err = k.Read(make([]byte, 100))
			checkTimeout(t, "Read with a past deadline", n, err)
			readExactly(t, k, []byte("waiting"))

			// The deadline fires with part of a record read: in the
			// header, and in the body.
			for i, cut := range []int{3, 600} {
				data := testenv.Pattern(1000, byte(i))
				split.arm(cut)
				errc := make(chan error, 1)
				go func() {
					_, err := s.Write(data)
					errc <- err
				}()
				select {
				case <-split.first:
				case <-time.After(testenv.Prompt):
					t.Fatal("the peer did not write")
				}
				k.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
				n, err := k.Read(make([]byte, 2000))
				checkTimeout(t, "Read in the middle of a record", n, err)
				close(split.release)
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				readExactly(t, k, data)
			}

			// Writes were never affected.
			if _, err := k.Write([]byte("still writing")); err != nil {
				t.Fatalf("Write after read timeouts: %v", err)
			}
			readExactly(t, s, []byte("still writing"))
		})
	}
}

// TestWriteTimeoutParity: crypto/tls documents that after a Write timed out
// the connection is broken for writes ("all future writes will return the
// same error"), while reads go on. ktls matches that on every engine; the
// stock connection is the control.
func TestWriteTimeoutParity(t *testing.T) {
	type result struct{ writeAfter, readAfter error }
	try := func(t *testing.T, w interface {
		io.ReadWriter
		SetWriteDeadline(time.Time) error
		SetReadDeadline(time.Time) error
	}, peer io.ReadWriter) result {
		t.Helper()
		w.SetWriteDeadline(time.Now().Add(-time.Second))
		n, err := w.Write([]byte("late"))
		checkTimeout(t, "Write with a past deadline", n, err)
		w.SetWriteDeadline(time.Time{})
		var r result
		_, r.writeAfter = w.Write([]byte("again"))
		go peer.Write([]byte("read on"))
		w.SetReadDeadline(time.Now().Add(testenv.Prompt))
		buf := make([]byte, 7)
		_, r.readAfter = io.ReadFull(w, buf)
		if r.readAfter == nil && string(buf) != "read on" {
			t.Fatalf("read %q", buf)
		}
		return r
	}
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			ccfg, scfg := testpki.Configs(v, 0)
			rc, rs := testenv.TCPPair(t)
			sc, ss := tls.Client(rc, ccfg), tls.Server(rs, scfg)
			testenv.HandshakeBoth(t, sc, ss)
			stock := try(t, sc, ss)
			if stock.writeAfter == nil || stock.readAfter != nil {
				t.Fatalf("control: crypto/tls after a write timeout: Write %v, Read %v", stock.writeAfter, stock.readAfter)
			}
			for _, be := range []string{"userspace", "stdlib"} {
				t.Run(be, ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
					k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg, ktls.WithBackend(be))
					ktlstest.WantBackend(t, k, be, be)
					got := try(t, k, s)
					if (got.writeAfter == nil) != (stock.writeAfter == nil) || got.readAfter != nil {
						t.Fatalf("after a write timeout: Write %v, Read %v; crypto/tls: Write %v, Read %v",
							got.writeAfter, got.readAfter, stock.writeAfter, stock.readAfter)
					}
				}))
			}
		})
	}
}

// TestCloseUnblocks: Close ends a Read blocked on a silent peer and a Write
// blocked on a peer that does not read, promptly, as in crypto/tls.
func TestCloseUnblocks(t *testing.T) {
	for _, dc := range deadlineCases() {
		t.Run(dc.name, func(t *testing.T) {
			t.Run("Read", func(t *testing.T) {
				k, _, _ := dc.pairSplit(t)
				errc := make(chan error, 1)
				go func() {
					_, err := k.Read(make([]byte, 100))
					errc <- err
				}()
				time.Sleep(50 * time.Millisecond)
				start := time.Now()
				if err := k.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				select {
				case err := <-errc:
					if !errors.Is(err, net.ErrClosed) {
						t.Fatalf("blocked Read returned %v, want an error wrapping net.ErrClosed", err)
					}
				case <-time.After(testenv.Prompt):
					t.Fatal("Close did not unblock Read")
				}
				if d := time.Since(start); d > testenv.Prompt {
					t.Fatalf("Read returned %v after Close", d)
				}
				if _, err := k.Read(make([]byte, 1)); err == nil {
					t.Fatal("Read after Close succeeded")
				}
			})
			t.Run("Write", func(t *testing.T) {
				k, _, _ := dc.pairSplit(t)
				// Far more than the socket buffers hold.
				big := make([]byte, 64<<20)
				type res struct {
					n   int
					err error
				}
				resc := make(chan res, 1)
				go func() {
					n, err := k.Write(big)
					resc <- res{n, err}
				}()
				time.Sleep(200 * time.Millisecond)
				select {
				case r := <-resc:
					t.Fatalf("Write to a peer that does not read returned %d, %v", r.n, r.err)
				default:
				}
				start := time.Now()
				closed := make(chan error, 1)
				go func() { closed <- k.Close() }()
				select {
				case r := <-resc:
					if r.err == nil || r.n >= len(big) {
						t.Fatalf("blocked Write returned %d, %v after Close", r.n, r.err)
					}
				case <-time.After(testenv.Prompt):
					t.Fatal("Close did not unblock Write")
				}
				select {
				case <-closed:
				case <-time.After(testenv.Prompt):
					t.Fatal("Close blocked")
				}
				if d := time.Since(start); d > testenv.Prompt {
					t.Fatalf("Write returned %v after Close", d)
				}
			})
		})
	}
}
