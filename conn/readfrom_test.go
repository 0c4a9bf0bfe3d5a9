package conn

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// userspaceSender returns a ktls client of version on the userspace engine,
// handshaken, whose stock server peer reads everything it sends: got gives
// those bytes once the client has closed its writing side (or the pair).
func userspaceSender(t *testing.T, version uint16) (c *Conn, got <-chan []byte) {
	t.Helper()
	ccfg, scfg := testConfigs(version)
	c, peer := stockPair(t, false, ccfg, scfg, userspaceOptions())
	t.Cleanup(func() { c.Close(); peer.Close() })
	ch := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		ch <- b
	}()
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if b := c.Backend(); b.TX != "userspace" {
		t.Fatalf("TX engine %q, want userspace", b.TX)
	}
	return c, ch
}

// TestReadFromCopyBufferPooled: ReadFrom's copy through Write (a reader that
// is no file or socket, the userspace engine) takes its 64 KiB buffer from a
// pool, so that many small copies, as a file server's responses, do not
// allocate 64 KiB each; and every byte arrives (issue 18).
func TestReadFromCopyBufferPooled(t *testing.T) {
	c, got := userspaceSender(t, tls.VersionTLS13)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	const copies = 200
	// io.CopyBuffer asks a LimitedReader's N, a bytes.Reader's none:
	// the buffer is the pool's whole 64 KiB each time.
	if _, err := c.ReadFrom(bytes.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range copies {
		if _, err := c.ReadFrom(bytes.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	// A 64 KiB buffer per copy would be 64 KiB a copy; crypto/tls's
	// io.Copy allocates 32 KiB. The race detector's sync.Pool drops a
	// share of what is put back.
	perCopy := (after.TotalAlloc - before.TotalAlloc) / copies
	t.Logf("ReadFrom of 1 KiB: %d bytes allocated per copy", perCopy)
	if !raceEnabled && perCopy >= 4<<10 {
		t.Errorf("ReadFrom of 1 KiB allocates %d bytes per copy", perCopy)
	}
	c.CloseWrite()
	b := <-got
	if !bytes.Equal(b, bytes.Repeat(msg, copies+1)) {
		t.Errorf("peer read %d bytes", len(b))
	}
}

// chunkReader returns its data in reads of the sizes in sizes, in turn.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *chunkReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(r.sizes[r.i%len(r.sizes)], len(b), len(r.data))
	r.i++
	copy(b, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// TestReadFromLent: ReadFrom through the userspace engine lends it the copy
// buffer (backend.LentWriter), which seals each record straight from it, a
// TLS 1.3 record with its content type written past the record's plaintext
// and put back. A stock crypto/tls peer must read every byte, whatever the
// sizes of the reads (around the record boundaries, and the whole buffer),
// across TLS 1.3 KeyUpdates every 3 records, which split a batch in the
// middle of the buffer, and from a file.
func TestReadFromLent(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			c, got := userspaceSender(t, version)
			if _, ok := c.out.sealer.(backend.LentWriter); !ok {
				t.Fatal("the userspace sealer is no backend.LentWriter")
			}
			secret := TXSecret(c)
			if version == tls.VersionTLS13 {
				SetKeyUpdateAfter(c, 3)
			}
			data := make([]byte, 1<<20)
			rand.Read(data)
			r := &chunkReader{data: data, sizes: []int{1, backend.MaxPlaintext - 1, backend.MaxPlaintext, backend.MaxPlaintext + 1, 4 * backend.MaxPlaintext, 40000, 7, 3*backend.MaxPlaintext + 1}}
			if n, err := c.ReadFrom(r); err != nil || n != int64(len(data)) {
				t.Fatalf("ReadFrom: %d, %v", n, err)
			}
			f, err := os.Create(filepath.Join(t.TempDir(), "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fileData := make([]byte, 300001)
			rand.Read(fileData)
			if _, err := f.Write(fileData); err != nil {
				t.Fatal(err)
			}
			f.Seek(0, io.SeekStart)
			if n, err := io.Copy(c, f); err != nil || n != int64(len(fileData)) {
				t.Fatalf("io.Copy from a file: %d, %v", n, err)
			}
			c.CloseWrite()
			b := <-got
			if want := append(bytes.Clone(data), fileData...); !bytes.Equal(b, want) {
				t.Errorf("peer read %d bytes, want %d, or other bytes", len(b), len(want))
			}
			if version == tls.VersionTLS13 && bytes.Equal(TXSecret(c), secret) {
				t.Error("no KeyUpdate was sent")
			}
		})
	}
}

// TestReadFromFileAllocs: io.Copy(conn, file) on the userspace engine, and
// conn.ReadFrom(file), which does not go through the file's WriteTo (that
// would copy with a 32 KiB buffer of its own for each call,
// os.genericWriteTo), allocate next to nothing for a file server's many
// small responses (issue 18). The peer reads every byte.
func TestReadFromFileAllocs(t *testing.T) {
	c, got := userspaceSender(t, tls.VersionTLS13)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	send := func() {
		t.Helper()
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if n, err := io.Copy(c, f); err != nil || n != int64(len(msg)) {
			t.Fatalf("io.Copy: %d, %v", n, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if n, err := c.ReadFrom(f); err != nil || n != int64(len(msg)) {
			t.Fatalf("ReadFrom: %d, %v", n, err)
		}
	}
	send()
	const copies = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range copies {
		send()
	}
	runtime.ReadMemStats(&after)
	perCopy := (after.TotalAlloc - before.TotalAlloc) / copies
	t.Logf("io.Copy and ReadFrom of a 1 KiB file: %d bytes allocated per pair", perCopy)
	if !raceEnabled && perCopy >= 4<<10 {
		t.Errorf("io.Copy and ReadFrom of a 1 KiB file allocate %d bytes per pair", perCopy)
	}
	c.CloseWrite()
	if b := <-got; !bytes.Equal(b, bytes.Repeat(msg, 2*(copies+1))) {
		t.Errorf("peer read %d bytes", len(b))
	}
}

// TestLendFor: ReadFrom lends its buffer for readers without WriteTo and
// for files and sockets, whose WriteTo copies through a buffer of its own;
// an in-memory reader's WriteTo writes from where its bytes are.
func TestLendFor(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, _ := testenv.TCPPair(t)
	for _, tc := range []struct {
		name string
		r    io.Reader
		want bool
	}{
		{"bytes.Reader", bytes.NewReader(nil), false},
		{"strings.Reader", strings.NewReader(""), false},
		{"chunkReader", &chunkReader{}, true},
		{"os.File", f, true},
		{"LimitedReader", io.LimitReader(f, 10), true},
		{"TCPConn", a, true},
	} {
		if got := lendFor(tc.r); got != tc.want {
			t.Errorf("%s: lendFor = %v, want %v", tc.name, got, tc.want)
		}
	}
}
