package nicoffload_test

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/nicoffload"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// nicSuite is a suite every mainline offloading device takes: TLS 1.2
// AES-GCM (backend/nicoffload).
var nicSuite = ktlstest.SuiteCase{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}

// nicCheck is the nic engine's answer for nicSuite, both directions, which
// must be a refusal here: no machine the tests run on (the VM's virtio and
// loopback devices, a development host) has a NIC that offloads kTLS. A
// machine that has one says so by skipping.
func nicCheck(t *testing.T) (txWhy, rxWhy string) {
	t.Helper()
	ch := nicoffload.New(nicoffload.Options{}).(backend.Checker)
	var whys [2]string
	for i, tx := range []bool{true, false} {
		err := ch.Check(tx, nicSuite.Version, nicSuite.Suite)
		if err == nil {
			t.Skip("a NIC here offloads kTLS; this test covers hosts without one")
		}
		if !errors.Is(err, backend.ErrNotSupported) {
			t.Fatalf("the nic engine's Check is inconclusive: %v", err)
		}
		whys[i] = testenv.Why(t, err)
	}
	return whys[0], whys[1]
}

// TestNICFallsBack: with KTLS_BACKEND=nic, a TLS 1.2 AES-GCM connection over
// loopback, whose device (lo) offloads nothing, gets plain kernel kTLS on
// both directions, and BackendInfo says why, naming the feature and the
// interfaces (docs/ARCHITECTURE.md: "verified per socket, else it is plain kernel").
func TestNICFallsBack(t *testing.T) {
	ktlstest.RequireKTLS(t, nicSuite.Version, nicSuite.Suite)
	txWhy, rxWhy := nicCheck(t)
	for _, want := range []string{txWhy, rxWhy} {
		if !strings.Contains(want, "tls-hw-") || !strings.Contains(want, "lo") {
			t.Errorf("the nic engine's reason %q names neither the feature nor the device", want)
		}
	}
	t.Run("fallback", ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
		t.Setenv("KTLS_BACKEND", "nic")
		t.Setenv("KTLS_STRICT", "")
		ccfg, scfg := testpki.Configs(nicSuite.Version, nicSuite.Suite)
		k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
		ktlstest.WantBackend(t, k, "kernel", "kernel")
		b := k.Backend()
		for _, d := range []struct {
			dir, why string
			info     ktls.DirectionInfo
		}{{"tx", txWhy, b.TXDetail}, {"rx", rxWhy, b.RXDetail}} {
			if got := ktlstest.Now(d.info); got.Engine != "kernel" || !strings.HasPrefix(got.Reason, "forced nic unavailable: "+d.why) {
				t.Errorf("%s: Backend() chose %s (%q); want kernel, the reason beginning %q", d.dir, got.Engine, got.Reason, "forced nic unavailable: "+d.why)
			}
		}
		for _, feature := range []string{"tls-hw-tx-offload", "tls-hw-rx-offload"} {
			if !strings.Contains(b.String(), feature) {
				t.Errorf("Backend() = %q does not name %s", b, feature)
			}
		}
		testenv.Exchange(t, k, s, 256<<10)
		ktlstest.CloseBoth(t, k, s)
	}))
}

// TestNICStrict: KTLS_BACKEND=nic with KTLS_STRICT=1 fails the handshake
// with *ktls.StrictError where nic cannot serve (everywhere the tests run:
// no offloading NIC, or not Linux), naming the engine's reason.
func TestNICStrict(t *testing.T) {
	txWhy, _ := nicCheck(t)
	t.Run("strict", ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
		t.Setenv("KTLS_BACKEND", "nic")
		t.Setenv("KTLS_STRICT", "1")
		ccfg, scfg := testpki.Configs(nicSuite.Version, nicSuite.Suite)
		_, herr, finish := ktlstest.StrictHandshake(t, ktlsClient, ccfg, scfg)
		finish()
		var se *ktls.StrictError
		if !errors.As(herr, &se) {
			t.Fatalf("handshake error = %v (%T); want a *ktls.StrictError", herr, herr)
		}
		if se.Forced != "nic" || se.Direction.String() != "tx" || se.Reason != txWhy {
			t.Errorf("StrictError = %+v; want tx forced to nic with reason %q", *se, txWhy)
		}
	}))
}
