package ktls_test

import (
	"crypto/tls"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/cpufacts"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// The TestPlatform tests check what a connection says where the kernel
// engine cannot serve: every OS but Linux, where backend/kernel is a stub that
// names the platform, and Linux hosts without kTLS (a kernel without the tls
// module, as on the development and CI machines, or a process under
// qemu-user, which does not pass TCP_ULP through; scripts/test-cross runs
// them there on arm64, s390x, riscv64 and 386). Where kTLS serves (the kernel
// VMs), they skip: the kernel tests cover that side.

// TestPlatformAuto: automatic selection gives userspace on both directions,
// and the reason carries the kernel engine's own answer.
func TestPlatformAuto(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")
	for _, sc := range ktlstest.InteropSuites {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			// TLS 1.3's suite is crypto/tls's choice (ChaCha20-Poly1305
			// on CPUs without AES instructions, qemu's s390x among them).
			st := k.ConnectionState()
			txWhy, rxWhy := platformProbe(t, st.Version, st.CipherSuite)
			ktlstest.WantBackend(t, k, "userspace", "userspace")
			b := k.Backend()
			// Receiving ChaCha20-Poly1305, auto puts userspace before
			// the kernel (selector.autoOrder), so the kernel is not
			// passed over and the rx reason is plain "auto"; the tx
			// reason still names the platform for the connection.
			note := goAESNote(st.CipherSuite)
			wantRX := "auto; kernel: " + rxWhy + note
			if ktlstest.IsChaCha(st.CipherSuite) {
				wantRX = "auto"
			}
			ktlstest.WantChoice(t, "tx", b.TXDetail, "userspace", "auto; kernel: "+txWhy+note)
			ktlstest.WantChoice(t, "rx", b.RXDetail, "userspace", wantRX)
			wantRXUnavailable := []ktls.Refusal{{Engine: "kernel", Reason: rxWhy}}
			if ktlstest.IsChaCha(st.CipherSuite) {
				wantRXUnavailable = nil
			}
			ktlstest.WantUnavailable(t, "tx", b.TXDetail, []ktls.Refusal{{Engine: "kernel", Reason: txWhy}})
			ktlstest.WantUnavailable(t, "rx", b.RXDetail, wantRXUnavailable)
			t.Logf("%s", b)
			testenv.Exchange(t, k, s, 64<<10)
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// platformForced are the suites the forcing tests use: TLS 1.3 and TLS 1.2
// AES-GCM, where auto would put the kernel first on both directions.
var platformForced = []ktlstest.SuiteCase{
	{Version: tls.VersionTLS13, Suite: tls.TLS_AES_128_GCM_SHA256},
	{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
}

// TestPlatformForcedKernel: KTLS_BACKEND=kernel without strictness falls
// back to userspace and says why.
func TestPlatformForcedKernel(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "kernel")
	t.Setenv("KTLS_STRICT", "")
	for _, sc := range platformForced {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			st := k.ConnectionState()
			txWhy, rxWhy := platformProbe(t, st.Version, st.CipherSuite)
			ktlstest.WantBackend(t, k, "userspace", "userspace")
			note := goAESNote(st.CipherSuite)
			b := k.Backend()
			ktlstest.WantChoice(t, "tx", b.TXDetail, "userspace", "forced kernel unavailable: "+txWhy+note)
			ktlstest.WantChoice(t, "rx", b.RXDetail, "userspace", "forced kernel unavailable: "+rxWhy+note)
			ktlstest.WantUnavailable(t, "tx", b.TXDetail, []ktls.Refusal{{Engine: "kernel", Reason: txWhy}})
			ktlstest.WantUnavailable(t, "rx", b.RXDetail, []ktls.Refusal{{Engine: "kernel", Reason: rxWhy}})
			testenv.Exchange(t, k, s, 64<<10)
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// TestPlatformStrict: the kernel forced strictly, by the environment or by
// the program, fails the handshake with the documented *ktls.StrictError,
// in both roles and through Dial; the peer sees the connection end.
func TestPlatformStrict(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")
	for _, sc := range platformForced {
		for _, how := range []struct {
			name  string
			setup func(t *testing.T) []ktls.Option
		}{
			{"KTLS_BACKEND=kernel,KTLS_STRICT=1", func(t *testing.T) []ktls.Option {
				t.Setenv("KTLS_BACKEND", "kernel")
				t.Setenv("KTLS_STRICT", "1")
				return nil
			}},
			{"WithBackend(kernel),WithStrict", func(t *testing.T) []ktls.Option {
				return []ktls.Option{ktls.WithBackend("kernel"), ktls.WithStrict()}
			}},
		} {
			t.Run(sc.String()+"/"+how.name, ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
				opts := how.setup(t)
				ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
				k, err, finish := ktlstest.StrictHandshake(t, ktlsClient, ccfg, scfg, opts...)
				var werr error
				if err != nil {
					_, werr = k.Write([]byte("x"))
				}
				// crypto/tls finished its handshake before the handoff
				// refused, so the state names the suite it chose (TLS
				// 1.3's is not configurable).
				st := k.ConnectionState()
				finish()
				txWhy, _ := platformProbe(t, st.Version, st.CipherSuite)
				wantStrictError(t, err, txWhy)
				if werr == nil {
					t.Error("Write after a strict handshake failure succeeded")
				}
			}))
		}
		t.Run(sc.String()+"/Dial", func(t *testing.T) {
			// Where kTLS serves, Dial succeeds: skip before dialing
			// (TLS 1.3's suite is crypto/tls's choice, AES-128-GCM
			// with AES instructions; the probe after the handshake
			// checks the one it made).
			probeSuite := sc.Suite
			if probeSuite == 0 {
				probeSuite = tls.TLS_AES_128_GCM_SHA256
			}
			platformProbe(t, sc.Version, probeSuite)
			t.Setenv("KTLS_BACKEND", "kernel")
			t.Setenv("KTLS_STRICT", "1")
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			l, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			served := make(chan tls.ConnectionState, 1)
			go func() {
				var st tls.ConnectionState
				defer func() { served <- st }()
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(30 * time.Second))
				if tc.Handshake() == nil {
					st = tc.ConnectionState()
					tc.Read(make([]byte, 1))
				}
			}()
			c, err := ktls.Dial("tcp", l.Addr().String(), ccfg)
			if c != nil {
				t.Errorf("Dial returned a connection with error %v", err)
				c.Close()
			}
			st := <-served
			txWhy, _ := platformProbe(t, st.Version, st.CipherSuite)
			wantStrictError(t, err, txWhy)
		})
	}
}

// goAESNote is what the reason of a userspace direction adds about the CPU
// (selector's table): nothing where Go's AES-GCM runs on the CPU's AES
// instructions or the suite is ChaCha20-Poly1305; else that Go's does not
// use them (386 on an x86 CPU with AES-NI) or that there are none (qemu-user's
// s390x and riscv64).
func goAESNote(suite uint16) string {
	f := cpufacts.Detect()
	switch {
	case ktlstest.IsChaCha(suite) || f.GoAESGCM:
		return ""
	case f.AESGCM:
		return "; Go's AES-GCM does not use this " + runtime.GOARCH + " CPU's AES instructions here"
	}
	return "; this " + runtime.GOARCH + " CPU has no AES-GCM instructions: Go's AES is table-based"
}

// platformProbe returns what the kernel engine says for each direction, as
// Backend().Reason and StrictError.Reason give it, checked to say why it
// cannot serve; where kTLS serves, the test skips.
func platformProbe(t *testing.T, version, suite uint16) (txWhy, rxWhy string) {
	t.Helper()
	txErr, rxErr := kernel.Probe(true, version, suite), kernel.Probe(false, version, suite)
	if runtime.GOOS == "linux" && (txErr == nil || rxErr == nil) {
		t.Skipf("kTLS serves %s %s here (tx: %v, rx: %v); the kernel tests cover it",
			tls.VersionName(version), tls.CipherSuiteName(suite), txErr, rxErr)
	}
	for _, err := range []error{txErr, rxErr} {
		if !errors.Is(err, backend.ErrNotSupported) {
			t.Fatalf("kernel.Probe = %v; want an error wrapping backend.ErrNotSupported", err)
		}
	}
	txWhy, rxWhy = testenv.Why(t, txErr), testenv.Why(t, rxErr)
	if runtime.GOOS != "linux" {
		// backend/kernel's stub names the platform, and so must the
		// reason a connection gives.
		want := "kTLS needs Linux; this is " + runtime.GOOS + "/" + runtime.GOARCH
		for _, why := range []string{txWhy, rxWhy} {
			if why != want {
				t.Fatalf("the kernel engine's reason = %q; want %q", why, want)
			}
		}
	}
	return txWhy, rxWhy
}

// wantStrictError checks that err is the documented *ktls.StrictError for
// the kernel forced on TX (the first direction selected), with the kernel
// engine's reason.
func wantStrictError(t *testing.T, err error, txWhy string) {
	t.Helper()
	var se *ktls.StrictError
	if !errors.As(err, &se) {
		t.Fatalf("handshake error = %v (%T); want a *ktls.StrictError", err, err)
	}
	if se.Forced != "kernel" || se.Direction.String() != "tx" || se.Reason != txWhy {
		t.Errorf("StrictError = %+v; want tx forced to kernel with reason %q", *se, txWhy)
	}
	if msg := err.Error(); !strings.Contains(msg, "KTLS_STRICT") || !strings.Contains(msg, txWhy) {
		t.Errorf("handshake error %q does not name KTLS_STRICT and the reason", msg)
	}
}
