package interop_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// fasthttpSeen is what the fasthttp handler saw of a request.
type fasthttpSeen struct {
	path  string
	isTLS bool
	state *tls.ConnectionState
	conn  *ktls.Conn
}

// startFasthttp serves body at /body (from memory), the file at /file
// (fasthttp's SendFile), and the SHA-256 of what is posted to /upload, with
// a fasthttp server on a ktls listener; each request's view of its
// connection goes to the channel. The server shuts down at the end of the
// test.
func startFasthttp(t *testing.T, body []byte, file string) (addr string, seen <-chan fasthttpSeen) {
	t.Helper()
	_, scfg := testpki.Configs(0, 0)
	scfg.MinVersion, scfg.MaxVersion = 0, 0
	l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan fasthttpSeen, 16)
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			// ctx.Conn is the listener's conn as it is: fasthttp wraps it
			// only with a per-IP limit, which is off.
			kc, _ := ctx.Conn().(*ktls.Conn)
			ch <- fasthttpSeen{path: string(ctx.Path()), isTLS: ctx.IsTLS(), state: ctx.TLSConnectionState(), conn: kc}
			switch string(ctx.Path()) {
			case "/body":
				ctx.SetBody(body)
			case "/file":
				ctx.SendFile(file)
			case "/upload":
				sum := sha256.Sum256(ctx.PostBody())
				ctx.SetBodyString(hex.EncodeToString(sum[:]))
			default:
				ctx.NotFound()
			}
		},
		MaxRequestBodySize: 4 << 20,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("fasthttp Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("fasthttp Serve: %v", err)
		}
	})
	return l.Addr().String(), ch
}

// wantFasthttpConn checks what the handler saw: a TLS connection whose
// finished handshake has version and suite (suite 0: any), and the engines
// auto picks for it.
func wantFasthttpConn(t *testing.T, seen <-chan fasthttpSeen, path string, version, suite uint16) {
	t.Helper()
	var s fasthttpSeen
	select {
	case s = <-seen:
	case <-time.After(opensslTimeout):
		t.Fatalf("%s: the handler saw no request", path)
	}
	switch {
	case s.path != path:
		t.Errorf("the handler saw %s, want %s", s.path, path)
	case !s.isTLS || s.state == nil:
		t.Errorf("%s: fasthttp says the connection is not TLS (IsTLS %v, state %v)", path, s.isTLS, s.state)
	case !s.state.HandshakeComplete || s.state.Version != version || (suite != 0 && s.state.CipherSuite != suite):
		t.Errorf("%s: TLS state: complete %v, %s %s; want %s %s", path, s.state.HandshakeComplete,
			tls.VersionName(s.state.Version), tls.CipherSuiteName(s.state.CipherSuite),
			tls.VersionName(version), tls.CipherSuiteName(suite))
	case s.conn == nil:
		t.Errorf("%s: the handler's conn is not a *ktls.Conn", path)
	default:
		ktlstest.WantAuto(t, s.conn)
	}
}

// TestFasthttp serves HTTP/1.1 with github.com/valyala/fasthttp over
// ktls.Listen, to stock net/http with crypto/tls for several versions and
// suites and to curl (OpenSSL): a body from memory and a file each way
// down, an upload up, each checked by SHA-256; fasthttp's view of the TLS
// state (RequestCtx.IsTLS, TLSConnectionState), and the engines the
// server's *ktls.Conn got (the kernel where it serves the suite, which it
// must in the VMs).
func TestFasthttp(t *testing.T) {
	size := 3<<20 + 123
	if testing.Short() {
		size = 300<<10 + 123
	}
	body := testenv.Pattern(size, 11)
	sum := sha256.Sum256(body)
	file := filepath.Join(t.TempDir(), "file.bin")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	upload := testenv.Pattern(size/2, 12)
	uploadSum := sha256.Sum256(upload)
	addr, seen := startFasthttp(t, body, file)

	for _, sc := range []ktlstest.SuiteCase{
		{Version: tls.VersionTLS13, Suite: 0},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	} {
		t.Run(sc.String(), func(t *testing.T) {
			ccfg, _ := testpki.Configs(sc.Version, sc.Suite)
			tr := &http.Transport{TLSClientConfig: ccfg}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: opensslTimeout}
			for _, path := range []string{"/body", "/file"} {
				resp, err := c.Get("https://" + addr + path)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s: after %d bytes: %v", path, len(got), err)
				}
				if h := sha256.Sum256(got); resp.StatusCode != http.StatusOK || h != sum {
					t.Errorf("%s: %s, %d bytes, SHA-256 %s; want 200 OK and the %d bytes", path, resp.Status, len(got), hex.EncodeToString(h[:]), len(body))
				}
				if resp.Proto != "HTTP/1.1" || resp.TLS == nil || resp.TLS.Version != sc.Version {
					t.Errorf("%s: %s over %v", path, resp.Proto, resp.TLS)
				}
				wantFasthttpConn(t, seen, path, sc.Version, sc.Suite)
			}
			resp, err := c.Post("https://"+addr+"/upload", "application/octet-stream", bytes.NewReader(upload))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(got) != hex.EncodeToString(uploadSum[:]) {
				t.Errorf("/upload: the server hashed %q (%v), want %x", got, err, uploadSum)
			}
			wantFasthttpConn(t, seen, "/upload", sc.Version, sc.Suite)
		})
	}

	t.Run("curl", func(t *testing.T) {
		bin := lookBin(t, "curl", "curl")
		ctx, cancel := context.WithTimeout(context.Background(), opensslTimeout)
		defer cancel()
		// The certificate names localhost; --resolve keeps curl on the
		// loopback address the listener has.
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, bin, "-sS", "--fail", "--http1.1", "--cacert", caFile(t),
			"--resolve", "localhost:"+port+":127.0.0.1", "https://localhost:"+port+"/file")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl: %v: %s", err, stderr.String())
		}
		if h := sha256.Sum256(got); h != sum {
			t.Errorf("curl got %d bytes, SHA-256 %s; want the %d bytes", len(got), hex.EncodeToString(h[:]), len(body))
		}
		wantFasthttpConn(t, seen, "/file", tls.VersionTLS13, 0)
	})
}
