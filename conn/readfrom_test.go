package conn

import (
	"bytes"
	"crypto/tls"
	"io"
	"runtime"
	"testing"
)

// TestReadFromCopyBufferPooled: ReadFrom's copy through Write (a reader that
// is no file or socket, the userspace engine) takes its 64 KiB buffer from a
// pool, so that many small copies, as a file server's responses, do not
// allocate 64 KiB each; and every byte arrives (issue 18).
func TestReadFromCopyBufferPooled(t *testing.T) {
	ccfg, scfg := testConfigs(tls.VersionTLS13)
	c, peer := stockPair(t, false, ccfg, scfg, userspaceOptions())
	defer c.Close()
	defer peer.Close()
	msg := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	const copies = 200
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if b := c.Backend(); b.TX != "userspace" {
		t.Fatalf("TX engine %q, want userspace", b.TX)
	}
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
