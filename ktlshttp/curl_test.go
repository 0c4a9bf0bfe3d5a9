package ktlshttp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// curl, with its own TLS stack (OpenSSL) and HTTP/2 (nghttp2), against the
// Server, on both protocols. It skips where curl, or its HTTP/2, is missing,
// except in the VM, whose harness packs a curl with HTTP/2 (internal/testing/vmtest).
func TestCurl(t *testing.T) {
	checkLeaks(t)
	bin, err := exec.LookPath("curl")
	if err != nil {
		if testenv.InVM() {
			t.Fatalf("curl is missing in the VM: %v", err)
		}
		t.Skipf("curl: %v", err)
	}
	version, err := exec.Command(bin, "-V").Output()
	if err != nil {
		t.Fatalf("curl -V: %v", err)
	}
	hasHTTP2 := strings.Contains(string(version), "HTTP2")

	dir := t.TempDir()
	_, sum := writeFile(t, dir, 3<<20+123)
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testpki.Get().CADER}), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := http.FileServer(http.Dir(dir))
	conns := make(chan seen, 4)
	s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns <- seen{proto: r.Proto, tls: r.TLS, conn: connOf(t, r)}
		fs.ServeHTTP(w, r)
	}), nil)
	port := s.URL[strings.LastIndex(s.URL, ":")+1:]

	for _, p := range []struct{ flag, alpn, version string }{
		{"--http1.1", "http/1.1", "1.1"},
		{"--http2", "h2", "2"},
	} {
		t.Run(p.alpn, func(t *testing.T) {
			if p.alpn == "h2" && !hasHTTP2 {
				if testenv.InVM() {
					t.Fatalf("the VM's curl lacks HTTP/2:\n%s", version)
				}
				t.Skipf("this curl lacks HTTP/2:\n%s", version)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out := filepath.Join(t.TempDir(), "out")
			// The certificate names localhost; --resolve keeps curl on the
			// loopback address the listener has.
			cmd := exec.CommandContext(ctx, bin, "-sS", "--fail", p.flag, "--cacert", ca,
				"--resolve", "localhost:"+port+":127.0.0.1", "-o", out, "-w", "%{http_version}",
				"https://localhost:"+port+"/big.bin")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			got, err := cmd.Output()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, stderr.String())
			}
			if string(got) != p.version {
				t.Errorf("curl spoke HTTP/%s, want HTTP/%s", got, p.version)
			}
			body, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(body) != sum {
				t.Errorf("curl got %d bytes that do not match the file", len(body))
			}
			r := <-conns
			wantState(t, "server", r.tls, p.alpn)
			wantEngines(t, r.conn)
		})
	}
}
