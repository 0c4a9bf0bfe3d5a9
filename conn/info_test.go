package conn

import (
	"crypto/tls"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/selector"
)

// namedEngine is the userspace engine under another name, refusing the
// directions it is told to refuse, as an engine that cannot serve does
// (backend.NotSupportedError), and with halves that report themselves as
// another engine where reportAs is set (backend.Reporter).
type namedEngine struct {
	backend.Backend
	name                string
	refuseTX, refuseRX  bool
	reportAs, reportWhy string
}

const refusedWhy = "refused by the test"

func (e *namedEngine) Name() string { return e.name }

func (e *namedEngine) NewSealer(l backend.Link, p backend.Params) (backend.Sealer, error) {
	if e.refuseTX {
		return nil, backend.NotSupported(e.name, refusedWhy)
	}
	s, err := e.Backend.NewSealer(l, p)
	if err != nil || e.reportAs == "" {
		return s, err
	}
	return reportingSealer{s, reporter{e.reportAs, e.reportWhy}}, nil
}

func (e *namedEngine) NewOpener(l backend.Link, p backend.Params) (backend.Opener, error) {
	if e.refuseRX {
		return nil, backend.NotSupported(e.name, refusedWhy)
	}
	o, err := e.Backend.NewOpener(l, p)
	if err != nil || e.reportAs == "" {
		return o, err
	}
	return reportingOpener{o, reporter{e.reportAs, e.reportWhy}}, nil
}

type reportingSealer struct {
	backend.Sealer
	reporter
}

type reportingOpener struct {
	backend.Opener
	reporter
}

// infoCPU is a CPU on which no candidate's reason carries a note about AES.
var infoCPU = selector.CPU{Arch: "amd64", AESGCM: true, GoAESGCM: true}

// TestHandoffInfo checks, for each way a handoff ends, the structure that
// Backend gives and that Reason is built from it.
func TestHandoffInfo(t *testing.T) {
	kernelRefuses := func(tx, rx bool) *namedEngine {
		return &namedEngine{Backend: userspace.New(), name: backend.Kernel, refuseTX: tx, refuseRX: rx}
	}
	us := userspace.New()
	refused := []Refusal{{Engine: backend.Kernel, Reason: refusedWhy}}
	// taking is the choice of the first candidate that is not the kernel,
	// which refuses: its refusal comes with it where it came first. (The
	// order depends on the suite: receiving ChaCha20-Poly1305, which
	// crypto/tls picks on CPUs without AES, userspace comes first.)
	taking := func(cands []selector.Candidate) EngineChoice {
		for i, c := range cands {
			if c.Name == backend.Kernel {
				continue
			}
			ch := candidateChoice(c)
			if i > 0 {
				ch.Refused = refused
			}
			return ch
		}
		return EngineChoice{}
	}
	for _, tc := range []struct {
		name    string
		engines []backend.Backend
		tickets bool   // a TLS 1.3 client with a session cache: the ticket drain
		spec    string // KTLS_BACKEND's grammar
		strict  bool
		// want, with the candidates of each direction for its reasons.
		want func(tx, rx []selector.Candidate) BackendInfo
		// wantAfter is Backend after the first Read, where it changes.
		wantAfter func(tx, rx []selector.Candidate) BackendInfo
		wantErr   error
	}{
		{
			name:    "first candidate takes both",
			engines: []backend.Backend{kernelRefuses(false, false), us},
			want: func(tx, rx []selector.Candidate) BackendInfo {
				return BackendInfo{TX: tx[0].Name, RX: rx[0].Name,
					TXDetail: DirectionInfo{EngineChoice: candidateChoice(tx[0])}, RXDetail: DirectionInfo{EngineChoice: candidateChoice(rx[0])}}
			},
		},
		{
			name:    "first candidate refuses",
			engines: []backend.Backend{kernelRefuses(true, true), us},
			want: func(tx, rx []selector.Candidate) BackendInfo {
				return BackendInfo{TX: backend.Userspace, RX: backend.Userspace,
					TXDetail: DirectionInfo{EngineChoice: taking(tx)},
					RXDetail: DirectionInfo{EngineChoice: taking(rx)}}
			},
		},
		{
			name:    "no engine takes tx",
			engines: []backend.Backend{kernelRefuses(true, false)},
			want: func(tx, rx []selector.Candidate) BackendInfo {
				return BackendInfo{TX: backend.Stdlib, RX: backend.Stdlib,
					TXDetail:   DirectionInfo{EngineChoice: EngineChoice{Engine: backend.Stdlib, Reason: tx[len(tx)-1].Reason, Refused: refused}},
					RXDetail:   DirectionInfo{EngineChoice: candidateChoice(rx[0])},
					BothStdlib: true}
			},
		},
		{
			name:    "rx forced to stdlib",
			engines: []backend.Backend{us},
			spec:    "tx=userspace,rx=stdlib",
			want: func(tx, rx []selector.Candidate) BackendInfo {
				return BackendInfo{TX: backend.Stdlib, RX: backend.Stdlib,
					TXDetail: DirectionInfo{EngineChoice: candidateChoice(tx[0])}, RXDetail: DirectionInfo{EngineChoice: candidateChoice(rx[0])},
					BothStdlib: true}
			},
		},
		{
			name:    "strict and refused",
			engines: []backend.Backend{kernelRefuses(true, false), us},
			spec:    "kernel",
			strict:  true,
			wantErr: &selector.StrictError{Direction: selector.TX, Forced: backend.Kernel, Reason: "kernel: " + refusedWhy},
		},
		{
			name:    "nic half reports kernel",
			engines: []backend.Backend{&namedEngine{Backend: userspace.New(), name: backend.NIC, reportAs: backend.Kernel, reportWhy: "nic: lo kept in software"}},
			want: func(tx, rx []selector.Candidate) BackendInfo {
				c := EngineChoice{Engine: backend.Kernel, Reason: tx[0].Reason, Reported: "nic: lo kept in software"}
				return BackendInfo{TX: backend.Kernel, RX: backend.Kernel, TXDetail: DirectionInfo{EngineChoice: c}, RXDetail: DirectionInfo{EngineChoice: c}}
			},
		},
		{
			name:    "drained into the same engine",
			engines: []backend.Backend{kernelRefuses(false, false), us},
			tickets: true,
			want: func(tx, rx []selector.Candidate) BackendInfo {
				return BackendInfo{TX: backend.Kernel, RX: rx[0].Name,
					TXDetail: DirectionInfo{EngineChoice: candidateChoice(tx[0])}, RXDetail: DirectionInfo{EngineChoice: candidateChoice(rx[0]), AfterTickets: true}}
			},
			wantAfter: func(tx, rx []selector.Candidate) BackendInfo {
				return BackendInfo{TX: backend.Kernel, RX: rx[0].Name,
					TXDetail: DirectionInfo{EngineChoice: candidateChoice(tx[0])},
					RXDetail: DirectionInfo{EngineChoice: candidateChoice(rx[0]), AfterTickets: true, Drained: candidateChoice(rx[0])}}
			},
		},
		{
			name:    "drained into another engine",
			engines: []backend.Backend{kernelRefuses(false, true), us},
			tickets: true,
			want: func(tx, rx []selector.Candidate) BackendInfo {
				return BackendInfo{TX: backend.Kernel, RX: rx[0].Name,
					TXDetail: DirectionInfo{EngineChoice: candidateChoice(tx[0])}, RXDetail: DirectionInfo{EngineChoice: candidateChoice(rx[0]), AfterTickets: true}}
			},
			wantAfter: func(tx, rx []selector.Candidate) BackendInfo {
				return BackendInfo{TX: backend.Kernel, RX: backend.Userspace,
					TXDetail: DirectionInfo{EngineChoice: candidateChoice(tx[0])},
					RXDetail: DirectionInfo{EngineChoice: candidateChoice(rx[0]), AfterTickets: true, Drained: taking(rx)}}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ccfg, scfg := testConfigs(tls.VersionTLS13)
			if tc.tickets {
				ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			o := Options{Backends: tc.engines, CPU: infoCPU}
			if tc.spec != "" {
				s, err := selector.ParseSpec(tc.spec)
				if err != nil {
					t.Fatal(err)
				}
				o.Policy = selector.Policy{Spec: s, Strict: tc.strict}
			}
			k, peer := stockPair(t, true, ccfg, scfg, o)
			defer peer.Close()
			defer k.Close()
			errc := handshakeThenWrite(peer, "x")
			err := k.Handshake()
			if tc.wantErr != nil {
				var se *selector.StrictError
				if !errors.As(err, &se) || !reflect.DeepEqual(se, tc.wantErr) {
					t.Fatalf("handshake = %v; want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st := k.ConnectionState()
			cands := func(d selector.Direction) []selector.Candidate {
				list, err := o.Policy.Candidates(o.Facts(d, st.Version, st.CipherSuite, ""))
				if err != nil {
					t.Fatal(err)
				}
				return list
			}
			txC, rxC := cands(selector.TX), cands(selector.RX)
			check := func(when string, want BackendInfo) {
				t.Helper()
				got := k.Backend()
				want.Reason = want.String()
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: Backend() =\n\t%+v\nwant\n\t%+v", when, got, want)
				}
			}
			check("after the handshake", tc.want(txC, rxC))
			k.SetReadDeadline(time.Now().Add(advTimeout))
			if _, err := io.ReadFull(k, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if tc.wantAfter != nil {
				check("after the first Read", tc.wantAfter(txC, rxC))
			} else {
				check("after the first Read", tc.want(txC, rxC))
			}
		})
	}
}
