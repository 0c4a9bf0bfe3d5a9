package testenv

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/ktls-go/ktls/backend"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		release             string
		major, minor, patch int
	}{
		{"6.1.0-50-cloud-amd64", 6, 1, 0},
		{"6.12.107+deb13-cloud-amd64", 6, 12, 107},
		{"7.3.4+deb13-cloud-amd64", 7, 3, 4},
		{"6.14", 6, 14, 0},
		{"5.15.0", 5, 15, 0},
		{"4.19.0-rc3", 4, 19, 0},
		{"weird", 0, 0, 0},
		{"", 0, 0, 0},
	} {
		v := ParseVersion(tc.release)
		if v.Major != tc.major || v.Minor != tc.minor || v.Patch != tc.patch || v.Release != tc.release {
			t.Errorf("ParseVersion(%q) = %+v, want %d.%d.%d", tc.release, v, tc.major, tc.minor, tc.patch)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	v := ParseVersion("6.12.107+deb13-cloud-amd64")
	for _, tc := range []struct {
		major, minor int
		want         bool
	}{
		{6, 1, true}, {6, 12, true}, {6, 13, false}, {6, 14, false}, {5, 19, true}, {7, 0, false},
	} {
		if got := v.AtLeast(tc.major, tc.minor); got != tc.want {
			t.Errorf("%v.AtLeast(%d, %d) = %v, want %v", v, tc.major, tc.minor, got, tc.want)
		}
	}
}

// outcome records what requireKernelFeature did to a test. It implements
// testing.TB through the embedded interface; only the methods
// requireKernelFeature calls are overridden.
type outcome struct {
	testing.TB
	fatal, skip bool
	msg         string
}

func (o *outcome) Helper() {}
func (o *outcome) Fatalf(format string, args ...any) {
	o.fatal, o.msg = true, fmt.Sprintf(format, args...)
}
func (o *outcome) Skipf(format string, args ...any) {
	o.skip, o.msg = true, fmt.Sprintf(format, args...)
}

func TestRequireKernelFeature(t *testing.T) {
	notSupported := fmt.Errorf("probe: no tls ULP: %w", backend.ErrNotSupported)
	broken := errors.New("probe: loopback dial failed")
	v61 := kernelFacts{version: ParseVersion("6.1.0-50-cloud-amd64")}
	v73 := kernelFacts{version: ParseVersion("7.3.4+deb13-cloud-amd64")}
	v73restricted := kernelFacts{version: v73.version, afalgRestrict: 1}
	const pass, fail, skip = "pass", "fail", "skip"
	for _, tc := range []struct {
		name    string
		feature string
		err     error
		inVM    bool
		k       kernelFacts
		want    string
	}{
		{"available on host", FeatureKTLS, nil, false, v61, pass},
		{"available in VM", FeatureKTLS, nil, true, v61, pass},
		{"missing on host", FeatureKTLS, notSupported, false, v61, skip},
		{"missing in VM", FeatureKTLS, notSupported, true, v61, fail},
		{"missing in VM, stdlib sentinel", FeatureAFALG, fmt.Errorf("x: %w", errors.ErrUnsupported), true, v73, fail},
		{"AF_ALG refused by af_alg_restrict in VM", FeatureAFALG, notSupported, true, v73restricted, skip},
		{"AF_ALG missing, unrestricted, in VM", FeatureAFALG, notSupported, true, v61, fail},
		{"inconclusive on host", FeatureKTLS, broken, false, v61, fail},
		{"inconclusive in VM", FeatureKTLS, broken, true, v61, fail},
		{"rekey missing on 6.1 VM", FeatureKTLSRekey, notSupported, true, v61, skip},
		{"rekey missing on 7.3 VM", FeatureKTLSRekey, notSupported, true, v73, fail},
		{"device offload missing in VM", FeatureKTLSDevice, notSupported, true, v73, skip},
		{"handshake family missing on 6.1 VM", FeatureNetHandshake, notSupported, true, v61, skip},
		{"handshake family missing on 7.3 VM", FeatureNetHandshake, notSupported, true, v73, fail},
		{"unknown feature missing in VM", "something-new", notSupported, true, v61, fail},
		{"unknown feature missing on host", "something-new", notSupported, false, v61, skip},
		{"EOF is not a verdict", FeatureKTLS, io.EOF, false, v61, fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &outcome{TB: t}
			requireKernelFeature(o, tc.feature, tc.err, tc.inVM, tc.k)
			got := pass
			switch {
			case o.fatal && o.skip:
				t.Fatalf("both Fatalf and Skipf called")
			case o.fatal:
				got = fail
			case o.skip:
				got = skip
			}
			if got != tc.want {
				t.Errorf("outcome %s (%q), want %s", got, o.msg, tc.want)
			}
		})
	}
}

func TestInVM(t *testing.T) {
	t.Setenv(EnvVar, "1")
	if !InVM() {
		t.Errorf("InVM() = false with %s=1", EnvVar)
	}
	t.Setenv(EnvVar, "")
	if InVM() {
		t.Errorf("InVM() = true with %s unset", EnvVar)
	}
}
