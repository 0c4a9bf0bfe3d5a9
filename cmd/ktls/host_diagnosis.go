package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Why a host has no kTLS, and what to do: the doctor reads what the host
// shows of its kernel (its configuration, its modules, the process's
// capabilities, signs of a container) and names the first cause that
// explains the refused TCP_ULP "tls". The reading is diagnoseKTLS's input
// (ktlsFacts), read from a root directory so that the tests can give it
// fixtures; the classification is a pure function of it.

// KTLSDiagnosis says why kTLS is missing here, as far as the doctor can
// tell, and what to do.
type KTLSDiagnosis struct {
	// Cause is one of the stable names below.
	//
	//   - "available": kTLS works; nothing to do.
	//   - "not-linux": kTLS is Linux's.
	//   - "no-config-tls": the kernel was built without CONFIG_TLS.
	//   - "modules-disabled": /proc/sys/kernel/modules_disabled is 1.
	//   - "container": a container, whose host has not loaded the module.
	//   - "not-loaded": the module exists but is not loaded, and the
	//     kernel loads it on demand only for a process with CAP_NET_ADMIN.
	//   - "module-missing": CONFIG_TLS=m, but no tls.ko for this kernel.
	//   - "load-failed": the process has CAP_NET_ADMIN, so the kernel tried
	//     to load the module, and failed.
	//   - "unknown": none of these could be told.
	Cause string `json:"cause"`
	// Explanation says it in words.
	Explanation string `json:"explanation"`
	// Fix says what to do; empty for "available".
	Fix string `json:"fix,omitempty"`
	// Facts are what the doctor read to decide, each with its source.
	Facts []string `json:"facts"`
}

// ktlsFacts are what diagnoseKTLS decides from.
type ktlsFacts struct {
	ulp     Status // the TCP_ULP probe
	release string // uname -r
	// configSource is the kernel configuration read ("/proc/config.gz",
	// "/boot/config-RELEASE"), "" where none was readable; configTLS and
	// configModules are CONFIG_TLS and CONFIG_MODULES there: "y", "m",
	// "n" (not set), or "" (unknown).
	configSource, configTLS, configModules string
	// ulpListed: "tls" is in /proc/sys/net/ipv4/tcp_available_ulp (the
	// module is loaded, or built in).
	ulpListed bool
	// modulesDir: /lib/modules/RELEASE exists; moduleFile: it has
	// net/tls/tls.ko (modules.dep, or the file); builtin: modules.builtin
	// lists it.
	modulesDir, moduleFile, builtin bool
	// modulesDisabled: /proc/sys/kernel/modules_disabled is 1.
	modulesDisabled bool
	// container names the sign of a container, "" where none was seen.
	container string
	// netAdmin: CAP_NET_ADMIN is in the process's effective set;
	// netAdminKnown says /proc/self/status could be read.
	netAdmin, netAdminKnown bool
}

// capNetAdmin is CAP_NET_ADMIN's bit (include/uapi/linux/capability.h).
const capNetAdmin = 12

// readKTLSFacts reads the facts under root ("/" on the host).
func readKTLSFacts(root, release string, ulp Status) ktlsFacts {
	f := ktlsFacts{ulp: ulp, release: release}
	at := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

	// The kernel's configuration: /proc/config.gz (CONFIG_IKCONFIG_PROC),
	// else the distributions' /boot/config-RELEASE.
	for _, src := range []string{"/proc/config.gz", "/boot/config-" + release} {
		b, err := readMaybeGzip(at(src))
		if err != nil {
			continue
		}
		f.configSource = src
		f.configTLS = configValue(b, "CONFIG_TLS")
		f.configModules = configValue(b, "CONFIG_MODULES")
		break
	}
	if b, err := os.ReadFile(at("/proc/sys/net/ipv4/tcp_available_ulp")); err == nil {
		for _, u := range strings.Fields(string(b)) {
			f.ulpListed = f.ulpListed || u == "tls"
		}
	}
	if release != "" {
		dir := "/lib/modules/" + release
		if fi, err := os.Stat(at(dir)); err == nil && fi.IsDir() {
			f.modulesDir = true
			f.moduleFile = fileHasModule(at(dir+"/modules.dep"), true)
			if m, _ := filepath.Glob(at(dir + "/kernel/net/tls/tls.ko*")); len(m) > 0 {
				f.moduleFile = true
			}
			f.builtin = fileHasModule(at(dir+"/modules.builtin"), false)
		}
	}
	if b, err := os.ReadFile(at("/proc/sys/kernel/modules_disabled")); err == nil {
		f.modulesDisabled = strings.TrimSpace(string(b)) == "1"
	}
	f.container = containerSign(at)
	if b, err := os.ReadFile(at("/proc/self/status")); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				if caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
					f.netAdminKnown = true
					f.netAdmin = caps&(1<<capNetAdmin) != 0
				}
			}
		}
	}
	return f
}

// readMaybeGzip reads a file, gunzipping it where its name ends in .gz.
func readMaybeGzip(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil || !strings.HasSuffix(name, ".gz") {
		return b, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// configValue returns key's value in a kernel .config: "y", "m", "n" for
// "# KEY is not set", "" where the key is absent.
func configValue(config []byte, key string) string {
	sc := bufio.NewScanner(bytes.NewReader(config))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return strings.Trim(v, `"`)
		}
		if line == "# "+key+" is not set" {
			return "n"
		}
	}
	return ""
}

// fileHasModule reports whether modules.dep (dep: the path ends in a colon)
// or modules.builtin lists net/tls/tls.ko.
func fileHasModule(name string, dep bool) bool {
	b, err := os.ReadFile(name)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		p := strings.TrimSpace(line)
		if dep {
			p, _, _ = strings.Cut(p, ":")
		}
		// modules.dep names tls.ko.xz or .zst where compressed.
		if strings.HasSuffix(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(p, ".xz"), ".zst"), ".gz"), "net/tls/tls.ko") {
			return true
		}
	}
	return false
}

// containerSign returns the first sign of a container runtime, or "".
func containerSign(at func(string) string) string {
	for _, f := range []string{"/.dockerenv", "/run/.containerenv"} {
		if _, err := os.Stat(at(f)); err == nil {
			return f + " exists"
		}
	}
	if b, err := os.ReadFile(at("/proc/1/cgroup")); err == nil {
		for _, w := range []string{"docker", "kubepods", "containerd", "lxc", "libpod"} {
			if bytes.Contains(b, []byte(w)) {
				return "/proc/1/cgroup names " + w
			}
		}
	}
	return ""
}

// diagnoseKTLS names the first cause, in the order of KTLSDiagnosis.Cause,
// that explains what the facts show.
func diagnoseKTLS(f ktlsFacts) KTLSDiagnosis {
	d := KTLSDiagnosis{Facts: f.list()}
	keep := "; to keep it across reboots: echo tls | sudo tee /etc/modules-load.d/tls.conf"
	inContainer := ""
	if f.container != "" {
		inContainer = " This is a container (" + f.container + "): the kernel is the host's, so this is the host's to change."
	}
	switch {
	case f.ulp.State == stateAvailable:
		d.Cause = "available"
		d.Explanation = "the kernel attached the tls ULP to a socket: kTLS works for this process"
	case f.configTLS == "n":
		d.Cause = "no-config-tls"
		d.Explanation = "the kernel was built without CONFIG_TLS (" + f.configSource + "): it has no kTLS, built in or as a module, and no modprobe can add it"
		d.Fix = "run on a kernel built with CONFIG_TLS=m or =y (Debian's, Ubuntu's, Fedora's and RHEL's kernels have it as a module; some minimal VM and cloud kernels lack it), or rebuild this one with it." + inContainer +
			" Meanwhile ktls uses its userspace engine, which needs nothing from the kernel"
	case f.modulesDisabled && !f.ulpListed:
		d.Cause = "modules-disabled"
		d.Explanation = "the tls module is not loaded, and module loading is disabled (/proc/sys/kernel/modules_disabled is 1) until the next boot"
		d.Fix = "load tls at boot, before modules are disabled: echo tls | sudo tee /etc/modules-load.d/tls.conf, and reboot." + inContainer
	case f.container != "" && !f.ulpListed:
		d.Cause = "container"
		d.Explanation = "this is a container (" + f.container + "), which shares the host's kernel, and the host has not loaded the tls module; a container cannot load modules into the host's kernel (the kernel's own on-demand load needs CAP_NET_ADMIN in the host's namespace)"
		d.Fix = "on the host: sudo modprobe tls" + keep + ". The containers then get kTLS, with no privilege of their own"
	case f.ulpListed || f.configTLS == "y":
		d.Cause = "unknown"
		d.Explanation = "the kernel has the tls ULP (loaded or built in), and still refused it to this process (" + statusText(f.ulp) + "): a security policy (seccomp, an LSM) may forbid the setsockopt"
		d.Fix = "check the process's seccomp profile and the LSM's log (dmesg, audit.log) for TCP_ULP"
	case f.configTLS == "m" && f.modulesDir && !f.moduleFile && !f.builtin:
		d.Cause = "module-missing"
		d.Explanation = "the kernel has CONFIG_TLS=m, but /lib/modules/" + f.release + " has no tls.ko"
		d.Fix = "install this kernel's extra modules (Ubuntu: linux-modules-extra-" + f.release + "), then: sudo modprobe tls" + keep
	case f.netAdminKnown && !f.netAdmin:
		d.Cause = "not-loaded"
		d.Explanation = "the tls module is not loaded, and the kernel loads it on demand (request_module \"tcp-ulp-tls\") only for a process with CAP_NET_ADMIN (net/ipv4/tcp_ulp.c, __tcp_ulp_find_autoload); this process lacks it, as a server running as an ordinary user should"
		d.Fix = "load it once as root: sudo modprobe tls" + keep
	case f.netAdmin:
		d.Cause = "load-failed"
		d.Explanation = "this process has CAP_NET_ADMIN, so the kernel tried to load the tls module when asked for the ULP, and failed"
		d.Fix = "run sudo modprobe tls and read its error: a blacklist in /etc/modprobe.d, a module signature policy, or a module missing for this kernel (" + f.release + ")"
	default:
		d.Cause = "unknown"
		d.Explanation = "the tls ULP is missing for a reason the doctor cannot tell from what it can read (" + statusText(f.ulp) + ")"
		d.Fix = "try sudo modprobe tls and read its error, and dmesg"
	}
	return d
}

// list is the facts in words, each with where it came from.
func (f ktlsFacts) list() []string {
	var out []string
	add := func(s string) { out = append(out, s) }
	add("TCP_ULP \"tls\" probe: " + statusText(f.ulp))
	if f.configSource == "" {
		add("kernel configuration: unreadable (no /proc/config.gz, no /boot/config-" + f.release + ")")
	} else {
		add(f.configSource + ": CONFIG_TLS" + configWord(f.configTLS) + ", CONFIG_MODULES" + configWord(f.configModules))
	}
	if f.ulpListed {
		add("/proc/sys/net/ipv4/tcp_available_ulp lists tls: the module is loaded or built in")
	} else {
		add("/proc/sys/net/ipv4/tcp_available_ulp does not list tls")
	}
	switch {
	case f.release == "":
	case !f.modulesDir:
		add("/lib/modules/" + f.release + " is absent (no modules for this kernel here; in a container, the host's are not visible)")
	case f.builtin:
		add("/lib/modules/" + f.release + "/modules.builtin lists tls: built in")
	case f.moduleFile:
		add("/lib/modules/" + f.release + " has net/tls/tls.ko")
	default:
		add("/lib/modules/" + f.release + " has no net/tls/tls.ko")
	}
	if f.modulesDisabled {
		add("/proc/sys/kernel/modules_disabled is 1")
	}
	if f.container != "" {
		add("container: " + f.container)
	}
	if f.netAdminKnown {
		add("CAP_NET_ADMIN (/proc/self/status CapEff): " + yesNo(f.netAdmin))
	}
	return out
}

func configWord(v string) string {
	switch v {
	case "":
		return " absent"
	case "n":
		return " is not set"
	}
	return "=" + v
}

// ktlsDiagnosisHere diagnoses this host after the ULP probe.
func ktlsDiagnosisHere(ulp Status) *KTLSDiagnosis {
	if !hostIsLinux {
		return &KTLSDiagnosis{Cause: "not-linux", Explanation: "kTLS is Linux's; ktls uses its userspace engine here",
			Facts: []string{"TCP_ULP \"tls\" probe: " + statusText(ulp)}}
	}
	release, _, _ := uname()
	d := diagnoseKTLS(readKTLSFacts("/", release, ulp))
	return &d
}

// writeDiagnosis writes the diagnosis in the Kernel TLS section.
func writeDiagnosis(p func(string, ...any), d *KTLSDiagnosis) {
	if d == nil {
		return
	}
	p("  diagnosis\t%s: %s", d.Cause, d.Explanation)
	if d.Fix != "" {
		p("  what to do\t%s", d.Fix)
	}
	for i, f := range d.Facts {
		label := ""
		if i == 0 {
			label = "  read"
		}
		p("%s\t%s", label, f)
	}
}
