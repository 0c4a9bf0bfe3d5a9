package ktlshttp_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// writeFile writes n pseudo-random bytes to a file in dir and returns its
// path and SHA-256.
func writeFile(t *testing.T, dir string, n int64) (string, [32]byte) {
	t.Helper()
	path := filepath.Join(dir, "big.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	r := io.LimitReader(rand.NewChaCha8([32]byte{1, 2, 3}), n)
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, [32]byte(h.Sum(nil))
}

// A 64 MiB file through http.FileServer, which copies it to the
// ResponseWriter with io.Copy: over HTTP/1.1 that is ktls.Conn.ReadFrom,
// sendfile(2) with the kernel engine; over HTTP/2, DATA frames (x/net's on
// Go 1.26, net/http's own on Go 1.27). Both arrive whole, checked by SHA-256. With -short (as in the VMs, where
// each 64 MiB takes 15 to 20 s of emulated AES-GCM), HTTP/2, which has no
// path of its own for files, gets the first 16 MiB, by a Range request.
func TestDownload(t *testing.T) {
	checkLeaks(t)
	const size = 64 << 20
	dir := t.TempDir()
	_, sum := writeFile(t, dir, size)
	var short [32]byte // the first 16 MiB's SHA-256, with -short
	if testing.Short() {
		f, err := os.Open(filepath.Join(dir, "big.bin"))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.CopyN(h, f, 16<<20)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		short = [32]byte(h.Sum(nil))
	}
	fs := http.FileServer(http.Dir(dir))
	conns := make(chan seen, 4)
	s := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns <- seen{proto: r.Proto, conn: connOf(t, r)}
		fs.ServeHTTP(w, r)
	}), nil)
	for _, p := range protos {
		t.Run(p.alpn, func(t *testing.T) {
			c, _ := ktlsClient(t, p.alpn)
			req, err := http.NewRequest("GET", s.URL+"/big.bin", nil)
			if err != nil {
				t.Fatal(err)
			}
			want, wantSum := int64(size), sum
			if testing.Short() && p.alpn == "h2" {
				req.Header.Set("Range", "bytes=0-16777215")
				want, wantSum = 16<<20, short
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err != nil {
				t.Fatalf("after %d bytes: %v", n, err)
			}
			if got := [32]byte(h.Sum(nil)); n != want || got != wantSum {
				t.Errorf("got %d bytes, SHA-256 %s; want %d bytes, %s", n, hex.EncodeToString(got[:]), want, hex.EncodeToString(wantSum[:]))
			}
			if resp.Proto != p.proto || resp.ContentLength != want {
				t.Errorf("got %s with Content-Length %d, want %s and %d", resp.Proto, resp.ContentLength, p.proto, want)
			}
			wantState(t, "client", resp.TLS, p.alpn)
			r := <-conns
			wantEngines(t, r.conn)
		})
	}
}
