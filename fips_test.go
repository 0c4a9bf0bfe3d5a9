package ktls_test

import (
	"crypto/fips140"
	"crypto/tls"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"github.com/ktls-go/ktls/selector"
)

// fipsChildEnv marks the child runs of TestFIPS and names the fips140 mode
// the child was started in.
const fipsChildEnv = "KTLS_TEST_FIPS"

// fipsReason is the reason the selector gives every direction in FIPS 140-3
// mode.
const fipsReason = "FIPS 140-3 mode: only crypto/tls's record layer is inside the Go Cryptographic Module"

// fipsSuites are the suites of the FIPS matrix in each mode: in FIPS 140-3
// mode crypto/tls "will ignore and not negotiate any protocol version, cipher
// suite, signature algorithm, or key exchange mechanism that is not FIPS
// 140-3 approved" (https://go.dev/doc/security/fips140), which leaves the
// AES-GCM suites (and, for TLS 1.2, the CBC-SHA256 ones: stdlib in every
// mode, as a suite without AEAD); off, every AEAD suite of the interop
// matrix. The server's certificate (internal/testing/testpki) is ECDSA P-256 or RSA
// 2048, both approved.
func fipsSuites(fips bool) []ktlstest.SuiteCase {
	if !fips {
		return append(slices.Clip(ktlstest.InteropSuites), ktlstest.SuiteCase{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256})
	}
	return []ktlstest.SuiteCase{
		{Version: tls.VersionTLS13, Suite: 0},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
	}
}

// TestFIPS runs TestFIPSChild in a child process of this test binary for
// each fips140 GODEBUG setting: off, on and only. The mode is read at
// start-up and "can't be changed after the program has started"
// (crypto/fips140.Enabled), so a child is the only way to see each.
func TestFIPS(t *testing.T) {
	if os.Getenv(fipsChildEnv) != "" {
		t.Skip("the child run")
	}
	for _, mode := range []string{"off", "on", "only"} {
		t.Run(mode, func(t *testing.T) {
			// Later GODEBUG settings win over earlier ones, so the
			// parent's other settings are kept.
			godebug := "fips140=" + mode
			if g := os.Getenv("GODEBUG"); g != "" {
				godebug = g + "," + godebug
			}
			args := []string{"-test.run=^TestFIPSChild$", "-test.v"}
			if testing.Short() {
				args = append(args, "-test.short")
			}
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), fipsChildEnv+"="+mode, "GODEBUG="+godebug)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestFIPSChild ") {
				t.Fatalf("child TestFIPSChild with GODEBUG=%s: %v\n%s", godebug, err, out)
			}
			if testing.Verbose() {
				t.Logf("child with GODEBUG=%s:\n%s", godebug, out)
			}
		})
	}
}

// TestFIPSChild is TestFIPS's child: ktls against stock crypto/tls in both
// roles, for each version and suite crypto/tls allows in the mode, with data
// both ways and the engines each direction got; then the same with an engine
// forced, with and without KTLS_STRICT; and ktls.Candidates, which must say
// what the connections got.
func TestFIPSChild(t *testing.T) {
	mode := os.Getenv(fipsChildEnv)
	if mode == "" {
		t.Skip("run by TestFIPS in a child process")
	}
	fips := mode != "off"
	if fips140.Enabled() != fips || fips140.Enforced() != (mode == "only") {
		t.Fatalf("GODEBUG=%s: fips140.Enabled() = %v, Enforced() = %v; want the mode %s", os.Getenv("GODEBUG"), fips140.Enabled(), fips140.Enforced(), mode)
	}
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")

	t.Run("auto", func(t *testing.T) {
		for _, sc := range fipsSuites(fips) {
			t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
				ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
				k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
				st := k.ConnectionState()
				switch {
				case fips:
					if !slices.Contains([]uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384}, st.CipherSuite) && sc.Suite == 0 {
						t.Errorf("FIPS 140-3 mode: crypto/tls negotiated %s", tls.CipherSuiteName(st.CipherSuite))
					}
					ktlstest.WantBackend(t, k, "stdlib", "stdlib")
					if want := "tx: stdlib (" + fipsReason + "); rx: stdlib (" + fipsReason + ")"; k.Backend().Reason != want {
						t.Errorf("Backend().Reason =\n\t%s\nwant\n\t%s", k.Backend().Reason, want)
					}
				case !isAEAD(st.CipherSuite):
					ktlstest.WantBackend(t, k, "stdlib", "stdlib")
					if want := tls.CipherSuiteName(st.CipherSuite) + " is not a TLS 1.2 AEAD suite"; !strings.Contains(k.Backend().Reason, want) {
						t.Errorf("Backend().Reason = %q, want it to say %q", k.Backend().Reason, want)
					}
				default:
					ktlstest.WantAuto(t, k)
					if strings.Contains(k.Backend().Reason, "FIPS") {
						t.Errorf("Backend().Reason = %q names FIPS with the mode off", k.Backend().Reason)
					}
				}
				// What Candidates says is what the connection got (a TLS
				// 1.3 client off FIPS installs RX later, with more to
				// say: TestCandidatesMatchConnection).
				if fips || !ktlsClient {
					fipsCandidatesMatch(t, k)
				}
				testenv.Exchange(t, k, s, 64<<10)
				ktlstest.CloseBoth(t, k, s)
			}))
		}
	})

	// Forced, not strict: stdlib with the reason in FIPS 140-3 mode,
	// whatever the host offers; off, the forced engine.
	t.Run("forced", func(t *testing.T) {
		for _, sc := range []ktlstest.SuiteCase{{Version: tls.VersionTLS13, Suite: 0}, {Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}} {
			t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
				for _, forced := range []string{"userspace", "kernel", "tx=kernel,rx=userspace"} {
					t.Setenv("KTLS_BACKEND", forced)
					ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
					k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
					b := k.Backend()
					switch {
					case fips:
						spec, err := selector.ParseSpec(forced)
						if err != nil {
							t.Fatal(err)
						}
						want := "tx: stdlib (forced " + spec.For(selector.TX) + " unavailable: " + fipsReason + "); " +
							"rx: stdlib (forced " + spec.For(selector.RX) + " unavailable: " + fipsReason + ")"
						if b.TX != "stdlib" || b.RX != "stdlib" || b.Reason != want {
							t.Errorf("KTLS_BACKEND=%s: Backend() = %+v, want both stdlib with\n\t%s", forced, b, want)
						}
					case forced == "userspace":
						ktlstest.WantBackend(t, k, "userspace", "userspace")
					}
					testenv.Exchange(t, k, s, 16<<10)
					ktlstest.CloseBoth(t, k, s)
				}
			}))
		}
	})

	// KTLS_BACKEND=userspace KTLS_STRICT=1: a *StrictError in FIPS 140-3
	// mode, for TX (asked first); off, userspace.
	t.Run("strict", func(t *testing.T) {
		t.Setenv("KTLS_BACKEND", "userspace")
		t.Setenv("KTLS_STRICT", "1")
		for _, sc := range []ktlstest.SuiteCase{{Version: tls.VersionTLS13, Suite: 0}, {Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}} {
			t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
				ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
				if !fips {
					k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
					ktlstest.WantBackend(t, k, "userspace", "userspace")
					testenv.Exchange(t, k, s, 16<<10)
					ktlstest.CloseBoth(t, k, s)
					return
				}
				k, err, finish := ktlstest.StrictHandshake(t, ktlsClient, ccfg, scfg)
				defer finish()
				var se *ktls.StrictError
				if !errors.As(err, &se) {
					t.Fatalf("KTLS_BACKEND=userspace KTLS_STRICT=1: handshake error %v, want a *ktls.StrictError", err)
				}
				if want := (ktls.StrictError{Direction: selector.TX, Forced: "userspace", Reason: fipsReason}); *se != want {
					t.Errorf("StrictError = %+v, want %+v", *se, want)
				}
				if _, err := k.Write([]byte("x")); err == nil {
					t.Error("Write after the failed handshake succeeded")
				}
			}))
		}
		// Candidates says so too, and so does the program's own option.
		t.Setenv("KTLS_BACKEND", "")
		t.Setenv("KTLS_STRICT", "")
		_, err := ktls.Candidates(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, selector.RX, ktls.WithBackend("kernel"), ktls.WithStrict())
		var se *ktls.StrictError
		switch {
		case fips && (!errors.As(err, &se) || se.Reason != fipsReason || se.Forced != "kernel"):
			t.Errorf("Candidates(WithBackend(kernel), WithStrict()) in FIPS 140-3 mode: %v, want a *StrictError for kernel with the FIPS reason", err)
		case !fips && errors.As(err, &se) && strings.Contains(se.Reason, "FIPS"):
			t.Errorf("Candidates(WithBackend(kernel), WithStrict()) with FIPS off: %v", err)
		}
	})
}

// fipsCandidatesMatch checks that ktls.Candidates gives, for each direction
// of k's version and suite, the engine k got and its reason (candidatesMatch),
// and in FIPS 140-3 mode nothing but stdlib with the FIPS reason.
func fipsCandidatesMatch(t *testing.T, k *ktls.Conn) {
	t.Helper()
	tx, rx := candidatesMatch(t, k)
	if !fips140.Enabled() {
		return
	}
	want := []selector.Candidate{{Name: "stdlib", Reason: fipsReason}}
	for _, got := range [][]selector.Candidate{tx, rx} {
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Candidates = %v, want %v", got, want)
		}
	}
}

// isAEAD reports whether suite is one of the AEAD suites the engines take.
func isAEAD(suite uint16) bool {
	for _, sc := range ktlstest.InteropSuites {
		if sc.Suite == suite {
			return true
		}
	}
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256:
		return true
	}
	return false
}
