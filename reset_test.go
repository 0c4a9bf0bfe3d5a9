package ktls_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testenv"
	"github.com/ktls-go/ktls/internal/testpki"
)

// TestWriteAfterPeerReset: when the peer resets the TCP connection, a Write
// blocked on full buffers returns an error promptly, and so does every later
// Write, on every engine (the fault test found the kernel engine's TX
// blocked until the deadline, or reporting success, after a reset).
func TestWriteAfterPeerReset(t *testing.T) {
	for _, eng := range leakEngines(t) {
		for _, reader := range []bool{false, true} {
			name := eng + "/no-reader"
			if reader {
				name = eng + "/reader"
			}
			t.Run(name, func(t *testing.T) {
				for i := range 10 {
					if err := writeAfterReset(t, eng, reader, time.Duration(i)*300*time.Microsecond); err != nil {
						t.Fatalf("round %d: %v", i, err)
					}
				}
			})
		}
	}
}

// writeFails reports whether a Write fails soon on a connection whose peer
// reset it: the Write in flight may have succeeded (its bytes left, or kTLS
// took them, before the reset came), the next ones must not.
func writeFails(k *ktls.Conn) bool {
	time.Sleep(50 * time.Millisecond)
	for range 3 {
		if _, err := k.Write(make([]byte, 20<<10)); err != nil {
			return true
		}
	}
	return false
}

func writeAfterReset(t *testing.T, eng string, reader bool, delay time.Duration) error {
	rc, rs, err := testenv.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	smallBuffers(rc, rs)
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, p := ktls.Client(rc, ccfg, ktls.WithBackend(eng)), tls.Server(rs, scfg)
	defer k.Close()
	defer p.Close()
	testenv.HandshakeBoth(t, k, p)
	k.SetDeadline(time.Now().Add(time.Minute))
	werr := make(chan error, 1)
	go func() {
		_, err := k.Write(bigWrite)
		werr <- err
	}()
	if reader {
		go io.Copy(io.Discard, k)
	}
	time.Sleep(delay)
	rs.(*net.TCPConn).SetLinger(0)
	rs.Close()
	start := time.Now()
	select {
	case err := <-werr:
		if err == nil && !writeFails(k) {
			return fmt.Errorf("%s: Writes go on succeeding after the peer reset the connection (tx %s)", eng, k.Backend().TX)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("%s: the blocked Write waited for its deadline after the reset (%v, tx %s)", eng, time.Since(start), k.Backend().TX)
		}
		return nil
	case <-time.After(testenv.Prompt + 5*time.Second):
		return fmt.Errorf("%s: the blocked Write did not return after the reset (tx %s)", eng, k.Backend().TX)
	}
}
