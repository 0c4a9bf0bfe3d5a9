package interop_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// Interop with GnuTLS's gnutls-cli and with curl (docs/ARCHITECTURE.md, tests layer 3):
// two more real peers with their own TLS stacks. Both binaries are required;
// the test command installs them (gnutls-bin, curl).

func lookBin(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for these interop tests (%v); install it: apt-get install %s", name, err, pkg)
	}
	return p
}

// caFile writes the test CA certificate as PEM and returns its path.
func caFile(t testing.TB) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testpki.Get().CADER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// echoServer accepts ktls connections on l and echoes what they send; each
// connection's Read error (io.EOF for a clean close) goes to errs.
func echoServer(l net.Listener, conns chan<- *ktls.Conn, errs chan<- error) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			k := c.(*ktls.Conn)
			if err := k.Handshake(); err != nil {
				errs <- err
				return
			}
			conns <- k
			buf := make([]byte, 32<<10)
			for {
				n, err := k.Read(buf)
				if n > 0 {
					if _, werr := k.Write(buf[:n]); werr != nil {
						errs <- werr
						return
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
}

// gnutlsCase is one priority string with what it must negotiate.
var gnutlsCases = []struct {
	name     string
	priority string
	version  uint16
	suite    uint16
}{
	{"TLS13/AES_256_GCM", "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-256-GCM", tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384},
	{"TLS13/CHACHA20_POLY1305", "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305", tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256},
	{"TLS12/AES_128_GCM", "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{"TLS12/CHACHA20_POLY1305", "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-POLY1305", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
}

// gnutlsCLI runs gnutls-cli against addr with the given priority and extra
// arguments; stdin is a pipe the test writes.
func gnutlsCLI(t testing.TB, addr, priority string, extra ...string) (stdin io.WriteCloser, out *watchBuffer, done <-chan error) {
	t.Helper()
	bin := lookBin(t, "gnutls-cli", "gnutls-bin")
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), opensslTimeout)
	args := append([]string{"--x509cafile", caFile(t), "--priority", priority, "-p", port,
		"--logfile", filepath.Join(t.TempDir(), "gnutls.log"), "localhost"}, extra...)
	_ = host
	cmd := exec.CommandContext(ctx, bin, args...)
	out = &watchBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() {
		ch <- cmd.Wait()
		close(ch) // later receives (the cleanup's) return at once
		cancel()
	}()
	t.Cleanup(func() {
		stdin.Close()
		cancel()
		<-ch
	})
	return stdin, out, ch
}

// TestGnuTLSClient runs gnutls-cli against a ktls server for TLS 1.3 suites
// Go never picks itself and for TLS 1.2, and checks the echo of a large line.
func TestGnuTLSClient(t *testing.T) {
	for _, gc := range gnutlsCases {
		t.Run(gc.name, func(t *testing.T) {
			_, scfg := testpki.Configs(0, 0)
			scfg.MinVersion, scfg.MaxVersion = 0, 0
			l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			conns, errs := make(chan *ktls.Conn, 1), make(chan error, 1)
			go echoServer(l, conns, errs)
			stdin, out, _ := gnutlsCLI(t, l.Addr().String(), gc.priority)
			var k *ktls.Conn
			select {
			case k = <-conns:
			case err := <-errs:
				t.Fatalf("server: %v\ngnutls-cli: %s", err, out)
			case <-time.After(opensslTimeout):
				t.Fatalf("no connection; gnutls-cli: %s", out)
			}
			checkNegotiated(t, k, gc.version, gc.suite)
			ktlstest.WantAuto(t, k)
			line := strings.Repeat("gnutls-", 5000) + "end"
			if _, err := io.WriteString(stdin, line+"\n"); err != nil {
				t.Fatal(err)
			}
			out.waitCount(t, "gnutls-cli", line, 1)
			stdin.Close()
			if err := <-errs; err != io.EOF {
				t.Fatalf("server read after gnutls-cli closed: %v, want io.EOF (close_notify)", err)
			}
		})
	}
}

// TestGnuTLSKeyUpdate makes gnutls-cli update its TLS 1.3 key, with and
// without requesting ours (the inline commands ^rekey^, which updates both
// sides, and ^rekey1^, which updates gnutls-cli's key only): the
// ktls server must follow each new key (it reads the next line) and answer
// each request with a KeyUpdate of its own (gnutls-cli reads the echo under
// it). The records on the wire, compared with a session without the
// commands, show that the updates happened: one more record from the client
// per command, one more from the server per request.
func TestGnuTLSKeyUpdate(t *testing.T) {
	lines := []string{"first", "second", "third"}
	plainIn, plainOut := gnutlsSession(t, nil, lines)
	cmds := []string{"^rekey^", "^rekey1^", "^rekey^"}
	kuIn, kuOut := gnutlsSession(t, cmds, lines)
	if got := kuIn - plainIn; got != len(cmds) {
		t.Errorf("the client sent %d more records with %d key updates", got, len(cmds))
	}
	if got := kuOut - plainOut; got != 2 {
		t.Errorf("the server sent %d more records, want 2 (one KeyUpdate per update_requested)", got)
	}
}

// tapListener wraps each accepted conn in a testenv.TapConn and keeps it.
type tapListener struct {
	net.Listener
	taps chan *testenv.TapConn
}

func (l tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &testenv.TapConn{Conn: c}
	l.taps <- tc
	return tc, nil
}

// gnutlsSession runs one gnutls-cli session against a ktls echo server: for
// each line, cmds[i] first (if any), then the line, waiting for its echo.
// It returns how many records the server read and wrote.
func gnutlsSession(t *testing.T, cmds, lines []string) (in, out int) {
	_, scfg := testpki.Configs(tls.VersionTLS13, 0)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tapListener{Listener: inner, taps: make(chan *testenv.TapConn, 1)}
	l := ktls.NewListener(tl, scfg)
	defer l.Close()
	conns, errs := make(chan *ktls.Conn, 1), make(chan error, 1)
	go echoServer(l, conns, errs)
	stdin, outBuf, done := gnutlsCLI(t, l.Addr().String(), gnutlsCases[0].priority, "--inline-commands")
	select {
	case k := <-conns:
		ktlstest.WantAuto(t, k)
	case <-time.After(opensslTimeout):
		t.Fatalf("no connection; gnutls-cli: %s", outBuf)
	}
	tap := <-tl.taps
	for i, line := range lines {
		if i < len(cmds) {
			io.WriteString(stdin, cmds[i]+"\n")
		}
		io.WriteString(stdin, line+"\n")
		outBuf.waitCount(t, "gnutls-cli", line, 1)
	}
	stdin.Close()
	if err := <-errs; err != io.EOF {
		t.Fatalf("server: %v, want io.EOF", err)
	}
	<-done
	wrote, _ := tap.Records(t)
	read, _ := testenv.SplitRecords(t, tap.ReadBytes())
	return len(read), len(wrote)
}

// TestGnuTLSRenegotiation makes gnutls-cli ask a ktls server to renegotiate
// (TLS 1.2, ^renegotiate^): ktls refuses with a no_renegotiation alert and
// the connection ends with an error that says so.
func TestGnuTLSRenegotiation(t *testing.T) {
	_, scfg := testpki.Configs(tls.VersionTLS12, 0)
	l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conns, errs := make(chan *ktls.Conn, 1), make(chan error, 1)
	go echoServer(l, conns, errs)
	stdin, out, _ := gnutlsCLI(t, l.Addr().String(), gnutlsCases[2].priority, "--inline-commands")
	select {
	case <-conns:
	case <-time.After(opensslTimeout):
		t.Fatalf("no connection; gnutls-cli: %s", out)
	}
	io.WriteString(stdin, "^renegotiate^\n")
	select {
	case err := <-errs:
		var a tls.AlertError
		if !errors.As(err, &a) || a != 100 {
			t.Fatalf("server error %v, want one wrapping no_renegotiation (100)", err)
		}
	case <-time.After(opensslTimeout):
		t.Fatalf("server did not end the connection; gnutls-cli: %s", out)
	}
}

// TestCurl fetches a file from net/http served over ktls.Listen with curl,
// for both versions and several suites, and checks it by hash.
func TestCurl(t *testing.T) {
	bin := lookBin(t, "curl", "curl")
	dir := t.TempDir()
	body := testenv.Pattern(3<<20+123, 7)
	if testing.Short() {
		body = body[:200<<10]
	}
	if err := os.WriteFile(filepath.Join(dir, "file.bin"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	_, scfg := testpki.Configs(0, 0)
	scfg.MinVersion, scfg.MaxVersion = 0, 0
	l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	backends := make(chan *ktls.Conn, 16)
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir)),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateActive {
				backends <- c.(*ktls.Conn)
			}
		}}
	go srv.Serve(l)
	defer srv.Close()
	ca := caFile(t)
	for _, args := range [][]string{
		{"--tlsv1.3"},
		{"--tlsv1.3", "--tls13-ciphers", "TLS_CHACHA20_POLY1305_SHA256"},
		{"--tlsv1.3", "--tls13-ciphers", "TLS_AES_256_GCM_SHA384"},
		{"--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"},
		{"--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), opensslTimeout)
			defer cancel()
			// The certificate names localhost; --resolve keeps curl on the
			// loopback address the listener has.
			port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
			url := "https://localhost:" + port + "/file.bin"
			cmd := exec.CommandContext(ctx, bin, append([]string{"-sS", "--fail", "--cacert", ca,
				"--resolve", "localhost:" + port + ":127.0.0.1", url}, args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			got, err := cmd.Output()
			if err != nil {
				t.Fatalf("curl %v: %v: %s", args, err, stderr.String())
			}
			if h := sha256.Sum256(got); h != sum {
				t.Fatalf("curl got %d bytes, sha256 %s; want %d bytes", len(got), hex.EncodeToString(h[:]), len(body))
			}
			select {
			case c := <-backends:
				ktlstest.WantAuto(t, c)
			case <-time.After(opensslTimeout):
				t.Fatal("no connection state seen")
			}
		})
	}
}
