package conn_test

import (
	"crypto/tls"
	"io"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/conn"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// TestStatsKeyUpdates checks the KeyUpdate counters (ktls.Counters) with
// ktls on both ends, on the userspace engine: the sender's key wears out
// (SetKeyUpdateAfter) and it sends KeyUpdates, which the receiver follows;
// both ends are in this process, so each KeyUpdate counts once as sent and
// once as received. The test is sequential: no other test moves the
// counters meanwhile.
func TestStatsKeyUpdates(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "")
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	rc, rs := testenv.TCPPair(t)
	c := ktls.Client(rc, ccfg, ktls.WithBackend("userspace"))
	s := ktls.Server(rs, scfg, ktls.WithBackend("userspace"))
	testenv.HandshakeBoth(t, c, s)
	defer c.Close()
	defer s.Close()

	before := ktls.Stats()
	conn.SetKeyUpdateAfter(c, 3)
	// 13 full records: keys wear out after records 3, 6, 9 and 12.
	const n = 13 * 16384
	data := testenv.Pattern(n, 9)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		errc <- err
	}()
	got := make([]byte, n)
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) {
		t.Fatal("data differs")
	}
	after := ktls.Stats()
	if sent := after.KeyUpdatesSent - before.KeyUpdatesSent; sent != 4 {
		t.Errorf("KeyUpdatesSent moved by %d, want 4", sent)
	}
	if recv := after.KeyUpdatesReceived - before.KeyUpdatesReceived; recv != 4 {
		t.Errorf("KeyUpdatesReceived moved by %d, want 4", recv)
	}
	if b := after.TX.Bytes.Userspace - before.TX.Bytes.Userspace; b != n {
		t.Errorf("TX.Bytes.Userspace moved by %d, want %d", b, n)
	}
	if b := after.RX.Bytes.Userspace - before.RX.Bytes.Userspace; b != n {
		t.Errorf("RX.Bytes.Userspace moved by %d, want %d", b, n)
	}
}
