package ktls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// TestForcedBackend forces each engine that exists here, through the option
// and through KTLS_BACKEND, which wins.
func TestForcedBackend(t *testing.T) {
	for _, tc := range []struct {
		env, opt string
		tx, rx   string
	}{
		{"", "stdlib", "stdlib", "stdlib"},
		{"", "userspace", "userspace", "userspace"},
		{"stdlib", "userspace", "stdlib", "stdlib"},
		{"userspace", "stdlib", "userspace", "userspace"},
		{"tx=userspace,rx=stdlib", "", "stdlib", "stdlib"},
		{"", "tx=userspace,rx=userspace", "userspace", "userspace"},
	} {
		t.Run(fmt.Sprintf("env=%s,opt=%s", tc.env, tc.opt), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			t.Setenv("KTLS_BACKEND", tc.env)
			var opts []ktls.Option
			if tc.opt != "" {
				opts = append(opts, ktls.WithBackend(tc.opt))
			}
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg, opts...)
			ktlstest.WantBackend(t, k, tc.tx, tc.rx)
			if k.Backend().Reason == "" {
				t.Error("Backend().Reason is empty")
			}
			testenv.Exchange(t, k, s, 300<<10)
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// TestBadBackendSpec checks that a malformed KTLS_BACKEND fails clearly,
// naming the accepted values.
func TestBadBackendSpec(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "kernal")
	_, err := ktls.Dial("tcp", "127.0.0.1:1", &tls.Config{})
	if err == nil || !strings.Contains(err.Error(), "kernal") || !strings.Contains(err.Error(), "userspace") {
		t.Fatalf("Dial with KTLS_BACKEND=kernal: %v", err)
	}
	rc, _ := testenv.TCPPair(t)
	c := ktls.Client(rc, &tls.Config{InsecureSkipVerify: true})
	if err := c.Handshake(); err == nil || !strings.Contains(err.Error(), "kernal") {
		t.Fatalf("Handshake with KTLS_BACKEND=kernal: %v", err)
	}
}

// TestDialListen uses the package-level Dial and Listen end to end.
func TestDialListen(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	ccfg.ServerName = ""
	ccfg.InsecureSkipVerify = false
	c, err := ktls.Dial("tcp", l.Addr().String(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ktlstest.WantAuto(t, c)
	msg := []byte("hello over ktls")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo = %q", got)
	}
	var _ net.Conn = c
}

// TestUserConfigHooks checks that ktls leaves the user's config working as in
// crypto/tls: the user's KeyLogWriter still gets every line, the user's
// config is not modified, and a config returned by GetConfigForClient is used
// (its certificate, its ALPN) and resumes sessions across connections.
func TestUserConfigHooks(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			ccfg, inner := testpki.Configs(v, 0)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			inner.NextProtos = []string{"inner"}
			var keyLog strings.Builder
			var mu sync.Mutex
			var called int
			outer := &tls.Config{
				KeyLogWriter: lockedWriter{&mu, &keyLog},
				GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
					mu.Lock()
					called++
					mu.Unlock()
					return inner, nil
				},
			}
			inner.KeyLogWriter = outer.KeyLogWriter
			ccfg.NextProtos = []string{"inner"}
			for i := range 2 {
				k, s := ktlstest.PairWithStock(t, false, ccfg, outer)
				testenv.Exchange(t, k, s, 1000)
				st := k.ConnectionState()
				if st.NegotiatedProtocol != "inner" {
					t.Fatalf("ALPN %q: the GetConfigForClient config was not used", st.NegotiatedProtocol)
				}
				if st.DidResume != (i == 1) {
					t.Fatalf("connection %d: DidResume = %v", i, st.DidResume)
				}
				ktlstest.WantAuto(t, k)
				k.Close()
				s.Close()
			}
			for _, c := range []*tls.Config{outer, inner} {
				if c.WrapSession != nil || c.UnwrapSession != nil || c.KeyLogWriter != outer.KeyLogWriter {
					t.Fatal("ktls modified the user's config")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if called != 2 {
				t.Fatalf("GetConfigForClient called %d times", called)
			}
			want := "CLIENT_RANDOM"
			if v == tls.VersionTLS13 {
				want = "SERVER_TRAFFIC_SECRET_0"
			}
			if !strings.Contains(keyLog.String(), want) {
				t.Fatalf("the user's KeyLogWriter got no %s line:\n%s", want, keyLog.String())
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// silentServer accepts connections and never answers; each accepted conn
// comes on the channel.
func silentServer(t testing.TB) (string, <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 16)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			ch <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), ch
}

// TestDialTimeout dials a server that accepts TCP and never speaks TLS,
// with a context deadline, a Dialer timeout and a Dialer deadline: the dial
// fails promptly with the deadline's error, returns no connection, and
// closes the socket it opened.
func TestDialTimeout(t *testing.T) {
	ccfg, _ := testpki.Configs(tls.VersionTLS13, 0)
	addr, accepted := silentServer(t)
	for _, tc := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"Dialer.DialContext", func() (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			d := &ktls.Dialer{Config: ccfg}
			return d.DialContext(ctx, "tcp", addr)
		}},
		{"DialWithDialer-Timeout", func() (net.Conn, error) {
			c, err := ktls.DialWithDialer(&net.Dialer{Timeout: 100 * time.Millisecond}, "tcp", addr, ccfg)
			if c == nil {
				return nil, err
			}
			return c, err
		}},
		{"DialWithDialer-Deadline", func() (net.Conn, error) {
			c, err := ktls.DialWithDialer(&net.Dialer{Deadline: time.Now().Add(100 * time.Millisecond)}, "tcp", addr, ccfg)
			if c == nil {
				return nil, err
			}
			return c, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := tc.dial()
			if d := time.Since(start); d > testenv.Prompt {
				t.Fatalf("dial returned after %v", d)
			}
			if c != nil {
				t.Fatalf("dial returned a connection (%T) with error %v", c, err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("dial error = %v, want context.DeadlineExceeded (as crypto/tls)", err)
			}
			select {
			case peer := <-accepted:
				testenv.PeerSeesClose(t, peer)
			case <-time.After(testenv.Prompt):
				t.Fatal("the server never saw the connection")
			}
		})
	}
}
