package conn

import (
	"crypto/rand"
	"crypto/tls"
	"io"
	"testing"

	"github.com/ktls-go/ktls/internal/testenv"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/internal/testpki"
	"github.com/ktls-go/ktls/selector"
)

// The tests here reach inside Conn; the public behaviour is tested by the
// external tests (package conn_test) and in interop/ against real peers.

func testConfigs(version uint16) (client, server *tls.Config) {
	return testpki.Configs(version, 0)
}

func userspaceOptions() Options {
	return Options{Backends: []backend.Backend{userspace.New()}, Policy: selector.Policy{}}
}

// TestKeyUpdateAtLimit lowers the per-key record limit and checks that the
// sender updates its TLS 1.3 key (RFC 8446 §5.5) and that stock crypto/tls,
// on the other end, follows every update.
func TestKeyUpdateAtLimit(t *testing.T) {
	for _, ktlsClient := range []bool{true, false} {
		ccfg, scfg := testConfigs(tls.VersionTLS13)
		rc, rs := testenv.TCPPair(t)
		var k *Conn
		var s *tls.Conn
		if ktlsClient {
			k, s = Client(rc, ccfg, userspaceOptions()), tls.Server(rs, scfg)
		} else {
			k, s = Server(rs, scfg, userspaceOptions()), tls.Client(rc, ccfg)
		}
		errc := make(chan error, 1)
		go func() { errc <- s.Handshake() }()
		if err := k.Handshake(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if b := k.Backend(); b.TX != backend.Userspace {
			t.Fatalf("backend %+v", b)
		}
		k.outMu.Lock()
		k.keyUpdateAfter = 3
		k.outMu.Unlock()
		secret0 := append([]byte(nil), k.tx.secret...)
		const n = 200 << 10 // 13 records: four key updates
		data := make([]byte, n)
		rand.Read(data)
		go func() {
			_, err := k.Write(data)
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
		if string(k.tx.secret) == string(secret0) {
			t.Fatal("the TX traffic secret never changed")
		}
		k.Close()
		s.Close()
	}
}

// reporter is a half that says which engine it ended up as, as the nic
// engine's halves do when the kernel keeps the socket in software.
type reporter struct{ name, why string }

func (r reporter) Engine() (string, string) { return r.name, r.why }

var _ backend.Reporter = reporter{}

func TestReported(t *testing.T) {
	cand := selector.Candidate{Name: backend.NIC, Reason: "auto"}
	for _, tc := range []struct {
		half         any
		name, reason string
	}{
		{struct{}{}, backend.NIC, "auto"},
		{reporter{backend.NIC, "offloaded to eth0"}, backend.NIC, "auto"},
		{reporter{"", ""}, backend.NIC, "auto"},
		{reporter{backend.Kernel, "nic: eth0 kept in software"}, backend.Kernel, "auto; nic: eth0 kept in software"},
		{reporter{backend.Kernel, ""}, backend.Kernel, "auto"},
	} {
		name, reason := reported(tc.half, cand)
		if name != tc.name || reason != tc.reason {
			t.Errorf("reported(%#v) = %q, %q; want %q, %q", tc.half, name, reason, tc.name, tc.reason)
		}
	}
	if _, reason := reported(reporter{backend.Kernel, "why"}, selector.Candidate{Name: backend.NIC}); reason != "why" {
		t.Errorf("empty candidate reason: %q, want %q", reason, "why")
	}
}
