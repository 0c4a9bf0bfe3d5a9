package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/vmtest/plan"
)

// selfCheck asserts that this guest offers everything the project's tests
// need, so that no test can pass by skipping for want of a module. Each check
// prints like a top-level test of `go test -v`. It returns the exit status: 0
// when every check passed. env is what the plan added to the environment,
// shown with the kernel; setupErr is a failure of the guest's own setup (the
// plan's sysctls), which fails the first check.
func selfCheck(nonce string, env []string, setupErr error) int {
	checks := []struct {
		name string
		f    func(info func(key, value string)) error
	}{
		{"SelfCheckKernel", func(info func(key, value string)) error {
			info("env", strings.Join(append([]string{testenv.EnvVar + "=1"}, env...), " "))
			return errors.Join(setupErr, checkKernel(info))
		}},
		{"SelfCheckKTLS", checkKTLS},
		{"SelfCheckAFALG", checkAFALG},
		{"SelfCheckPeers", checkPeers},
	}
	failed := false
	for _, c := range checks {
		fmt.Printf("=== RUN   %s\n", c.name)
		start := time.Now()
		info := func(key, value string) {
			fmt.Printf("    %s: %s\n", key, value)
			fmt.Println(plan.InfoLine(nonce, key, value))
		}
		err := c.f(info)
		secs := time.Since(start).Seconds()
		if err != nil {
			failed = true
			fmt.Printf("    %s\n--- FAIL: %s (%.2fs)\n", indent(err.Error()), c.name, secs)
			continue
		}
		fmt.Printf("--- PASS: %s (%.2fs)\n", c.name, secs)
	}
	if failed {
		printKernelLog(40)
		fmt.Println("FAIL: the guest lacks what the tests need; see the failures above")
		return 1
	}
	fmt.Println("PASS")
	return 0
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }

func checkKernel(info func(key, value string)) error {
	v := testenv.KernelVersion()
	if v.Major == 0 {
		return errors.New("uname: no kernel release")
	}
	info("kernel", v.Release)
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	info("machine", fmt.Sprintf("%s (GOARCH %s)", unix.ByteSliceToString(u.Machine[:]), runtime.GOARCH))
	mods, err := os.ReadFile("/proc/modules")
	if err != nil {
		return err
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(mods)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	info("modules", strings.Join(names, " "))
	return nil
}

// ktlsCases are the TLS versions and AEAD suites the project hands to the
// kernel; each needs its own crypto module (gcm, chacha20poly1305 and their
// x86 drivers).
var ktlsCases = []struct{ version, suite uint16 }{
	{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
	{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
	{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
	{tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256},
	{tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384},
	{tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256},
}

func checkKTLS(info func(key, value string)) error {
	// The first case is the one the brief of the harness names: TCP_ULP,
	// TLS_TX and TLS_RX with TLS 1.2 AES-128-GCM.
	var errs []error
	var ok []string
	for _, c := range ktlsCases {
		if err := testenv.ProbeKTLSWith(c.version, c.suite); err != nil {
			errs = append(errs, err)
			continue
		}
		ok = append(ok, tls.VersionName(c.version)+" "+tls.CipherSuiteName(c.suite))
	}
	info("ktls", strings.Join(ok, ", "))
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	stat, err := os.ReadFile("/proc/net/tls_stat")
	if err != nil {
		return fmt.Errorf("kTLS works but its counters are missing: %w", err)
	}
	// One line, "TlsCurrTxSw=0 TlsTxSw=12 ...", so that the console shows it
	// compactly; the rekey counters tell 6.14+ kernels apart.
	var pairs []string
	for _, line := range strings.Split(strings.TrimSpace(string(stat)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			pairs = append(pairs, f[0]+"="+f[1])
		}
	}
	info("tls_stat", strings.Join(pairs, " "))
	// kTLS allocated gcm(aes) and rfc7539(chacha20,poly1305) above
	// (net/tls/tls_sw.c, tls_set_sw_offload), so /proc/crypto now tells
	// which drivers serve them.
	f, err := os.Open("/proc/crypto")
	if err != nil {
		return err
	}
	defer f.Close()
	algs, err := parseProcCrypto(f)
	if err != nil {
		return fmt.Errorf("reading /proc/crypto: %w", err)
	}
	for _, name := range []string{"gcm(aes)", "rfc7539(chacha20,poly1305)"} {
		a, ok := bestDriver(algs, name)
		if !ok {
			return fmt.Errorf("/proc/crypto has no usable %s after kTLS used it", name)
		}
		info(name, fmt.Sprintf("%s (module %s, priority %d)", a.driver, a.module, a.priority))
	}
	return nil
}

// checkAFALG asserts what testenv.ExpectedInVM promises about AF_ALG: where
// the kernel does not restrict it, gcm(aes) works end to end; where Linux
// 7.3's af_alg_restrict allowlist is on, AF_ALG itself still works (ccm(aes),
// on the allowlist, binds), so the project's tests see the refusal of
// gcm(aes) that real 7.3 systems give, not a missing module.
func checkAFALG(info func(key, value string)) error {
	restrict := testenv.AFALGRestriction()
	info("af_alg_restrict", strconv.Itoa(restrict))
	err := testenv.ProbeAFALG()
	switch {
	case testenv.ExpectedInVM(testenv.FeatureAFALG):
		if err != nil {
			return fmt.Errorf("%w\nthe kernel's AEADs now:\n%s", err, listAEADs())
		}
		info("afalg", "aead gcm(aes): bind, setkey and an encryption that matches crypto/cipher")
		return nil
	case err == nil:
		info("afalg", "aead gcm(aes) works although af_alg_restrict is set: the allowlist has changed")
		return nil
	case !errors.Is(err, backend.ErrNotSupported):
		return err
	case restrict == 2:
		info("afalg", "disabled by af_alg_restrict=2")
		return nil
	}
	if err := bindAEAD("ccm(aes)"); err != nil {
		return fmt.Errorf("AF_ALG refuses gcm(aes) under af_alg_restrict=%d, and also ccm(aes), which its allowlist has: %w", restrict, err)
	}
	info("afalg", fmt.Sprintf("aead gcm(aes) refused by af_alg_restrict=%d (ENOENT), as on any 7.3+ system; ccm(aes) binds", restrict))
	return nil
}

func bindAEAD(name string) error {
	fd, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket(AF_ALG): %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrALG{Type: "aead", Name: name}); err != nil {
		return fmt.Errorf("bind(AF_ALG aead %s): %w", name, err)
	}
	return nil
}

// checkPeers runs each real peer once, so that a missing shared library or
// configuration file shows here rather than as a puzzling interop failure.
func checkPeers(info func(key, value string)) error {
	var errs []error
	for _, argv := range [][]string{
		{"openssl", "version"},
		{"gnutls-cli", "--version"},
		{"gnutls-serv", "--version"},
		{"curl", "--version"},
	} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		first, _, _ := strings.Cut(string(bytes.TrimSpace(out)), "\n")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out)))
			continue
		}
		info(argv[0], first)
	}
	return errors.Join(errs...)
}

// listAEADs describes the AEAD entries of /proc/crypto, to explain a failed
// AF_ALG check.
func listAEADs() string {
	f, err := os.Open("/proc/crypto")
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	algs, err := parseProcCrypto(f)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for _, a := range algs {
		if a.typ == "aead" {
			lines = append(lines, fmt.Sprintf("  %s: %s (module %s, priority %d, selftest %s, internal %s)",
				a.name, a.driver, a.module, a.priority, a.selftest, a.internal))
		}
	}
	if len(lines) == 0 {
		return "  none"
	}
	return strings.Join(lines, "\n")
}

// printKernelLog prints the last lines of the kernel's log, which say why a
// module did not load or an algorithm did not register.
func printKernelLog(lines int) {
	size, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil || size <= 0 {
		return
	}
	buf := make([]byte, size)
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return
	}
	all := strings.Split(strings.TrimSpace(string(buf[:n])), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	fmt.Printf("the kernel's log, last %d lines:\n", len(all))
	for _, l := range all {
		fmt.Println("    " + l)
	}
}
