package main

import (
	"debug/elf"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestArchSelectors(t *testing.T) {
	for flag, want := range map[string][]string{
		"amd64,arm64":    {"amd64", "arm64"},
		"all":            {"amd64", "arm64"},
		"arm64":          {"arm64"},
		" arm64 , amd64": {"arm64", "amd64"},
		"arm64,all":      {"arm64", "amd64"},
		"amd64,amd64":    {"amd64"},
	} {
		got, err := archSelectors(flag)
		if err != nil || !slices.Equal(archNames(got), want) {
			t.Errorf("archSelectors(%q) = %v, %v; want %v", flag, archNames(got), err, want)
		}
	}
	for _, bad := range []string{"", "x86_64", "aarch64", "arm64,", "riscv64"} {
		if got, err := archSelectors(bad); err == nil {
			t.Errorf("archSelectors(%q) = %v, want an error", bad, archNames(got))
		}
	}
}

func TestSelectorsFor(t *testing.T) {
	sels := []string{"6.1", "6.12.94+deb13-cloud-amd64", "newest", "6.1.0-47-cloud-arm64"}
	if got, want := selectorsFor(archAMD64, sels), []string{"6.1", "6.12.94+deb13-cloud-amd64", "newest"}; !slices.Equal(got, want) {
		t.Errorf("amd64: %v, want %v", got, want)
	}
	if got, want := selectorsFor(archARM64, sels), []string{"6.1", "newest", "6.1.0-47-cloud-arm64"}; !slices.Equal(got, want) {
		t.Errorf("arm64: %v, want %v", got, want)
	}
	if got := selectorsFor(archARM64, []string{"6.12.94+deb13-cloud-amd64"}); len(got) != 0 {
		t.Errorf("arm64 for an amd64 release: %v, want none", got)
	}
}

func TestKernelNames(t *testing.T) {
	// The amd64 names are those CI has always read.
	for _, tc := range []struct {
		ga   *guestArch
		want string
	}{
		{archAMD64, "linux-6.1: 96 passed, 0 failed"},
		{archARM64, "linux-arm64-6.1: 96 passed, 0 failed"},
	} {
		r := newKernelResult(kernel{arch: tc.ga, name: tc.ga.kernelName("6.1")}, nonce, nil)
		r.programs[0].pass, r.programs[0].began, r.programs[0].ended = 96, true, true
		r.done = true
		if got := r.closingLine(); got != tc.want {
			t.Errorf("%s: closing line %q, want %q", tc.ga.name, got, tc.want)
		}
	}
}

// argAfter returns the argument that follows the first flag in args.
func argAfter(args []string, flag string) (string, bool) {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return "", false
	}
	return args[i+1], true
}

func TestQemuArgs(t *testing.T) {
	for _, tc := range []struct {
		ga               *guestArch
		machine, console string
		fwCfg            bool
	}{
		{archAMD64, "", "console=ttyS0 ", true},
		{archARM64, "virt", "console=ttyAMA0 ", false},
	} {
		k := kernel{arch: tc.ga, name: tc.ga.kernelName("6.1"), image: "/k/vmlinuz"}
		args := qemuArgs(k, "/r/initrd", bootConfig{accel: tc.ga.accel, cpu: tc.ga.cpu, memMiB: 2048, cpus: 2, cmdline: "tls.debug=1"})
		joined := strings.Join(args, " ")
		if m, ok := argAfter(args, "-machine"); m != tc.machine || ok != (tc.machine != "") {
			t.Errorf("%s: -machine %q, want %q: %s", tc.ga.name, m, tc.machine, joined)
		}
		if got := strings.Contains(joined, "etc/sercon-port"); got != tc.fwCfg {
			t.Errorf("%s: SeaBIOS's fw_cfg %v, want %v: %s", tc.ga.name, got, tc.fwCfg, joined)
		}
		for flag, want := range map[string]string{
			"-cpu": tc.ga.cpu, "-accel": tc.ga.accel, "-m": "2048M", "-smp": "2",
			"-kernel": "/k/vmlinuz", "-initrd": "/r/initrd", "-nic": "none",
		} {
			if got, _ := argAfter(args, flag); got != want {
				t.Errorf("%s: %s %q, want %q", tc.ga.name, flag, got, want)
			}
		}
		cmdline, _ := argAfter(args, "-append")
		if !strings.HasPrefix(cmdline, tc.console) || !strings.Contains(cmdline, "oops=panic") || !strings.HasSuffix(cmdline, " tls.debug=1") {
			t.Errorf("%s: kernel command line %q", tc.ga.name, cmdline)
		}
		// Two calls must not share the architecture's slice.
		args[0] = "changed"
		if tc.ga.machineArgs[0] == "changed" {
			t.Fatalf("%s: qemuArgs returned the architecture's own machineArgs", tc.ga.name)
		}
	}
}

func TestGoEnv(t *testing.T) {
	for _, ga := range allArches {
		env := goEnv(ga)
		if !slices.Contains(env, "GOARCH="+ga.name) || !slices.Contains(env, "CGO_ENABLED=0") || !slices.Contains(env, "GOOS=linux") {
			t.Errorf("%s: goEnv = %v", ga.name, env)
		}
	}
}

func TestArchModules(t *testing.T) {
	// Excerpt of the modules.dep of Debian's arm64 6.1 cloud kernel
	// (linux-image-6.1.0-50-cloud-arm64-unsigned).
	const modulesDep61ARM64 = `kernel/arch/arm64/crypto/ghash-ce.ko: kernel/crypto/gf128mul.ko
kernel/arch/arm64/crypto/aes-ce-cipher.ko:
kernel/arch/arm64/crypto/aes-ce-ccm.ko: kernel/arch/arm64/crypto/aes-ce-cipher.ko
kernel/arch/arm64/crypto/aes-ce-blk.ko: kernel/arch/arm64/crypto/aes-ce-cipher.ko
kernel/arch/arm64/crypto/chacha-neon.ko: kernel/lib/crypto/libchacha.ko
kernel/arch/arm64/crypto/poly1305-neon.ko:
kernel/crypto/gf128mul.ko:
kernel/crypto/gcm.ko:
kernel/crypto/af_alg.ko:
kernel/crypto/algif_aead.ko: kernel/crypto/af_alg.ko
kernel/lib/crypto/libchacha.ko:
kernel/net/tls/tls.ko:
`
	md, err := parseModulesDep(strings.NewReader(modulesDep61ARM64))
	if err != nil {
		t.Fatal(err)
	}
	order, absent, err := md.closure(slices.Concat(wantedModules, archARM64.modules))
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, md, order)
	want := []string{
		"kernel/net/tls/tls.ko", "kernel/crypto/af_alg.ko", "kernel/crypto/algif_aead.ko",
		"kernel/arch/arm64/crypto/aes-ce-cipher.ko", "kernel/arch/arm64/crypto/aes-ce-blk.ko",
		"kernel/crypto/gf128mul.ko", "kernel/arch/arm64/crypto/ghash-ce.ko",
		"kernel/arch/arm64/crypto/aes-ce-ccm.ko",
		"kernel/lib/crypto/libchacha.ko", "kernel/arch/arm64/crypto/chacha-neon.ko",
		"kernel/arch/arm64/crypto/poly1305-neon.ko",
	}
	if !slices.Equal(order, want) || len(absent) != 0 {
		t.Errorf("order =\n%v\nwant\n%v\nabsent %v", order, want, absent)
	}
	// The x86 drivers are not asked of an arm64 kernel, nor the other way.
	for _, m := range archAMD64.modules {
		if slices.Contains(archARM64.modules, m) {
			t.Errorf("%s is wanted on both architectures", m)
		}
	}
}

func TestHostNeeds(t *testing.T) {
	pkgs := func(needs []hostNeed) []string {
		var out []string
		for _, n := range needs {
			out = append(out, n.pkg)
		}
		return out
	}
	native, foreign := archAMD64, archARM64
	if archARM64.native() {
		native, foreign = archARM64, archAMD64
	}
	got := pkgs(hostNeeds([]*guestArch{foreign}))
	if !slices.Contains(got, foreign.qemuPkg) || slices.Contains(got, native.qemuPkg) || slices.Contains(got, "busybox-static") {
		t.Errorf("%s only: %v; want %s and no busybox-static", foreign.name, got, foreign.qemuPkg)
	}
	// The peers are needed either way: a foreign architecture takes the
	// packages of the host's.
	for _, p := range []string{"openssl", "gnutls-bin", "curl", "kmod", "xz-utils"} {
		if !slices.Contains(got, p) {
			t.Errorf("%s only: %v lacks %s", foreign.name, got, p)
		}
	}
	got = pkgs(hostNeeds(allArches))
	for _, p := range []string{"qemu-system-x86", "qemu-system-arm", "busybox-static"} {
		if !slices.Contains(got, p) {
			t.Errorf("all: %v lacks %s", got, p)
		}
	}
}

func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	mk := func(p, content string) {
		t.Helper()
		must(t, os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, p), []byte(content), 0o644))
	}
	ln := func(p, target string) {
		t.Helper()
		must(t, os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755))
		must(t, os.Symlink(target, filepath.Join(root, p)))
	}
	// As in Debian's arm64 libc6 and libgnutls30: an absolute link that
	// must be read inside the tree, and a relative one.
	mk("lib/aarch64-linux-gnu/ld-linux-aarch64.so.1", "ld")
	ln("lib/ld-linux-aarch64.so.1", "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1")
	mk("usr/lib/aarch64-linux-gnu/libgnutls.so.30.34.3", "gnutls")
	ln("usr/lib/aarch64-linux-gnu/libgnutls.so.30", "libgnutls.so.30.34.3")
	ln("lib64", "usr/lib64")

	for p, want := range map[string]string{
		"/lib/ld-linux-aarch64.so.1":                   "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
		"/usr/lib/aarch64-linux-gnu/libgnutls.so.30":   "/usr/lib/aarch64-linux-gnu/libgnutls.so.30.34.3",
		"/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1": "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
	} {
		if got, err := resolveIn(root, p); err != nil || got != want {
			t.Errorf("resolveIn(%s) = %q, %v; want %q", p, got, err, want)
		}
	}
	if got, err := resolveIn(root, "/lib64/x"); err == nil {
		t.Errorf("resolveIn through a dangling link = %q, want an error", got)
	}
	dirs := archARM64.libDirs()
	if got, ok := findLibrary(root, "libgnutls.so.30", dirs); !ok || got != "/usr/lib/aarch64-linux-gnu/libgnutls.so.30" {
		t.Errorf("findLibrary(libgnutls.so.30) = %q, %v", got, ok)
	}
	if got, ok := findLibrary(root, "ld-linux-aarch64.so.1", dirs); !ok || got != "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1" {
		t.Errorf("findLibrary(ld-linux-aarch64.so.1) = %q, %v", got, ok)
	}
	if got, ok := findLibrary(root, "libnope.so.1", dirs); ok {
		t.Errorf("findLibrary(libnope.so.1) = %q", got)
	}

	// The archive gets the links as links, and what they point to, at the
	// paths they have in the tree.
	a := newArchive()
	real, err := a.addRootedPath(root, "/lib/ld-linux-aarch64.so.1", 0)
	must(t, err)
	if real != "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1" {
		t.Errorf("addRootedPath = %q", real)
	}
	if e := a.entries["lib/ld-linux-aarch64.so.1"]; e == nil || e.mode&sIFMT != sIFLNK || e.target != "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1" {
		t.Errorf("the link: %+v", e)
	}
	if e := a.entries["lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"]; e == nil || e.src != filepath.Join(root, "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1") {
		t.Errorf("the file: %+v", e)
	}
}

func TestElfDepsMachine(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	other := elf.EM_AARCH64
	if f, err := elf.Open(exe); err == nil {
		if f.Machine == elf.EM_AARCH64 {
			other = elf.EM_X86_64
		}
		f.Close()
	}
	if _, _, err := elfDeps(exe, other); err == nil || !strings.Contains(err.Error(), "is for") {
		t.Errorf("elfDeps of the test binary as %v: err = %v, want a wrong-machine error", other, err)
	}
}

// TestPackageTimeout: the measured packages get twice their measured time
// where that is more than the architecture's default, the others the
// default.
func TestPackageTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    *guestArch
		want time.Duration
	}{
		{".", archAMD64, 530 * time.Second},
		{".", archARM64, 530 * time.Second},
		{"backend/kernel", archAMD64, 310 * time.Second},
		{"backend/kernel", archARM64, 8 * time.Minute},
		{"conn", archAMD64, 4 * time.Minute},
		{"conn", archARM64, 8 * time.Minute},
		{"selector", archAMD64, 4 * time.Minute},
	} {
		if got := packageTimeout(tc.name, tc.a); got != tc.want {
			t.Errorf("packageTimeout(%q, %s) = %v, want %v", tc.name, tc.a.name, got, tc.want)
		}
		if got := packageTimeout(tc.name, tc.a); got < 2*measured[tc.name] {
			t.Errorf("%q on %s: %v is less than twice the measured %v", tc.name, tc.a.name, got, measured[tc.name])
		}
	}
}

// TestGuestLimit: a guest holds twice the measured time of every package it
// runs and otherBinaries for the rest, and at least the architecture's
// default.
func TestGuestLimit(t *testing.T) {
	all := []string{".", "backend/kernel", "interop", "conn", "selector"}
	for _, tc := range []struct {
		names []string
		a     *guestArch
		want  time.Duration
	}{
		{all, archAMD64, 1210*time.Second + otherBinaries},
		{all, archARM64, 1210*time.Second + otherBinaries},
		{[]string{"conn", "selector"}, archAMD64, 10 * time.Minute},
		{[]string{"conn", "selector"}, archARM64, 20 * time.Minute},
	} {
		if got := guestLimit(tc.names, tc.a); got != tc.want {
			t.Errorf("guestLimit(%q, %s) = %v, want %v", tc.names, tc.a.name, got, tc.want)
		}
		var longest time.Duration
		for _, name := range tc.names {
			longest = max(longest, packageTimeout(name, tc.a))
		}
		if got := guestLimit(tc.names, tc.a); got < longest {
			t.Errorf("guestLimit(%q, %s) = %v, less than its longest binary's %v", tc.names, tc.a.name, got, longest)
		}
	}
}
