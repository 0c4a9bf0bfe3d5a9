package ktlshttp_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"github.com/ktls-go/ktls/ktlshttp"
)

func TestMain(m *testing.M) { testenv.MainWithLeakCheck(m) }

// checkLeaks fails t if, once its cleanups ran, the process has more file
// descriptors or goroutines than when checkLeaks was called (docs/ARCHITECTURE.md,
// house rule 13). Call it first, so that its cleanup runs last. The tests
// of this package do not run in parallel, so the counts are the test's.
func checkLeaks(t *testing.T) {
	t.Helper()
	fds, gs := testenv.OpenFDs(t), runtime.NumGoroutine()
	t.Cleanup(func() {
		var nfd, ng int
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if nfd, ng = testenv.OpenFDs(t), runtime.NumGoroutine(); nfd <= fds && ng <= gs {
				return
			}
		}
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("leaked: %d file descriptors (now %d), %d goroutines (now %d):\n%s\n%s", fds, nfd, gs, ng, testenv.FDTable(), buf)
	})
}

// connKey is the context key under which the test servers' ConnContext
// stores the connection.
type connKey struct{}

// connOf returns the connection of a request to a test server.
func connOf(t testing.TB, r *http.Request) *ktls.Conn {
	t.Helper()
	c, ok := r.Context().Value(connKey{}).(*ktls.Conn)
	if !ok {
		t.Errorf("ConnContext got %T, want *ktls.Conn", r.Context().Value(connKey{}))
	}
	return c
}

// testServer is a ktlshttp.Server on a loopback port.
type testServer struct {
	*ktlshttp.Server
	URL    string
	served chan error // Serve's result
}

// startServer serves h with a ktlshttp.Server through ServeTLS, with the
// test PKI's certificate; configure, if not nil, changes the http.Server
// first. The server is closed, and Serve's result checked, at the end of
// the test.
func startServer(t *testing.T, h http.Handler, configure func(*http.Server)) *testServer {
	t.Helper()
	_, scfg := testpki.Configs(0, 0)
	srv := &http.Server{
		Handler:   h,
		TLSConfig: scfg,
		ErrorLog:  log.New(testWriter{t}, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	if configure != nil {
		configure(srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{Server: &ktlshttp.Server{Server: srv}, served: make(chan error, 1)}
	s.URL = "https://" + l.Addr().String()
	go func() { s.served <- s.ServeTLS(l, "", "") }()
	t.Cleanup(func() {
		s.Close()
		if err := <-s.served; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v, want %v", err, http.ErrServerClosed)
		}
	})
	return s
}

// testWriter sends the servers' error log to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("server: %s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// stockClient returns a net/http client with crypto/tls that speaks only
// proto ("h2" or "http/1.1") and trusts the test PKI.
func stockClient(t *testing.T, proto string) *http.Client {
	t.Helper()
	ccfg, _ := testpki.Configs(0, 0)
	tr := &http.Transport{TLSClientConfig: ccfg, Protocols: new(http.Protocols)}
	if proto == "h2" {
		tr.Protocols.SetHTTP2(true)
	} else {
		// net/http offers no ALPN protocol at all when it speaks only
		// HTTP/1 (transport.go, onceSetNextProtoDefaults).
		tr.Protocols.SetHTTP1(true)
		ccfg.NextProtos = []string{"http/1.1"}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// ktlsClient returns a client on a ktlshttp.Transport that trusts the test
// PKI and offers nextProtos (nil: the Transport's default).
func ktlsClient(t *testing.T, nextProtos ...string) (*http.Client, *ktlshttp.Transport) {
	t.Helper()
	ccfg, _ := testpki.Configs(0, 0)
	ccfg.NextProtos = nextProtos
	tr := ktlshttp.NewTransport(ccfg)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, tr
}

// traced returns req with a trace that records the connection it got.
func traced(req *http.Request) (*http.Request, func() httptrace.GotConnInfo) {
	var mu sync.Mutex
	var info httptrace.GotConnInfo
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		mu.Lock()
		info = i
		mu.Unlock()
	}}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace)), func() httptrace.GotConnInfo {
		mu.Lock()
		defer mu.Unlock()
		return info
	}
}

// wantState checks that st is the state of a finished handshake that
// negotiated proto.
func wantState(t testing.TB, who string, st *tls.ConnectionState, proto string) {
	t.Helper()
	switch {
	case st == nil:
		t.Errorf("%s: TLS state is nil", who)
	case !st.HandshakeComplete:
		t.Errorf("%s: HandshakeComplete is false", who)
	case st.Version != tls.VersionTLS13:
		t.Errorf("%s: version %s, want TLS 1.3", who, tls.VersionName(st.Version))
	case tls.CipherSuiteName(st.CipherSuite) == fmt.Sprintf("0x%04X", st.CipherSuite):
		t.Errorf("%s: cipher suite %#04x is not one crypto/tls knows", who, st.CipherSuite)
	case st.NegotiatedProtocol != proto:
		t.Errorf("%s: negotiated protocol %q, want %q", who, st.NegotiatedProtocol, proto)
	case len(st.PeerCertificates) == 0 && strings.HasPrefix(who, "client"):
		t.Errorf("%s: no peer certificates", who)
	}
}

// wantEngines checks that c got the engines KTLS_BACKEND=auto picks: the
// kernel where it serves the suite (which it must in the VM), userspace
// elsewhere; never stdlib. Under a KTLS_BACKEND of the environment, it
// checks only that c says which engines it got.
func wantEngines(t testing.TB, c *ktls.Conn) {
	t.Helper()
	if c == nil {
		t.Error("no connection to check the engines of")
		return
	}
	b := c.Backend()
	if os.Getenv("KTLS_BACKEND") != "" {
		if b.TX == "" || b.RX == "" {
			t.Errorf("engines not reported: %+v", b)
		}
		return
	}
	st := c.ConnectionState()
	if tx, rx := autoEngine(t, true, st), autoEngine(t, false, st); b.TX != tx || b.RX != rx {
		t.Errorf("engines tx=%s rx=%s (%s), want tx=%s rx=%s", b.TX, b.RX, b.Reason, tx, rx)
	}
}

func autoEngine(t testing.TB, tx bool, st tls.ConnectionState) string {
	t.Helper()
	err := kernel.Probe(tx, st.Version, st.CipherSuite)
	if err == nil {
		if !tx && st.CipherSuite == tls.TLS_CHACHA20_POLY1305_SHA256 {
			return "userspace" // selector: auto receives ChaCha20 in userspace
		}
		return "kernel"
	}
	if f := testenv.KTLSFeature(st.Version, st.CipherSuite); testenv.InVM() && testenv.ExpectedInVM(f) {
		t.Fatalf("kTLS (%s) must serve %s in the VM: %v", f, tls.CipherSuiteName(st.CipherSuite), err)
	}
	return "userspace"
}

// get fetches url with c and returns the response with its body read.
func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp, string(body)
}
