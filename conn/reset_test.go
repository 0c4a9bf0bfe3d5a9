package conn_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// TestWriteAfterPeerReset: when the peer resets the TCP connection, a Write
// blocked on full buffers returns an error promptly, and so does every later
// Write, on every engine (the fault test found the kernel engine's TX
// blocked until the deadline, or reporting success, after a reset).
func TestWriteAfterPeerReset(t *testing.T) {
	for _, eng := range ktlstest.Engines(t) {
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

func writeAfterReset(t *testing.T, eng string, reader bool, delay time.Duration) error {
	rc, rs, err := testenv.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	ktlstest.SmallBuffers(rc, rs)
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, p := ktls.Client(rc, ccfg, ktls.WithBackend(eng)), tls.Server(rs, scfg)
	defer k.Close()
	defer p.Close()
	testenv.HandshakeBoth(t, k, p)
	k.SetDeadline(time.Now().Add(time.Minute))
	werr := make(chan error, 1)
	go func() {
		_, err := k.Write(ktlstest.BigWrite)
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
		if err == nil && !ktlstest.WriteFails(k) {
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
