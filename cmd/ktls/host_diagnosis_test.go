package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

const fixtureRelease = "6.12.9-amd64"

// hostFixture writes files (path: content) under a new root; a ".gz" path
// is gzipped.
func hostFixture(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := []byte(content)
		if strings.HasSuffix(name, ".gz") {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(b)
			zw.Close()
			b = buf.Bytes()
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

var (
	ulpENOENT = Status{State: stateUnavailable, Reason: `setsockopt(TCP_ULP, "tls"): ENOENT`}
	ulpOK     = Status{State: stateAvailable}
	// CapEff of root (every capability) and of an ordinary user (none).
	capsRoot = "Name:\tktls\nCapEff:\t000001ffffffffff\n"
	capsUser = "Name:\tktls\nCapEff:\t0000000000000000\n"
	// CAP_NET_BIND_SERVICE (10) alone, as a server given only that.
	capsBind = "CapEff:\t0000000000000400\n"
)

// TestDiagnoseKTLS runs the diagnosis over fake /proc, /boot and
// /lib/modules trees, one per cause.
func TestDiagnoseKTLS(t *testing.T) {
	modules := "/lib/modules/" + fixtureRelease
	for _, tc := range []struct {
		name  string
		ulp   Status
		files map[string]string
		cause string
		fix   string // a part of the fix
		fact  string // a part of one fact
	}{
		{"available", ulpOK, map[string]string{
			"/proc/sys/net/ipv4/tcp_available_ulp": "espintcp mptcp tls\n",
		}, "available", "", "lists tls"},
		{"no CONFIG_TLS, /proc/config.gz", ulpENOENT, map[string]string{
			"/proc/config.gz":   "CONFIG_NET=y\n# CONFIG_TLS is not set\nCONFIG_MODULES=y\n",
			"/proc/self/status": capsUser,
		}, "no-config-tls", "CONFIG_TLS=m", "/proc/config.gz: CONFIG_TLS is not set, CONFIG_MODULES=y"},
		{"no CONFIG_TLS, /boot", ulpENOENT, map[string]string{
			"/boot/config-" + fixtureRelease: "# CONFIG_TLS is not set\n# CONFIG_MODULES is not set\n",
			"/.dockerenv":                    "",
		}, "no-config-tls", "the host's to change", "/boot/config-" + fixtureRelease + ": CONFIG_TLS is not set"},
		{"container", ulpENOENT, map[string]string{
			"/.dockerenv":       "",
			"/proc/self/status": capsRoot,
		}, "container", "on the host: sudo modprobe tls", "/lib/modules/" + fixtureRelease + " is absent"},
		{"kubernetes", ulpENOENT, map[string]string{
			"/proc/1/cgroup": "0::/kubepods/besteffort/pod1234/abcd\n",
		}, "container", "modules-load.d", "/proc/1/cgroup names kubepods"},
		{"not loaded, unprivileged", ulpENOENT, map[string]string{
			"/boot/config-" + fixtureRelease:       "CONFIG_TLS=m\nCONFIG_MODULES=y\n",
			modules + "/modules.dep":               "kernel/net/tls/tls.ko.xz:\nkernel/net/ipv4/tcp_bbr.ko.xz:\n",
			"/proc/sys/net/ipv4/tcp_available_ulp": "mptcp\n",
			"/proc/self/status":                    capsBind,
		}, "not-loaded", "sudo modprobe tls", "CAP_NET_ADMIN (/proc/self/status CapEff): no"},
		{"not loaded, no configuration readable", ulpENOENT, map[string]string{
			modules + "/kernel/net/tls/tls.ko.zst": "",
			"/proc/self/status":                    capsUser,
		}, "not-loaded", "/etc/modules-load.d/tls.conf", "has net/tls/tls.ko"},
		{"load failed", ulpENOENT, map[string]string{
			"/boot/config-" + fixtureRelease: "CONFIG_TLS=m\n",
			modules + "/modules.dep":         "kernel/net/tls/tls.ko:\n",
			"/proc/self/status":              capsRoot,
		}, "load-failed", "/etc/modprobe.d", "CapEff): yes"},
		{"module missing", ulpENOENT, map[string]string{
			"/boot/config-" + fixtureRelease: "CONFIG_TLS=m\n",
			modules + "/modules.dep":         "kernel/net/ipv4/tcp_bbr.ko:\n",
			"/proc/self/status":              capsUser,
		}, "module-missing", "linux-modules-extra-" + fixtureRelease, "has no net/tls/tls.ko"},
		{"modules disabled", ulpENOENT, map[string]string{
			"/boot/config-" + fixtureRelease:    "CONFIG_TLS=m\n",
			modules + "/modules.dep":            "kernel/net/tls/tls.ko:\n",
			"/proc/sys/kernel/modules_disabled": "1\n",
			"/proc/self/status":                 capsRoot,
		}, "modules-disabled", "reboot", "modules_disabled is 1"},
		{"listed and refused", Status{State: stateError, Reason: "EPERM"}, map[string]string{
			"/proc/sys/net/ipv4/tcp_available_ulp": "tls\n",
			"/proc/self/status":                    capsUser,
		}, "unknown", "seccomp", "lists tls"},
		{"nothing readable", ulpENOENT, nil, "unknown", "modprobe tls", "kernel configuration: unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := hostFixture(t, tc.files)
			d := diagnoseKTLS(readKTLSFacts(root, fixtureRelease, tc.ulp))
			if d.Cause != tc.cause {
				t.Errorf("cause %q, want %q: %s", d.Cause, tc.cause, d.Explanation)
			}
			if (tc.fix == "") != (d.Fix == "") || !strings.Contains(d.Fix, tc.fix) {
				t.Errorf("fix %q, want one with %q", d.Fix, tc.fix)
			}
			if !strings.Contains(strings.Join(d.Facts, "\n"), tc.fact) {
				t.Errorf("facts lack %q:\n%s", tc.fact, strings.Join(d.Facts, "\n"))
			}
			if d.Explanation == "" {
				t.Error("no explanation")
			}
		})
	}
}

func TestConfigValue(t *testing.T) {
	config := []byte("CONFIG_TLS_DEVICE=y\nCONFIG_TLS=m\n# CONFIG_MODULES is not set\nCONFIG_LOCALVERSION=\"-x\"\n")
	for key, want := range map[string]string{"CONFIG_TLS": "m", "CONFIG_TLS_DEVICE": "y", "CONFIG_MODULES": "n", "CONFIG_NET": "", "CONFIG_LOCALVERSION": "-x"} {
		if got := configValue(config, key); got != want {
			t.Errorf("configValue(%s) = %q, want %q", key, got, want)
		}
	}
}

// TestDiagnosisHere diagnoses this host, against the harness's own kTLS
// probe: "available" where kTLS works (the VMs, where it must), otherwise a
// cause with something to do; on a host whose configuration says
// CONFIG_TLS is not set (this development host), that cause.
func TestDiagnosisHere(t *testing.T) {
	d := ktlsDiagnosisHere(probeULP())
	t.Logf("diagnosis: %s: %s\nfix: %s\nfacts:\n  %s", d.Cause, d.Explanation, d.Fix, strings.Join(d.Facts, "\n  "))
	err := testenv.ProbeKTLS()
	switch {
	case runtime.GOOS != "linux":
		if d.Cause != "not-linux" {
			t.Errorf("cause %q on %s", d.Cause, runtime.GOOS)
		}
	case err == nil:
		if d.Cause != "available" {
			t.Errorf("kTLS works here, the diagnosis is %q", d.Cause)
		}
	case errors.Is(err, backend.ErrNotSupported):
		if testenv.InVM() {
			t.Fatalf("kTLS is missing in the VM: %v", err)
		}
		if d.Cause == "available" || d.Fix == "" {
			t.Errorf("no kTLS here (%v), the diagnosis is %q with fix %q", err, d.Cause, d.Fix)
		}
		if b, err := readMaybeGzip("/proc/config.gz"); err == nil && configValue(b, "CONFIG_TLS") == "n" && d.Cause != "no-config-tls" {
			t.Errorf("/proc/config.gz says CONFIG_TLS is not set, the diagnosis is %q", d.Cause)
		}
	default:
		t.Fatalf("probing kTLS: %v", err)
	}
}
