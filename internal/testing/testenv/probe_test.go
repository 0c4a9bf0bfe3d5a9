package testenv

import (
	"crypto/tls"
	"fmt"
	"runtime"
	"testing"
)

// TestKernelFeatures runs the harness's own probes through
// RequireKernelFeature: on a host without the tls module or AF_ALG they skip,
// inside the VM they must pass where ExpectedInVM says so. The guest
// self-check runs the same probes before any test; this test shows that a
// test binary under the harness sees what the self-check saw.
func TestKernelFeatures(t *testing.T) {
	t.Logf("kernel %s, in VM: %v, af_alg_restrict: %d", KernelVersion(), InVM(), AFALGRestriction())
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		feature := FeatureKTLS
		if version == tls.VersionTLS13 {
			feature = FeatureKTLS13
		}
		suites := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}
		if version == tls.VersionTLS13 {
			suites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}
		}
		for _, suite := range suites {
			f := feature
			if suite == tls.TLS_CHACHA20_POLY1305_SHA256 || suite == tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 {
				f = FeatureKTLSChaCha20Poly1305
			}
			t.Run(fmt.Sprintf("ktls/%s/%s", tls.VersionName(version), tls.CipherSuiteName(suite)), func(t *testing.T) {
				RequireKernelFeature(t, f, ProbeKTLSWith(version, suite))
			})
		}
	}
	t.Run("afalg", func(t *testing.T) {
		RequireKernelFeature(t, FeatureAFALG, ProbeAFALG())
	})
}

// TestKernelVersion checks that the running kernel's version is readable
// where there is one.
func TestKernelVersion(t *testing.T) {
	v := KernelVersion()
	if runtime.GOOS != "linux" {
		if v != (Version{}) {
			t.Errorf("KernelVersion() = %+v on %s, want the zero Version", v, runtime.GOOS)
		}
		return
	}
	if v.Major < 3 || v.Release == "" {
		t.Errorf("KernelVersion() = %+v, want a Linux release", v)
	}
}

func TestProbeKTLSWithRejectsNonAEAD(t *testing.T) {
	err := ProbeKTLSWith(tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA)
	if err == nil {
		t.Fatal("a CBC suite was accepted")
	}
	t.Log(err)
}
