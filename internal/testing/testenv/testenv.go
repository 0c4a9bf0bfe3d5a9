// Package testenv tells the project's tests where they run and turns kernel
// feature probes into the right test outcome.
//
// The tests of this module run in two places: natively on a development host
// (whose kernel may lack the tls module and AF_ALG) and inside the VMs that
// the harness in internal/testing/vmtest boots with real Debian kernels, where those
// features are known to exist because the harness loads them and checks them
// before any test runs. A test that needs a kernel feature therefore must not
// decide on its own to skip: it hands its probe result to
// [RequireKernelFeature], which skips on a host that lacks the feature but
// fails the test inside the VM. A kernel test can never pass in CI by skipping
// (docs/ARCHITECTURE.md, house rule 12; the model is cilium/ebpf's testutils.SkipIfNotSupported,
// which fails instead of skipping on a kernel new enough to have the feature).
//
// Typical use:
//
//	func TestKernelSeal(t *testing.T) {
//		testenv.RequireKernelFeature(t, testenv.FeatureKTLS, probe.KTLS())
//		...
//	}
//
// Which features a VM's kernel must have is [ExpectedInVM]'s answer:
// everything the project uses, except KeyUpdate before Linux 6.14, NIC
// offload, and AF_ALG gcm(aes) where Linux 7.3's af_alg_restrict refuses it.
// [ProbeKTLS], [ProbeKTLSWith] and [ProbeAFALG] are the probes of the
// harness's guest self-check, independent of the project's own, so that a
// bug in the project's probes cannot hide a missing module.
package testenv

import (
	"crypto/tls"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/backend"
)

// EnvVar is the environment variable the VM harness sets to "1" for every
// test binary it runs in a guest.
const EnvVar = "KTLS_VMTEST"

// InVM reports whether the test runs inside a VM of the harness, where every
// kernel feature the project needs has been checked to be present.
func InVM() bool { return os.Getenv(EnvVar) == "1" }

// Names of kernel features for [RequireKernelFeature]. A name not listed here
// is accepted too and is treated as present on every kernel of the VM matrix.
const (
	// FeatureKTLS: TCP_ULP "tls" with TLS_TX and TLS_RX for TLS 1.2
	// AES-128-GCM. TX since Linux 4.13, RX since 4.17
	// (docs/ARCHITECTURE.md, kTLS features by version).
	FeatureKTLS = "ktls"
	// FeatureKTLS13: kTLS for TLS 1.3, and AES-256-GCM; Linux 5.1.
	FeatureKTLS13 = "ktls-tls13"
	// FeatureKTLSChaCha20Poly1305: kTLS with ChaCha20-Poly1305; Linux 5.11.
	FeatureKTLSChaCha20Poly1305 = "ktls-chacha20poly1305"
	// FeatureKTLSRxExpectNoPad: TLS_RX_EXPECT_NO_PAD; Linux 6.0 (commit
	// 88527790c079).
	FeatureKTLSRxExpectNoPad = "ktls-rx-expect-no-pad"
	// FeatureKTLSRekey: a second TLS_TX/TLS_RX setsockopt for TLS 1.3
	// KeyUpdate, EKEYEXPIRED on read; Linux 6.14 (commit 47069594e67e).
	FeatureKTLSRekey = "ktls-rekey"
	// FeatureKTLSDevice: kTLS device offload on a NIC. No virtual device
	// emulates it (docs/ARCHITECTURE.md, Kernel facts), so it is
	// never required in the VM.
	FeatureKTLSDevice = "ktls-device"
	// FeatureAFALG: an AF_ALG "aead" socket for gcm(aes) (algif_aead, Linux
	// 4.1). Debian's kernels build it as a module, which the harness loads;
	// from Linux 7.3 the default /proc/sys/crypto/af_alg_restrict=1 refuses
	// gcm(aes), and then it is not expected (see [AFALGRestriction]).
	FeatureAFALG = "afalg-aead"
	// FeatureNetHandshake: the "handshake" generic netlink family, through
	// which the kernel's NFS client and server ask a user-space agent for
	// TLS handshakes (Documentation/networking/tls-handshake.rst); Linux
	// 6.4 (CONFIG_NET_HANDSHAKE, commit 3b3009ea8abb), so not on 6.1.
	FeatureNetHandshake = "net-handshake"
)

// RequireKernelFeature turns the result of a kernel feature probe into the
// test's fate. err is what the probe returned:
//
//   - nil: the feature is there; the test goes on.
//   - an error that wraps [backend.ErrNotSupported] (or
//     [errors.ErrUnsupported]): the feature is conclusively missing. Inside
//     the VM, where the kernel is known to have it ([ExpectedInVM]), the test
//     fails; on a host, or in the VM on a kernel without the feature, the
//     test is skipped.
//   - any other error: the probe was inconclusive or broke; the test fails
//     everywhere, since a probe that cannot decide hides bugs.
//
// It calls t.Fatalf or t.Skipf, which end the test, and returns otherwise.
func RequireKernelFeature(t testing.TB, feature string, err error) {
	t.Helper()
	requireKernelFeature(t, feature, err, InVM(), currentKernel())
}

func requireKernelFeature(t testing.TB, feature string, err error, inVM bool, k kernelFacts) {
	t.Helper()
	if err == nil {
		return
	}
	if !errors.Is(err, backend.ErrNotSupported) && !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("testenv: probing %s: %v", feature, err)
		return
	}
	if inVM && k.expects(feature) {
		t.Fatalf("testenv: %s is missing on kernel %s inside the VM, where the harness loads and checks it: %v", feature, k.version, err)
		return
	}
	t.Skipf("testenv: %s is not available on kernel %s: %v", feature, k.version, err)
}

// ExpectedInVM reports whether a VM of the harness running this kernel has
// the feature. The guest's self-check asserts what this promises.
func ExpectedInVM(feature string) bool { return currentKernel().expects(feature) }

// kernelFacts are what decides which features a VM's kernel must have.
type kernelFacts struct {
	version Version
	// afalgRestrict is /proc/sys/crypto/af_alg_restrict, 0 where absent.
	afalgRestrict int
}

func currentKernel() kernelFacts {
	return kernelFacts{version: KernelVersion(), afalgRestrict: AFALGRestriction()}
}

// expects reports whether the kernel must have the feature. Features that
// every kernel of the VM matrix (6.1 and newer) has need no case here: an
// unknown name is expected.
func (k kernelFacts) expects(feature string) bool {
	switch feature {
	case FeatureKTLSRekey:
		return k.version.AtLeast(6, 14)
	case FeatureKTLSDevice:
		return false
	case FeatureNetHandshake:
		return k.version.AtLeast(6, 4)
	case FeatureAFALG:
		// Linux 7.3 refuses gcm(aes) to AF_ALG by default; the kernel's
		// own switch says so better than a version number would.
		return k.afalgRestrict == 0
	}
	return true
}

// Version is a Linux kernel release as uname(2) reports it.
type Version struct {
	Major, Minor, Patch int
	// Release is the whole release string, e.g. "6.1.0-50-cloud-amd64".
	Release string
}

// String returns the release string.
func (v Version) String() string {
	if v.Release == "" {
		return "unknown"
	}
	return v.Release
}

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	if v.Major != major {
		return v.Major > major
	}
	return v.Minor >= minor
}

// KernelVersion returns the version of the running kernel; the zero Version
// where there is no Linux kernel or uname fails.
func KernelVersion() Version {
	release := kernelRelease()
	if release == "" {
		return Version{}
	}
	return ParseVersion(release)
}

// ParseVersion reads "major.minor[.patch]" from the front of a kernel release
// string such as "6.1.0-50-cloud-amd64" or "7.3.4+deb13-cloud-amd64"; fields
// it cannot read stay zero.
func ParseVersion(release string) Version {
	v := Version{Release: release}
	end := strings.IndexFunc(release, func(r rune) bool { return r != '.' && (r < '0' || r > '9') })
	if end < 0 {
		end = len(release)
	}
	fields := strings.Split(release[:end], ".")
	nums := []*int{&v.Major, &v.Minor, &v.Patch}
	for i, f := range fields {
		if i == len(nums) {
			break
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			break
		}
		*nums[i] = n
	}
	return v
}

// KTLSFeature names the kernel feature that kTLS needs for a TLS version and
// crypto/tls AEAD cipher suite: ChaCha20-Poly1305 came in Linux 5.11, TLS 1.3
// and AES-256-GCM in 5.1, TLS 1.2 AES-128-GCM in 4.13.
func KTLSFeature(version, suite uint16) string {
	switch suite {
	case tls.TLS_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256:
		return FeatureKTLSChaCha20Poly1305
	case tls.TLS_AES_256_GCM_SHA384,
		tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:
		return FeatureKTLS13
	}
	if version == tls.VersionTLS13 {
		return FeatureKTLS13
	}
	return FeatureKTLS
}

// Why is the reason of an engine's refusal, as a connection's BackendInfo
// gives it: err must be a *backend.NotSupportedError (an engine's Check or
// probe that refused conclusively), and anything else fails the test.
func Why(t testing.TB, err error) string {
	t.Helper()
	ns, ok := errors.AsType[*backend.NotSupportedError](err)
	if !ok {
		t.Fatalf("%v (%T) is not an engine's refusal (*backend.NotSupportedError)", err, err)
	}
	return ns.Reason
}
