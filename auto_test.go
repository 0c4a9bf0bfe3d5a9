package ktls_test

import (
	"crypto/tls"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/cpufacts"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// autoSoftEnv marks the child run of TestAutoChoice in which GODEBUG turns
// the AES instructions off for Go (TestAutoChoiceGoSoftAES).
const autoSoftEnv = "KTLS_TEST_AUTO_SOFT_AES"

// autoSuites are the suites whose automatic choice TestAutoChoice pins down:
// both AES-GCM key sizes and ChaCha20-Poly1305 under TLS 1.2, and TLS 1.3
// with crypto/tls's own pick (AES-128-GCM where Go's AES runs on the CPU's
// instructions, ChaCha20-Poly1305 where it does not).
var autoSuites = []ktlstest.SuiteCase{
	{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
	{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	{Version: tls.VersionTLS13, Suite: 0},
}

// TestAutoChoice asserts, where the kernel's kTLS serves (the VMs, amd64
// and arm64), which engine auto gives each direction and the reason it
// gives, as the selector's table documents them: AES-GCM in the kernel both
// ways; ChaCha20-Poly1305 sent by the kernel and received by userspace. The
// reason says nothing about the CPU where Go's AES-GCM runs on the CPU's AES
// instructions, and says that the kernel's does where Go's does not
// (TestAutoChoiceGoSoftAES). On a host without kTLS it skips; TestPlatformAuto
// covers that side.
func TestAutoChoice(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")
	soft := os.Getenv(autoSoftEnv) == "1"
	cpu := cpufacts.Detect()
	if soft && (!cpu.AESGCM || cpu.GoAESGCM) {
		t.Fatalf("GODEBUG=%s: cpufacts.Detect() = %+v; want the CPU's AES-GCM instructions, unused by Go", os.Getenv("GODEBUG"), cpu)
	}
	for _, sc := range autoSuites {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			st := k.ConnectionState()
			if soft && sc.Suite == 0 && !ktlstest.IsChaCha(st.CipherSuite) {
				t.Errorf("TLS 1.3 with Go's AES in software: crypto/tls chose %s, want ChaCha20-Poly1305", tls.CipherSuiteName(st.CipherSuite))
			}
			for _, tx := range []bool{true, false} {
				if err := kernel.Probe(tx, st.Version, st.CipherSuite); err != nil {
					testenv.RequireKernelFeature(t, testenv.KTLSFeature(st.Version, st.CipherSuite), err)
				}
			}
			rxEngine, txWhy, rxWhy := "kernel", "auto", "auto"
			switch {
			case ktlstest.IsChaCha(st.CipherSuite):
				rxEngine, rxWhy = "userspace", "auto; userspace before kernel: it receives ChaCha20-Poly1305 faster"
			case cpu.GoAESGCM:
			case cpu.AESGCM:
				note := "auto; the kernel's AES-GCM uses this " + runtime.GOARCH + " CPU's AES instructions, Go's does not here"
				txWhy, rxWhy = note, note
			}
			ktlstest.WantBackend(t, k, "kernel", rxEngine)
			b := k.Backend()
			ktlstest.WantChoice(t, "tx", b.TXDetail, "kernel", txWhy)
			ktlstest.WantChoice(t, "rx", b.RXDetail, rxEngine, rxWhy)
			if len(b.TXDetail.Refused)+len(b.RXDetail.Refused) != 0 || b.BothStdlib || b.RXDetail.AfterTickets ||
				b.TXDetail.Reported != "" || b.RXDetail.Reported != "" {
				t.Errorf("%s: Backend() = %q; want each direction on its first candidate, with nothing more to say", tls.CipherSuiteName(st.CipherSuite), b)
			}
			testenv.Exchange(t, k, s, 16<<10)
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// TestAutoChoiceGoSoftAES runs TestAutoChoice again in a child process with
// GODEBUG turning AES and the carry-less multiply off for Go, which the
// kernel does not see: the case of a Go program whose AES-GCM runs in
// software on a CPU whose kernel has the instructions (GOARCH=386 on x86, or
// an operator's GODEBUG). Where the CPU lacks the instructions (by
// /proc/cpuinfo, not by the code under test) there is nothing to turn off.
func TestAutoChoiceGoSoftAES(t *testing.T) {
	if os.Getenv(autoSoftEnv) == "1" {
		t.Skip("the child run")
	}
	var godebug string
	switch runtime.GOARCH {
	case "amd64":
		godebug = "cpu.aes=off,cpu.pclmulqdq=off"
	case "arm64":
		godebug = "cpu.aes=off,cpu.pmull=off"
	default:
		t.Skipf("GODEBUG cannot turn Go's AES-GCM off on %s", runtime.GOARCH)
	}
	if has, err := testenv.CPUInfoAESGCM(); err != nil {
		t.Skipf("no CPU facts apart from cpuid: %v", err)
	} else if !has {
		t.Skip("/proc/cpuinfo: this CPU has no AES-GCM instructions; TestAutoChoice covers it")
	}
	// The child would skip without kTLS; so does this test, and for the
	// same reason.
	if err := kernel.Probe(true, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); err != nil {
		testenv.RequireKernelFeature(t, testenv.KTLSFeature(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAutoChoice$", "-test.v")
	cmd.Env = append(os.Environ(), autoSoftEnv+"=1", "GODEBUG="+godebug)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestAutoChoice ") || strings.Contains(string(out), "--- SKIP") {
		t.Fatalf("child TestAutoChoice with GODEBUG=%s: %v\n%s", godebug, err, out)
	}
}
