package conn_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"golang.org/x/net/nettest"
)

// golang.org/x/net/nettest.TestConn over ktls connections (docs/ARCHITECTURE.md, tests
// layer 3): deadlines, concurrent Read and Write, Close unblocking, racy
// buffers, for every pairing of ktls with itself and with crypto/tls, both
// versions, both engines.
//
// Three of nettest's subtests (PastTimeout, FutureTimeout,
// ConcurrentMethods) write again after a Write timed out and expect that to
// work. crypto/tls documents the opposite ("After a Write has timed out, the
// TLS state is corrupt and all future writes will return the same error",
// tls.Conn.SetDeadline), stock crypto/tls fails those three, and ktls keeps
// crypto/tls's semantics (TestWriteTimeoutParity checks that). So
// TestNetConn runs nettest.TestConn in a child process of this test binary
// with those three left out through -test.skip; TestConcurrentMethods below
// covers what ConcurrentMethods checks under the race detector without the
// write after a timeout.

// nettestChildEnv marks the child process that runs nettest.TestConn.
const nettestChildEnv = "KTLS_NETTEST_CHILD"

// nettestSkip names the nettest subtests that need a write to survive its
// own timeout.
const nettestSkip = "^TestNetConn$/.*/^(PastTimeout|FutureTimeout|ConcurrentMethods)$"

// netPair is one pairing: c1, the connection nettest puts deadlines on, is
// always ktls; c2 is ktls or stock crypto/tls.
type netPair struct {
	name     string
	version  uint16
	c1Client bool // c1 is the client
	c2Stock  bool
	cache    bool // the client has a ClientSessionCache (TLS 1.3: ticket drain)
	backend  string
	shortToo bool // also run in -short mode
}

func netPairs() []netPair {
	var ps []netPair
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		vn := strings.ReplaceAll(tls.VersionName(v), " ", "")
		for _, c1Client := range []bool{true, false} {
			for _, c2Stock := range []bool{false, true} {
				c1 := "ktls-server"
				if c1Client {
					c1 = "ktls-client"
				}
				c2 := "ktls"
				if c2Stock {
					c2 = "stock"
				}
				ps = append(ps, netPair{
					name:    fmt.Sprintf("%s-%s-%s", vn, c1, c2),
					version: v, c1Client: c1Client, c2Stock: c2Stock, cache: true,
					backend: "userspace", shortToo: v == tls.VersionTLS13 || !c2Stock,
				})
			}
		}
		if kernelPairs(v) {
			// Both ends on the kernel engine, and the kernel against
			// stock crypto/tls from either side.
			for _, kp := range []struct {
				c1Client, c2Stock bool
				name              string
			}{{true, false, "ktls-client-ktls"}, {true, true, "ktls-client-stock"}, {false, true, "ktls-server-stock"}} {
				ps = append(ps, netPair{
					name:    vn + "-kernel-" + kp.name,
					version: v, c1Client: kp.c1Client, c2Stock: kp.c2Stock, cache: true,
					backend: "kernel", shortToo: true,
				})
			}
		}
		ps = append(ps, netPair{
			name:    vn + "-stdlib-ktls-client-ktls",
			version: v, c1Client: true, cache: true, backend: "stdlib", shortToo: v == tls.VersionTLS13,
		})
	}
	ps = append(ps, netPair{
		name:    "TLS1.3-ktls-client-stock-nocache",
		version: tls.VersionTLS13, c1Client: true, c2Stock: true, backend: "userspace",
	})
	return ps
}

// kernelPairs reports whether the kernel engine pairings run: where kTLS
// serves the version, and always inside the VM, where a kernel that does not
// makes them fail.
func kernelPairs(version uint16) bool {
	suite := uint16(tls.TLS_AES_128_GCM_SHA256)
	if version == tls.VersionTLS12 {
		suite = tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
	}
	return testenv.InVM() || kernel.Probe(true, version, suite) == nil && kernel.Probe(false, version, suite) == nil
}

// makePipe returns nettest's MakePipe for a pairing: both handshakes done,
// concurrently, before it returns; stop closes both ends.
func (p netPair) makePipe() nettest.MakePipe {
	ccfg, scfg := testpki.Configs(p.version, 0)
	if p.cache {
		ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	}
	return func() (c1, c2 net.Conn, stop func(), err error) {
		rc, rs, err := testenv.Loopback()
		if err != nil {
			return nil, nil, nil, err
		}
		opt := ktls.WithBackend(p.backend)
		var k *ktls.Conn
		var peer interface {
			net.Conn
			Handshake() error
		}
		switch {
		case p.c1Client && p.c2Stock:
			k, peer = ktls.Client(rc, ccfg, opt), tls.Server(rs, scfg)
		case p.c1Client:
			k, peer = ktls.Client(rc, ccfg, opt), ktls.Server(rs, scfg, opt)
		case p.c2Stock:
			k, peer = ktls.Server(rs, scfg, opt), tls.Client(rc, ccfg)
		default:
			k, peer = ktls.Server(rs, scfg, opt), ktls.Client(rc, ccfg, opt)
		}
		stop = func() { k.Close(); peer.Close() }
		deadline := time.Now().Add(30 * time.Second)
		k.SetDeadline(deadline)
		peer.SetDeadline(deadline)
		errc := make(chan error, 1)
		go func() { errc <- peer.Handshake() }()
		err = k.Handshake()
		if perr := <-errc; err == nil {
			err = perr
		}
		if err == nil {
			if b := k.Backend(); b.TX != p.backend || b.RX != p.backend {
				err = fmt.Errorf("backend %+v, want %s", b, p.backend)
			}
		}
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		if p.cache && p.version == tls.VersionTLS13 {
			// The server's tickets follow the handshake. A client that
			// closes with them unread in its socket makes the kernel
			// reset the connection, and nettest's BasicIO (c1 writes,
			// closes, c2 reads) then loses data: stock crypto/tls too.
			// One byte from server to client reads them, through
			// ktls's ticket drain.
			client, server := net.Conn(k), net.Conn(peer)
			if !p.c1Client {
				client, server = server, client
			}
			if _, err = server.Write([]byte{1}); err == nil {
				_, err = io.ReadFull(client, make([]byte, 1))
			}
			if err != nil {
				stop()
				return nil, nil, nil, err
			}
		}
		k.SetDeadline(time.Time{})
		peer.SetDeadline(time.Time{})
		return k, peer, stop, nil
	}
}

// TestNetConn runs nettest.TestConn over every pairing, in a child process
// that leaves out the three subtests named above.
func TestNetConn(t *testing.T) {
	if os.Getenv(nettestChildEnv) == "1" {
		for _, p := range netPairs() {
			if testing.Short() && !p.shortToo {
				continue
			}
			t.Run(p.name, func(t *testing.T) { nettest.TestConn(t, p.makePipe()) })
		}
		return
	}
	args := []string{"-test.run=^TestNetConn$", "-test.skip=" + nettestSkip, "-test.v", "-test.count=1", "-test.timeout=9m"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), nettestChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	// The child must have run every pairing's subtests it was meant to.
	for _, p := range netPairs() {
		if testing.Short() && !p.shortToo {
			continue
		}
		for _, sub := range []string{"BasicIO", "PingPong", "RacyRead", "RacyWrite", "ReadTimeout", "WriteTimeout", "PresentTimeout", "CloseTimeout"} {
			if !strings.Contains(string(out), "--- PASS: TestNetConn/"+p.name+"/"+sub+" ") && err == nil {
				t.Errorf("the child did not run %s/%s", p.name, sub)
			}
		}
	}
	if err != nil || t.Failed() || testing.Verbose() {
		t.Logf("nettest child (%s %s):\n%s", os.Args[0], strings.Join(args, " "), failuresFirst(string(out)))
	}
	if err != nil {
		t.Fatalf("nettest.TestConn failed: %v", err)
	}
}

// failuresFirst puts the lines that report failures before the full output.
func failuresFirst(out string) string {
	var fails []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "--- FAIL") || strings.Contains(l, "conntest.go") || strings.Contains(l, "panic") || strings.Contains(l, "DATA RACE") {
			fails = append(fails, l)
		}
	}
	if len(fails) == 0 {
		return out
	}
	return "failures:\n" + strings.Join(fails, "\n") + "\n\nfull output:\n" + out
}

// TestConcurrentMethods is nettest's ConcurrentMethods without its final
// write (see above): every method of a ktls Conn at once, under the race
// detector; afterwards the connection still reads, and writes fail only if
// a Write timed out.
func TestConcurrentMethods(t *testing.T) {
	for _, p := range netPairs() {
		if testing.Short() && !p.shortToo {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			c1, c2, stop, err := p.makePipe()()
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			// The peer drains until closed.
			go io.Copy(io.Discard, c2)
			var wg sync.WaitGroup
			var mu sync.Mutex
			writeTimedOut := false
			for range 100 {
				wg.Add(7)
				go func() {
					defer wg.Done()
					c1.Read(make([]byte, 1024))
				}()
				go func() {
					defer wg.Done()
					if _, err := c1.Write(make([]byte, 1024)); err != nil {
						if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
							t.Errorf("Write: %v; want nil or a timeout", err)
						}
						mu.Lock()
						writeTimedOut = true
						mu.Unlock()
					}
				}()
				go func() {
					defer wg.Done()
					c1.SetDeadline(time.Now().Add(10 * time.Millisecond))
				}()
				go func() {
					defer wg.Done()
					c1.SetReadDeadline(aLongTimeAgo)
				}()
				go func() {
					defer wg.Done()
					c1.SetWriteDeadline(aLongTimeAgo)
				}()
				go func() {
					defer wg.Done()
					c1.LocalAddr()
				}()
				go func() {
					defer wg.Done()
					c1.RemoteAddr()
				}()
			}
			wg.Wait()
			c1.SetDeadline(time.Time{})
			// A Read that timed out is not fatal: the connection reads on.
			if _, err := c2.Write([]byte("after the storm")); err != nil {
				t.Fatalf("peer Write: %v", err)
			}
			c1.SetReadDeadline(time.Now().Add(testenv.Prompt))
			buf := make([]byte, 15)
			if _, err := io.ReadFull(c1, buf); err != nil || string(buf) != "after the storm" {
				t.Fatalf("Read after concurrent calls = %q, %v", buf, err)
			}
			if !writeTimedOut {
				if _, err := c1.Write([]byte("x")); err != nil {
					t.Fatalf("Write after concurrent calls, none of which timed out: %v", err)
				}
			}
		})
	}
}

// aLongTimeAgo is a deadline in the past, as nettest uses.
var aLongTimeAgo = time.Unix(233431200, 0)
