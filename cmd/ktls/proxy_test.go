package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// TestProxyFlags: what the command line may and may not say.
func TestProxyFlags(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "proxy.json")
	os.WriteFile(conf, []byte(`{"listeners": [{"listen": ":1", "backend": ":2", "cert": "c", "key": "k"}], "idle-timeout": "1m"}`), 0o600)
	for _, tc := range []struct {
		args []string
		code int
		say  string
	}{
		{[]string{}, 2, "no listen address"},
		{[]string{"-listen", ":1", "-cert", "c", "-key", "k"}, 2, "needs a backend"},
		{[]string{"-listen", ":1", "-backend", ":2"}, 2, "needs cert and key"},
		{[]string{"-listen", ":1", "-backend", ":2", "-cert", "c"}, 2, "cert and key go together"},
		{[]string{"-listen", ":1", "-backend", ":2", "-cert", "c", "-key", "k", "-connect", "x:1"}, 2, "for client mode"},
		{[]string{"-mode", "client", "-listen", ":1"}, 2, "needs connect"},
		{[]string{"-mode", "client", "-listen", ":1", "-connect", "x:1", "-proxy-protocol"}, 2, "for server mode"},
		{[]string{"-mode", "relay", "-listen", ":1"}, 2, `mode "relay"`},
		{[]string{"-config", conf, "-listen", ":3"}, 2, "-listen and -config"},
		{[]string{"-config", filepath.Join(t.TempDir(), "missing")}, 1, "no such file"},
		{[]string{"-listen", ":1", "-backend", ":2", "-cert", "c", "-key", "k", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-idle-timeout", "soon"}, 2, "invalid value"},
	} {
		stderr := &bytes.Buffer{}
		_, code, ok := parseProxyArgs(tc.args, stderr)
		if ok || code != tc.code || !strings.Contains(stderr.String(), tc.say) {
			t.Errorf("%q: ok %v, exit %d, stderr %q; want exit %d saying %q", tc.args, ok, code, stderr, tc.code, tc.say)
		}
	}

	st, _, ok := parseProxyArgs([]string{"-listen", "127.0.0.1:1", "-backend", "unix:/run/b.sock", "-cert", "c", "-key", "k",
		"-client-ca", "ca", "-proxy-protocol", "-handshake-timeout", "3s", "-idle-timeout", "1m", "-max-conns", "7", "-grace", "2s"}, io.Discard)
	if !ok {
		t.Fatal("the full server command line did not parse")
	}
	want := fileListener{Listen: "127.0.0.1:1", Backend: "unix:/run/b.sock", Cert: "c", Key: "k", ClientCA: "ca", ProxyProtocol: true}
	if len(st.listeners) != 1 || fmt.Sprint(st.listeners[0]) != fmt.Sprint(want) ||
		st.handshakeTimeout != 3*time.Second || st.idleTimeout != time.Minute || st.maxConns != 7 || st.grace != 2*time.Second {
		t.Errorf("parsed %+v, want %+v and the durations", st, want)
	}
	st, _, ok = parseProxyArgs([]string{"-mode", "client", "-listen", ":1", "-connect", "h:443", "-ca", "ca", "-sni", "n"}, io.Discard)
	if !ok || st.listeners[0].Mode != "client" || st.listeners[0].Connect != "h:443" || st.listeners[0].SNI != "n" ||
		st.handshakeTimeout != 10*time.Second || st.idleTimeout != 5*time.Minute || st.grace != 30*time.Second {
		t.Errorf("client mode parsed %+v, %v", st, ok)
	}
	// The file's settings win over the flags' defaults, a flag the file
	// does not set stays.
	st, _, ok = parseProxyArgs([]string{"-config", conf, "-max-conns", "9"}, io.Discard)
	if !ok || st.idleTimeout != time.Minute || st.maxConns != 9 || st.handshakeTimeout != 10*time.Second || len(st.listeners) != 1 {
		t.Errorf("-config parsed %+v, %v", st, ok)
	}
}

// usageExample is the file in the command's usage, which must parse.
var usageExample = regexp.MustCompile(`(?s)\n\s+(\{"handshake-timeout".*\]\})\n`)

// TestProxyConfigFile: the file's format, its example in the usage, and
// what it refuses.
func TestProxyConfigFile(t *testing.T) {
	m := usageExample.FindStringSubmatch(usage)
	if m == nil {
		t.Fatal("no example file in the usage")
	}
	f, err := parseProxyFile([]byte(m[1]))
	if err != nil {
		t.Fatalf("the usage's example: %v", err)
	}
	if len(f.Listeners) != 2 || f.Listeners[0].Routes[0].SNI != "b.example" || f.Listeners[1].Connect != "mail.example:465" ||
		f.IdleTimeout.Duration != 5*time.Minute || f.MaxConns != 1000 || !f.Listeners[0].ProxyProtocol {
		t.Errorf("the usage's example parsed as %+v", f)
	}
	for _, tc := range []struct{ file, say string }{
		{`{}`, "no listeners"},
		{`{"listeners": [{"listen": ":1", "backend": ":2", "cert": "c", "key": "k", "colour": "red"}]}`, `unknown field "colour"`},
		{`{"idle-timeout": 5, "listeners": []}`, "a duration is a string"},
		{`{"idle-timeout": "5 minutes", "listeners": []}`, "time: unknown unit"},
		{`{"listeners": [{"listen": ":1", "backend": ":2"}]}`, "listeners[0]: server mode needs cert and key"},
		{`{"listeners": [{"listen": ":1", "routes": [{"sni": "a", "cert": "c", "key": "k"}]}]}`, "a route needs sni, and a backend"},
		{`{"listeners": [{"mode": "client", "listen": ":1", "connect": "h:1", "cert": "c"}]}`, "for server mode"},
		{`{"listeners": []} {}`, "more than one JSON value"},
	} {
		if _, err := parseProxyFile([]byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.say) {
			t.Errorf("%s: %v, want an error saying %q", tc.file, err, tc.say)
		}
	}
	// Routes with certificates of their own and no listener certificate.
	if _, err := parseProxyFile([]byte(`{"listeners": [{"listen": ":1", "backend": ":2", "routes": [{"sni": "a", "cert": "c", "key": "k"}]}]}`)); err != nil {
		t.Error(err)
	}
}

// writeKeyPair writes a new self-signed ECDSA certificate for localhost and
// its key, and returns the certificate.
func writeKeyPair(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	c, _ := x509.ParseCertificate(der)
	return c
}

// listeningRE is the line that scripts wait for, whole.
var listeningRE = regexp.MustCompile(`(?m)^ktls proxy: listening on (127\.0\.0\.1:\d+)$`)

// startProxyCmd runs `ktls proxy` with args and returns the addresses it
// listens on, in order, and a function that waits for its exit status.
func startProxyCmd(t *testing.T, stderr *testenv.Buffer, listeners int, args ...string) ([]string, func() int) {
	t.Helper()
	done := make(chan int, 1)
	go func() { done <- run(append([]string{"proxy"}, args...), io.Discard, stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listeningRE.FindAllStringSubmatch(stderr.String(), -1); len(m) == listeners {
			var addrs []string
			for _, s := range m {
				addrs = append(addrs, s[1])
			}
			return addrs, func() int {
				select {
				case code := <-done:
					return code
				case <-time.After(time.Minute):
					t.Fatalf("ktls proxy did not exit:\n%s", stderr)
					return -1
				}
			}
		}
		select {
		case code := <-done:
			t.Fatalf("ktls proxy exited %d:\n%s", code, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ktls proxy did not listen:\n%s", stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func signalSelf(t *testing.T, sig os.Signal) {
	t.Helper()
	self, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Release closes the pidfd FindProcess opened (Go 1.23); left to
	// the finalizer, it would close during a later test that counts
	// descriptors (TestDoctorHere).
	defer self.Release()
	if err := self.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// echoBackend echoes each connection until its end, then half-closes. The
// test's cleanup waits for every connection to end, so that none outlives
// the test (TestDoctorHere counts the process's descriptors).
func echoBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln, func(c net.Conn) { c.(*net.TCPConn).CloseWrite() })
	return ln.Addr().String()
}

// serveEcho echoes each connection of ln, then calls end.
func serveEcho(t *testing.T, ln net.Listener, end func(net.Conn)) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				// Not io.Copy(c, c): between two TCP sockets the
				// standard library splices through pipes from a pool
				// that the garbage collector closes later, during
				// another test that counts descriptors.
				io.Copy(c, struct{ io.Reader }{c})
				end(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
}

// echoes checks that c echoes msg, one round.
func echoes(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo %q, %v; want %q", got, err, msg)
	}
}

// TestProxyCommand runs `ktls proxy` in server mode: it serves, reloads its
// certificate on SIGHUP (new connections get the new one, an open one goes
// on), and on SIGTERM lets the open connection finish within -grace and
// exits 0 with its counters.
func TestProxyCommand(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	first := writeKeyPair(t, certFile, keyFile, 1)
	stderr := &testenv.Buffer{}
	addrs, wait := startProxyCmd(t, stderr, 1, "-listen", "127.0.0.1:0", "-backend", echoBackend(t),
		"-cert", certFile, "-key", keyFile, "-grace", "20s", "-idle-timeout", "1m")
	dial := func(want *x509.Certificate) *tls.Conn {
		pool := x509.NewCertPool()
		pool.AddCert(want)
		c, err := tls.Dial("tcp", addrs[0], &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("dial expecting certificate %v: %v", want.SerialNumber, err)
		}
		return c
	}
	open := dial(first)
	defer open.Close()
	echoes(t, open, "before the reload")

	second := writeKeyPair(t, certFile, keyFile, 2)
	signalSelf(t, syscall.SIGHUP)
	waitFor(t, stderr, "certificates reloaded")
	c := dial(second)
	echoes(t, c, "with the new certificate")
	c.Close()
	echoes(t, open, "after the reload")

	signalSelf(t, syscall.SIGTERM)
	waitFor(t, stderr, "ktls proxy: stopping")
	// It stops accepting (the line comes just before the listener
	// closes: a connection may still be accepted, and closed at once as
	// one that came while stopping); the open connection goes on until
	// it ends.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addrs[0], time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting 10 s after SIGTERM")
		}
	}
	echoes(t, open, "during the grace period")
	open.CloseWrite()
	if _, err := io.ReadAll(open); err != nil {
		t.Errorf("the open connection's end: %v", err)
	}
	if code := wait(); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	// Two served, whatever came while stopping.
	if m := stoppedRE.FindStringSubmatch(stderr.String()); m == nil || atoi(m[1])-atoi(m[2]) != 2 {
		t.Errorf("the stop line does not count 2 connections served:\n%s", stderr)
	}
	for _, s := range []string{"end=eof", `version="TLS 1.3"`} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("stderr does not say %q:\n%s", s, stderr)
		}
	}
	if strings.Contains(stderr.String(), "grace period over") {
		t.Errorf("the open connection was cut:\n%s", stderr)
	}
}

var stoppedRE = regexp.MustCompile(`ktls proxy: stopped" accepted=(\d+) rejected=(\d+)`)

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestProxyConfigCommand runs `ktls proxy -config` with two listeners: a
// server-mode one in front of a plain echo backend, and a client-mode one
// in front of a TLS echo server. SIGINT stops it; connections still open
// when -grace is over are closed.
func TestProxyConfigCommand(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeKeyPair(t, certFile, keyFile, 1)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsEcho, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, tlsEcho, func(net.Conn) {})
	conf := filepath.Join(dir, "proxy.json")
	os.WriteFile(conf, fmt.Appendf(nil, `{
  "grace": "300ms",
  "listeners": [
    {"listen": "127.0.0.1:0", "backend": %q, "cert": %q, "key": %q, "routes": [{"sni": "localhost"}]},
    {"mode": "client", "listen": "127.0.0.1:0", "connect": %q, "ca": %q, "sni": "localhost"}
  ]
}`, echoBackend(t), certFile, keyFile, tlsEcho.Addr(), certFile), 0o600)
	stderr := &testenv.Buffer{}
	addrs, wait := startProxyCmd(t, stderr, 2, "-config", conf)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(must(os.ReadFile(certFile)))
	server, err := tls.Dial("tcp", addrs[0], &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	echoes(t, server, "TLS in, plain out")
	client, err := net.Dial("tcp", addrs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	echoes(t, client, "plain in, TLS out")

	signalSelf(t, syscall.SIGINT)
	if code := wait(); code != 0 {
		t.Errorf("exit %d after SIGINT, want 0", code)
	}
	for _, c := range []net.Conn{server, client} {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a connection is still open after the grace period")
		}
	}
	for _, s := range []string{"grace period over", "end=shutdown", "accepted=2", "mode=client", "mode=server"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("stderr does not say %q:\n%s", s, stderr)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
