package proxy_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"github.com/ktls-go/ktls/proxy"
)

// The proxy against OpenSSL's s_client and s_server and curl, which exist
// on the host and in the VMs (the harness copies them in). A missing one
// fails the tests: they do not skip.

// peerTimeout bounds every peer process.
const peerTimeout = 2 * time.Minute

// opensslCase is one version and suite, and the openssl flags that make
// it offer or accept only that suite.
type opensslCase struct {
	name           string
	version, suite uint16
	args           []string
}

// opensslCases are the TLS 1.3 suites crypto/tls never picks on its own as
// a client, and one TLS 1.2 suite; TestServerModeStock has the others.
var opensslCases = []opensslCase{
	{"TLS13/AES_128_GCM", tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, []string{"-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"}},
	{"TLS13/AES_256_GCM", tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384, []string{"-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"}},
	{"TLS13/CHACHA20_POLY1305", tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256, []string{"-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"}},
	{"TLS12/ECDHE-ECDSA-AES256-GCM-SHA384", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"}},
}

func lookPeer(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for these tests (%v)", name, err)
	}
	return p
}

// peerCmd is a command bound by peerTimeout, killed at the test's end, with
// its stderr shown when the test fails.
func peerCmd(t testing.TB, name string, args ...string) (*exec.Cmd, *testenv.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	cmd := exec.CommandContext(ctx, lookPeer(t, name), args...)
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	cmd.WaitDelay = time.Second
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			t.Logf("%s %s: stderr:\n%s", name, strings.Join(args, " "), stderr)
		}
	})
	return cmd, stderr
}

// dataFile writes b into a file of dir and opens it.
func dataFile(t testing.TB, dir, name string, b []byte) *os.File {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func hashFile(t testing.TB, path string) result {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readAll(f)
}

// fixedBackend reads n bytes, then sends pattern(n, 2) and half-closes,
// and reports what it read: the protocol of peers that do not half-close
// (s_client keeps its side open until the server's close_notify).
func fixedBackend(t testing.TB, n int) (*backend, chan result) {
	got := make(chan result, 1)
	b := startBackend(t, func(c net.Conn) {
		r := readAll(io.LimitReader(c, int64(n)))
		got <- r
		c.Write(pattern(n, 2))
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	})
	return b, got
}

// sClient runs openssl s_client against the proxy at addr with the data
// file as its input, and returns the path of its output.
func sClient(t testing.TB, addr, caFile string, in *os.File, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all := append([]string{"s_client", "-quiet", "-connect", addr, "-servername", "localhost",
		"-CAfile", caFile, "-verify_return_error"}, args...)
	cmd, _ := peerCmd(t, "openssl", all...)
	cmd.Stdin, cmd.Stdout = in, f
	if err := cmd.Run(); err != nil {
		t.Fatalf("openssl s_client: %v", err)
	}
	return out
}

// TestServerModeOpenSSL: openssl s_client through the proxy to a plain
// backend, for each suite, n bytes each way.
func TestServerModeOpenSSL(t *testing.T) {
	caFile, _, _ := pkiFiles(t)
	for i, oc := range opensslCases {
		n := caseBytes(t, i)
		t.Run(oc.name, func(t *testing.T) {
			in := filepath.Join(t.TempDir(), "in")
			if err := os.WriteFile(in, pattern(n, 1), 0o600); err != nil {
				t.Fatal(err)
			}
			_, scfg := testpki.Configs(oc.version, 0)
			b, got := fixedBackend(t, n)
			p, _ := newProxy(t)
			addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: b.addr})
			f, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			out := sClient(t, addr, caFile, f, oc.args...)
			recv(t, "backend result", got).check(t, "backend", pattern(n, 1))
			hashFile(t, out).check(t, "s_client", pattern(n, 2))
			checkEngines(t, p, oc.version, oc.suite, n, n)
		})
	}
}

// acceptRE reads s_server's port from its stdout.
var acceptRE = regexp.MustCompile(`ACCEPT 127\.0\.0\.1:(\d+)`)

// TestClientModeOpenSSL: a plain client through the proxy to openssl
// s_server -HTTP, which sends a file of n bytes, for each suite.
func TestClientModeOpenSSL(t *testing.T) {
	_, certFile, keyFile := pkiFiles(t)
	for i, oc := range opensslCases {
		n := caseBytes(t, i)
		t.Run(oc.name, func(t *testing.T) {
			dir := t.TempDir()
			dataFile(t, dir, "data", pattern(n, 2))
			args := append([]string{"s_server", "-accept", "127.0.0.1:0", "-cert", certFile, "-key", keyFile,
				"-HTTP", "-naccept", "1"}, oc.args...)
			cmd, _ := peerCmd(t, "openssl", args...)
			cmd.Dir = dir
			stdout := &testenv.Buffer{}
			cmd.Stdout = stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-done
			})
			var port string
			for deadline := time.Now().Add(peerTimeout); port == ""; time.Sleep(5 * time.Millisecond) {
				if m := acceptRE.FindStringSubmatch(stdout.String()); m != nil {
					port = m[1]
				} else if time.Now().After(deadline) {
					t.Fatalf("s_server did not say its port:\n%s", stdout)
				}
			}
			ccfg, _ := testpki.Configs(oc.version, 0)
			p, _ := newProxy(t)
			addr := serve(t, p, &proxy.Listener{Mode: proxy.ClientMode, TLSConfig: ccfg, Backend: "127.0.0.1:" + port})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(peerTimeout))
			const req = "GET /data HTTP/1.0\r\n\r\n"
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			readAll(c).check(t, "client", pattern(n, 2))
			c.Close()
			checkEngines(t, p, oc.version, oc.suite, len(req), n)
		})
	}
}

// TestCurl: curl as the TLS client of a server-mode proxy in front of an
// HTTP backend (an upload and a download of n bytes), and as the plain
// client of a client-mode proxy in front of an HTTPS server.
func TestCurl(t *testing.T) {
	n := testBytes(t)
	caFile, _, _ := pkiFiles(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, pattern(n, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	bodies := make(chan result, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bodies <- readAll(r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(pattern(n, 2))
	})
	curl := func(t *testing.T, url string, args ...string) string {
		out := filepath.Join(t.TempDir(), "out")
		all := append([]string{"-sS", "--fail", "-o", out, "--data-binary", "@" + in, url}, args...)
		cmd, _ := peerCmd(t, "curl", all...)
		if err := cmd.Run(); err != nil {
			t.Fatalf("curl: %v", err)
		}
		return out
	}
	t.Run("server", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: handler}
		go srv.Serve(ln)
		defer srv.Close()
		_, scfg := testpki.Configs(0, 0)
		p, _ := newProxy(t)
		addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: ln.Addr().String()})
		_, port, _ := net.SplitHostPort(addr)
		out := curl(t, "https://localhost:"+port+"/", "--cacert", caFile, "--resolve", "localhost:"+port+":127.0.0.1")
		recv(t, "request body", bodies).check(t, "backend", pattern(n, 1))
		hashFile(t, out).check(t, "curl", pattern(n, 2))
		waitIdle(t, p)
	})
	t.Run("client", func(t *testing.T) {
		ccfg, scfg := testpki.Configs(0, 0)
		ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: handler}
		go srv.Serve(ln)
		defer srv.Close()
		p, _ := newProxy(t)
		addr := serve(t, p, &proxy.Listener{Mode: proxy.ClientMode, TLSConfig: ccfg, Backend: ln.Addr().String()})
		out := curl(t, "http://"+addr+"/")
		recv(t, "request body", bodies).check(t, "server", pattern(n, 1))
		hashFile(t, out).check(t, "curl", pattern(n, 2))
		waitIdle(t, p)
	})
}

// zeroCopy says, per direction, whether the proxy must move a
// connection's bytes without reading or writing them itself when both its
// TLS directions are on the kernel engine. TLS to plain is WriteTo's
// splice(2); plain to TLS is ReadFrom's, from the socket into kTLS
// (docs/ARCHITECTURE.md, "Socket to kTLS: splice").
var zeroCopy = map[string]bool{
	"tls->plain": true,
	"plain->tls": true,
}

// TestZeroCopy: with the proxy in this process and both peers in others
// (openssl s_client; the test binary itself as the backend), the bytes this
// process read and wrote (/proc/self/io) while n bytes crossed the proxy
// each way, one way at a time. With the kernel engine, a zero-copy
// direction costs the process far less than the bytes it moved.
//
// The peers are reaped only after the last measure: Linux adds a reaped
// child's counts to its parent's (wait_task_zombie, kernel/exit.c), which
// /proc/self/io reports.
func TestZeroCopy(t *testing.T) {
	n := testBytes(t)
	caFile, _, _ := pkiFiles(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child, _ := peerCmdPath(t, self, "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(n))
	childIn, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	childOut, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := false
	defer func() {
		if !reaped {
			child.Process.Kill()
			child.Wait()
		}
	}()
	lines := bufio.NewScanner(childOut)
	line := func() string {
		if !lines.Scan() {
			t.Fatalf("the backend process ended: %v", lines.Err())
		}
		return lines.Text()
	}
	backendAddr, ok := strings.CutPrefix(line(), "addr ")
	if !ok {
		t.Fatal("the backend process did not say its address")
	}

	_, scfg := testpki.Configs(tls.VersionTLS13, 0)
	p, _ := newProxy(t)
	addr := serve(t, p, &proxy.Listener{TLSConfig: scfg, Backend: backendAddr})
	in := dataFile(t, t.TempDir(), "in", pattern(n, 1))
	outPath := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd, _ := peerCmd(t, "openssl", "s_client", "-quiet", "-connect", addr, "-servername", "localhost",
		"-CAfile", caFile, "-verify_return_error", "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
	// Files, not pipes through this process: exec hands the process the
	// descriptors themselves.
	cmd.Stdin, cmd.Stdout = in, out

	start := procIO(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if !reaped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	received, ok := strings.CutPrefix(line(), "received ")
	if !ok {
		t.Fatal("the backend process did not say what it received")
	}
	mid := procIO(t)
	fmt.Fprintln(childIn, "go")
	for deadline := time.Now().Add(peerTimeout); p.Stats().ToClient != uint64(n); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes of %d reached s_client", p.Stats().ToClient, n)
		}
	}
	end := procIO(t)
	reaped = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("openssl s_client: %v", err)
	}
	childIn.Close()
	if err := child.Wait(); err != nil {
		t.Fatalf("the backend process: %v", err)
	}

	sum := sha256.Sum256(pattern(n, 1))
	if received != hex.EncodeToString(sum[:]) {
		t.Errorf("the backend received other bytes than s_client sent")
	}
	hashFile(t, outPath).check(t, "s_client", pattern(n, 2))
	st := waitIdle(t, p)
	kernelBoth := wantEngine(t, true, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256) == "kernel" &&
		wantEngine(t, false, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256) == "kernel"
	if kernelBoth && (st.Engines["kernel"].Opened != uint64(n) || st.Engines["kernel"].Sealed != uint64(n)) {
		t.Fatalf("the kernel engine did not move the bytes: %+v", st.Engines)
	}
	for _, d := range []struct {
		name  string
		moved int64
	}{
		{"tls->plain", mid - start},
		{"plain->tls", end - mid},
	} {
		t.Logf("%s: %d bytes moved, the process read and wrote %d (kernel engine both ways: %v)", d.name, n, d.moved, kernelBoth)
		// A small part of n: /proc/self/io itself, the child's lines;
		// far below one copy of the bytes.
		if kernelBoth && zeroCopy[d.name] && d.moved > int64(n)/16 {
			t.Errorf("%s: the process read and wrote %d bytes to move %d: not zero-copy", d.name, d.moved, n)
		}
	}
}

// peerCmdPath is peerCmd for a program by its path.
func peerCmdPath(t testing.TB, path string, args ...string) (*exec.Cmd, *testenv.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	cmd := exec.CommandContext(ctx, path, args...)
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	cmd.WaitDelay = time.Second
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			t.Logf("%s: stderr:\n%s", path, stderr)
		}
	})
	return cmd, stderr
}
