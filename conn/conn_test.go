package conn

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"reflect"
	"testing"

	"github.com/ktls-go/ktls/internal/testing/testenv"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/internal/testing/testpki"
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

// stockPair returns a ktls Conn in one role and a stock crypto/tls Conn in
// the other, over loopback TCP, before their handshakes.
func stockPair(t *testing.T, ktlsClient bool, ccfg, scfg *tls.Config, o Options) (*Conn, *tls.Conn) {
	rc, rs := testenv.TCPPair(t)
	if ktlsClient {
		return Client(rc, ccfg, o), tls.Server(rs, scfg)
	}
	return Server(rs, scfg, o), tls.Client(rc, ccfg)
}

// handshakeThenWrite runs peer's handshake and then writes msg, in the
// background; the channel gets the first error, or nil.
func handshakeThenWrite(peer *tls.Conn, msg string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		if err := peer.Handshake(); err != nil {
			errc <- err
			return
		}
		_, err := peer.Write([]byte(msg))
		errc <- err
	}()
	return errc
}

// TestKeyUpdateAtLimit lowers the per-key record limit and checks that the
// sender updates its TLS 1.3 key (RFC 8446 §5.5) and that stock crypto/tls,
// on the other end, follows every update.
func TestKeyUpdateAtLimit(t *testing.T) {
	for _, ktlsClient := range []bool{true, false} {
		ccfg, scfg := testConfigs(tls.VersionTLS13)
		k, s := stockPair(t, ktlsClient, ccfg, scfg, userspaceOptions())
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
		k.out.mu.Lock()
		k.out.keyUpdateAfter = 3
		k.out.mu.Unlock()
		secret0 := append([]byte(nil), k.out.keys.secret...)
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
		if string(k.out.keys.secret) == string(secret0) {
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

func TestInstalledChoice(t *testing.T) {
	cand := selector.Candidate{Name: backend.NIC, Reason: "auto"}
	refused := []Refusal{{Engine: backend.Kernel, Reason: "tls module not loaded"}}
	for _, tc := range []struct {
		half any
		want EngineChoice
	}{
		{struct{}{}, EngineChoice{Engine: backend.NIC, Reason: "auto", Refused: refused}},
		{reporter{backend.NIC, "offloaded to eth0"}, EngineChoice{Engine: backend.NIC, Reason: "auto", Refused: refused}},
		{reporter{"", ""}, EngineChoice{Engine: backend.NIC, Reason: "auto", Refused: refused}},
		{reporter{backend.Kernel, "nic: eth0 kept in software"}, EngineChoice{Engine: backend.Kernel, Reason: "auto", Reported: "nic: eth0 kept in software", Refused: refused}},
		{reporter{backend.Kernel, ""}, EngineChoice{Engine: backend.Kernel, Reason: "auto", Refused: refused}},
	} {
		if got := installedChoice(tc.half, cand, refused); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("installedChoice(%#v) = %+v; want %+v", tc.half, got, tc.want)
		}
	}
}

// TestRefusal: an engine's refusal is its NotSupportedError's reason, with
// the name of the engine that refused in front where it is not the
// candidate's own; any other error is given whole.
func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want Refusal
	}{
		{backend.Kernel, backend.NotSupported(backend.Kernel, "no kTLS cipher for %s", "X"), Refusal{Engine: backend.Kernel, Reason: "no kTLS cipher for X"}},
		{backend.NIC, backend.NotSupported(backend.Kernel, "tls module not loaded"), Refusal{Engine: backend.NIC, Reason: "kernel: tls module not loaded"}},
		{backend.NIC, fmt.Errorf("nic: lo: %w", backend.NotSupported(backend.NIC, "no tls-hw-tx-offload")), Refusal{Engine: backend.NIC, Reason: "no tls-hw-tx-offload"}},
		// Not a NotSupportedError (no engine of ktls's returns one): the
		// whole message, nothing guessed away.
		{backend.AFALG, fmt.Errorf("afalg: no AF_ALG: %w", backend.ErrNotSupported), Refusal{Engine: backend.AFALG, Reason: "afalg: no AF_ALG: backend: not supported"}},
	} {
		if got := refusal(tc.name, tc.err); got != tc.want {
			t.Errorf("refusal(%s, %v) = %+v; want %+v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestBackendInfoString pins the one-line Reason of every shape a handoff
// gives, built from the structure.
func TestBackendInfoString(t *testing.T) {
	auto := func(e string) EngineChoice { return EngineChoice{Engine: e, Reason: "auto"} }
	for _, tc := range []struct {
		name string
		info BackendInfo
		want string
	}{
		{
			"same engine both ways",
			BackendInfo{TXDetail: DirectionInfo{EngineChoice: auto("kernel")}, RXDetail: DirectionInfo{EngineChoice: auto("kernel")}},
			"tx: kernel (auto); rx: kernel (auto)",
		},
		{
			"passed-over candidates",
			BackendInfo{
				TXDetail: DirectionInfo{EngineChoice: EngineChoice{Engine: "userspace", Reason: "forced kernel did not install",
					Refused: []Refusal{{Engine: "nic", Reason: "no offload"}, {Engine: "kernel", Reason: "no ULP"}}}},
				RXDetail: DirectionInfo{EngineChoice: EngineChoice{Engine: "userspace", Refused: []Refusal{{Engine: "kernel", Reason: "buffered"}}}},
			},
			"tx: userspace (forced kernel did not install; passed over nic: no offload, kernel: no ULP); rx: userspace (passed over kernel: buffered)",
		},
		{
			"stdlib both ways",
			BackendInfo{TXDetail: DirectionInfo{EngineChoice: EngineChoice{Engine: "stdlib", Reason: "forced"}}, RXDetail: DirectionInfo{EngineChoice: EngineChoice{Engine: "stdlib", Reason: "forced"}}},
			"tx: stdlib (forced); rx: stdlib (forced)",
		},
		{
			"one stdlib keeps both",
			BackendInfo{TXDetail: DirectionInfo{EngineChoice: auto("kernel")}, RXDetail: DirectionInfo{EngineChoice: EngineChoice{Engine: "stdlib", Reason: "keys or sequence numbers not known: x"}}, BothStdlib: true},
			"tx: kernel (auto); rx: stdlib (keys or sequence numbers not known: x); both stay on stdlib: crypto/tls cannot share a connection with another engine",
		},
		{
			"no engine took tx",
			BackendInfo{
				TXDetail:   DirectionInfo{EngineChoice: EngineChoice{Engine: "stdlib", Reason: "auto; kernel did not install", Refused: []Refusal{{Engine: "kernel", Reason: "a"}, {Engine: "userspace", Reason: "b"}}}},
				RXDetail:   DirectionInfo{EngineChoice: auto("kernel")},
				BothStdlib: true,
			},
			"tx: stdlib (no engine took tx: kernel: a; userspace: b); rx: kernel (auto); both stay on stdlib: crypto/tls cannot share a connection with another engine",
		},
		{
			"no reason",
			BackendInfo{TXDetail: DirectionInfo{EngineChoice: EngineChoice{Engine: "userspace"}}, RXDetail: DirectionInfo{EngineChoice: EngineChoice{Engine: "userspace"}}},
			"tx: userspace; rx: userspace",
		},
		{
			"during the drain",
			BackendInfo{TXDetail: DirectionInfo{EngineChoice: auto("kernel")}, RXDetail: DirectionInfo{EngineChoice: auto("kernel"), AfterTickets: true}},
			"tx: kernel (auto); rx: kernel (auto), after crypto/tls has read the session tickets",
		},
		{
			"drained into the same engine",
			BackendInfo{TXDetail: DirectionInfo{EngineChoice: auto("kernel")}, RXDetail: DirectionInfo{EngineChoice: auto("kernel"), AfterTickets: true,
				Drained: EngineChoice{Engine: "kernel", Reason: "auto"}}},
			"tx: kernel (auto); rx: kernel (auto), after crypto/tls has read the session tickets",
		},
		{
			"drained into another engine",
			BackendInfo{TXDetail: DirectionInfo{EngineChoice: auto("kernel")}, RXDetail: DirectionInfo{EngineChoice: auto("kernel"), AfterTickets: true,
				Drained: EngineChoice{Engine: "userspace", Reason: "auto; kernel did not install", Refused: []Refusal{{Engine: "kernel", Reason: "2 bytes buffered"}}}}},
			"tx: kernel (auto); rx: kernel (auto), after crypto/tls has read the session tickets; rx: userspace (auto; kernel did not install; passed over kernel: 2 bytes buffered)",
		},
		{
			"nic reported as kernel",
			BackendInfo{
				TXDetail: DirectionInfo{EngineChoice: installedChoice(reporter{"kernel", "nic: lo has tls-hw-tx-offload off"}, selector.Candidate{Name: "nic", Reason: "forced"}, nil)},
				RXDetail: DirectionInfo{EngineChoice: installedChoice(reporter{"kernel", ""}, selector.Candidate{Name: "nic", Reason: "forced"}, nil)},
			},
			"tx: kernel (forced; nic: lo has tls-hw-tx-offload off); rx: kernel (forced)",
		},
	} {
		if got := tc.info.String(); got != tc.want {
			t.Errorf("%s: String() =\n\t%s\nwant\n\t%s", tc.name, got, tc.want)
		}
	}
}

// TestRecordsLeft: the TLS 1.3 key-wear check shared by Write and sendfile
// (RFC 8446 §5.5). sendfile may seal past the limit within its margin
// (sendFileChunk); the key is then due at once, never given a count that
// wrapped around.
func TestRecordsLeft(t *testing.T) {
	const after = 100
	for _, tc := range []struct {
		version uint16
		records uint64
		want    uint64
	}{
		{tls.VersionTLS12, after * 2, math.MaxUint64},
		{tls.VersionTLS13, 0, after},
		{tls.VersionTLS13, after - 1, 1},
		{tls.VersionTLS13, after, 0},
		{tls.VersionTLS13, after + 5, 0},
	} {
		h := outHalf{records: tc.records, keyUpdateAfter: after}
		h.keys = &dirKeys{}
		h.keys.suite.Version = tc.version
		if got := h.recordsLeftLocked(); got != tc.want {
			t.Errorf("%s, %d records: recordsLeftLocked = %d, want %d", tls.VersionName(tc.version), tc.records, got, tc.want)
		}
	}
}
