package afalg_test

import (
	"crypto/tls"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// The afalg tests force the AF_ALG engine on both directions, strictly, by
// the environment (KTLS_BACKEND=afalg, KTLS_STRICT=1), as an operator would,
// so that no test can pass on a fallback; they run where AF_ALG serves the
// suite (the VMs up to Linux 7.2, and 7.3+ with af_alg_restrict=0) and fail
// in a VM that should have it.

// TestAFALGInteropStock runs every suite Go negotiates, in both roles,
// against stock crypto/tls with the afalg engine forced: both directions
// on afalg, data both ways at once, a clean close.
func TestAFALGInteropStock(t *testing.T) {
	for _, sc := range ktlstest.InteropSuites {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ktlstest.RequireAFALG(t, sc.Version, sc.Suite)
			ktlstest.ForceAFALG(t)
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			st := k.ConnectionState()
			if st.Version != sc.Version || (sc.Suite != 0 && st.CipherSuite != sc.Suite) {
				t.Fatalf("negotiated %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
			}
			ktlstest.WantBackend(t, k, "afalg", "afalg")
			// Modest sizes: AES runs emulated in the VMs.
			testenv.Exchange(t, k, s, 200<<10)
			testenv.Exchange(t, k, s, 1)
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// TestAFALGStrict: where AF_ALG cannot serve (every OS but Linux, a Linux
// kernel without AF_ALG such as the development host's, Linux 7.3 with its
// default af_alg_restrict), KTLS_BACKEND=afalg with KTLS_STRICT=1 fails the
// handshake with the documented *ktls.StrictError, naming the engine's
// reason; without KTLS_STRICT it falls back to what auto picks and says why.
func TestAFALGStrict(t *testing.T) {
	sc := ktlstest.SuiteCase{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	err := ktlstest.AFALGCheck(sc.Version, sc.Suite)
	if err == nil {
		t.Skipf("AF_ALG serves %s here; TestAFALGInteropStock covers it", sc)
	}
	if !errors.Is(err, backend.ErrNotSupported) {
		t.Fatalf("the afalg engine's Check is inconclusive: %v", err)
	}
	if testenv.InVM() && testenv.ExpectedInVM(testenv.FeatureAFALG) {
		t.Fatalf("AF_ALG must serve %s in the VM: %v", sc, err)
	}
	why := testenv.Why(t, err)
	if runtime.GOOS != "linux" && why != "AF_ALG needs Linux; this is "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("the afalg engine's reason off Linux = %q; want it to name the platform", why)
	}
	t.Run("strict", ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
		ktlstest.ForceAFALG(t)
		ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
		_, herr, finish := ktlstest.StrictHandshake(t, ktlsClient, ccfg, scfg)
		finish()
		var se *ktls.StrictError
		if !errors.As(herr, &se) {
			t.Fatalf("handshake error = %v (%T); want a *ktls.StrictError", herr, herr)
		}
		if se.Forced != "afalg" || se.Direction.String() != "tx" || se.Reason != why {
			t.Errorf("StrictError = %+v; want tx forced to afalg with reason %q", *se, why)
		}
		if msg := herr.Error(); !strings.Contains(msg, "KTLS_STRICT") || !strings.Contains(msg, why) {
			t.Errorf("handshake error %q does not name KTLS_STRICT and the reason", msg)
		}
	}))
	t.Run("fallback", func(t *testing.T) {
		t.Setenv("KTLS_BACKEND", "afalg")
		t.Setenv("KTLS_STRICT", "")
		ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
		k, s := ktlstest.PairWithStock(t, true, ccfg, scfg)
		// The fallback is what auto gives: kernel where kTLS serves.
		ktlstest.WantBackend(t, k, ktlstest.AutoEngine(t, true, sc.Version, sc.Suite), ktlstest.AutoEngine(t, false, sc.Version, sc.Suite))
		b := k.Backend()
		if got := ktlstest.Now(b.TXDetail).Reason; !strings.HasPrefix(got, "forced afalg unavailable: "+why) {
			t.Errorf("tx: Backend() chose %s for %q; want the reason to begin %q", b.TX, got, "forced afalg unavailable: "+why)
		}
		testenv.Exchange(t, k, s, 64<<10)
		ktlstest.CloseBoth(t, k, s)
	})
}
