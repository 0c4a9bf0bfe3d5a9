package main

import (
	"debug/elf"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// guestArch is an architecture of the guests: the Debian kernel flavour
// booted for it, how qemu emulates it, and the crypto drivers its kernels
// bring. Everything else (the kernel series, the tests, the self-check) is
// the same on every architecture.
type guestArch struct {
	// name is both GOARCH and the Debian architecture: "amd64", "arm64".
	name string
	// triplet is Debian's multiarch directory, e.g. "aarch64-linux-gnu": the
	// libraries of a foreign architecture's peers lie under lib/<triplet>
	// and usr/lib/<triplet>.
	triplet string
	// elfMachine is the e_machine of the architecture's ELF files.
	elfMachine elf.Machine
	// flavour is the Debian kernel flavour, "cloud-<arch>": the cloud kernels
	// are small and have kTLS and AF_ALG as modules (README.md).
	flavour string
	// prefix starts the kernel's name in output lines: "linux-" on amd64,
	// so the names that CI reads ("linux-6.1: N passed, N failed") did not
	// change when arm64 came, and "linux-arm64-" on the others.
	prefix string
	// qemu is the system emulator and qemuPkg the Debian package that has it.
	qemu, qemuPkg string
	// accel and cpu are the defaults of qemu's -accel and -cpu, console the
	// kernel's console.
	accel, cpu, console string
	// machineArgs are the rest of qemu's command line for the architecture:
	// the board and its firmware.
	machineArgs []string
	// testTimeout and timeout are the defaults of -test-timeout (one test
	// binary) and -timeout (one guest). arm64 under TCG runs the suite
	// about as fast as amd64, but slows down more under load: its root
	// package took 193 s of amd64's 240 s limit in one loaded run
	// (README.md, Timings), so it gets twice the time.
	testTimeout, timeout time.Duration
	// modules are the architecture's crypto drivers that kTLS and AF_ALG
	// pick, loaded besides wantedModules and wantedAliases (modules.go).
	modules []string
}

// measured is the longest a package's tests took in a guest under TCG, on the
// loaded 2-core development machine, for the packages that take long enough
// to matter: each gets twice that (packageTimeout) where that is more than
// the architecture's default, so that a loaded CI machine does not fail a
// correct tree, and a guest holds twice the sum (guestLimit). Keys are the
// plan's test names (package paths relative to the module root).
var measured = map[string]time.Duration{
	// One amd64 6.12 guest with the whole module, test binaries being
	// built on the same 2 cores (687 s from boot to power-off), after the
	// root package's behaviour, engine and interop tests moved to their
	// packages (issue 14): the root package 263 s (TestFaultsUnderLoad
	// 202 s of it); backend/kernel 153 s (TestKernelSendfile 106 s);
	// interop 96 s; conn 81 s. The root package alone had taken 490 s
	// before the move, with both architectures' guests running at once.
	".":              265 * time.Second,
	"backend/kernel": 155 * time.Second,
	"interop":        100 * time.Second,
	"conn":           85 * time.Second,
	// Three tests that each start nfsd and wait out its 10 s grace
	// period (interop/nfs): 41 s in an amd64 6.12 guest with other
	// guests on the same cores, 39 s in an arm64 one.
	"interop/nfs": 45 * time.Second,
	// ktls proxy against crypto/tls, OpenSSL and curl in both modes:
	// 40 s in an amd64 6.12 guest, 180 s in an arm64 7.3 one with other
	// guests on the same cores.
	"proxy": 180 * time.Second,
	// Not here, being far below every default: ktlsgrpc (a nested
	// module), 6.0 s in an amd64 7.3 guest.
}

// otherBinaries is what a guest allows for the binaries of the packages not
// in measured: together they took about 85 s in that run, so 5 min is a
// margin of more than 3x.
const otherBinaries = 5 * time.Minute

// packageTimeout is the -test.timeout of a package's binary: twice its
// measured time, and at least the architecture's default.
func packageTimeout(name string, a *guestArch) time.Duration {
	return max(a.testTimeout, 2*measured[name])
}

// guestLimit is the -timeout of a guest that runs the named packages with
// the default -test-timeout: twice the measured time of each package that
// has one and otherBinaries for the rest, and at least the architecture's
// default.
func guestLimit(names []string, a *guestArch) time.Duration {
	limit := otherBinaries
	for _, name := range names {
		limit += 2 * measured[name]
	}
	return max(a.timeout, limit)
}

var (
	// amd64: see qemu.go for why not plain -cpu max and why one thread.
	archAMD64 = &guestArch{
		name:    "amd64",
		triplet: "x86_64-linux-gnu", elfMachine: elf.EM_X86_64,
		flavour: "cloud-amd64",
		prefix:  "linux-",
		qemu:    "qemu-system-x86_64", qemuPkg: "qemu-system-x86",
		accel: defaultAccel, cpu: defaultCPU, console: "ttyS0",
		testTimeout: 4 * time.Minute, timeout: 10 * time.Minute,
		// qemu's default PC board; keep SeaBIOS off the serial console: its
		// banner and screen clearing only clutter the output.
		machineArgs: []string{"-fw_cfg", "name=etc/sercon-port,string=0"},
		modules: []string{
			"aesni-intel", "ghash-clmulni-intel", // the x86 gcm(aes) drivers that kTLS picks
			"chacha-x86_64", "poly1305-x86_64", // and the x86 ChaCha20-Poly1305 parts
		},
	}
	// arm64: qemu's "virt" board needs no firmware with -kernel, and its
	// PL011 UART is ttyAMA0. -cpu max has the ARMv8 Crypto Extensions (AES,
	// PMULL), so gcm(aes) is served by gcm-aes-ce as on real arm64 servers
	// (README.md); see qemu.go for pauth-impdef.
	archARM64 = &guestArch{
		name:    "arm64",
		triplet: "aarch64-linux-gnu", elfMachine: elf.EM_AARCH64,
		flavour: "cloud-arm64",
		prefix:  "linux-arm64-",
		qemu:    "qemu-system-aarch64", qemuPkg: "qemu-system-arm",
		accel: defaultAccelARM64, cpu: defaultCPUARM64, console: "ttyAMA0",
		testTimeout: 8 * time.Minute, timeout: 20 * time.Minute,
		machineArgs: []string{"-machine", "virt"},
		modules: []string{
			"aes-ce-cipher", "aes-ce-blk", "ghash-ce", // the Crypto Extensions drivers: aes, ctr(aes), gcm(aes)
			"aes-ce-ccm",                   // and ccm(aes), which modprobe would load for "crypto-ccm(aes)"
			"chacha-neon", "poly1305-neon", // and the NEON ChaCha20-Poly1305 parts
		},
	}
	allArches = []*guestArch{archAMD64, archARM64}
)

// native reports whether the guests' architecture is the host's: then the
// peers and busybox are the host's own programs; for another architecture
// they come from that architecture's Debian packages (peers.go).
func (a *guestArch) native() bool { return a.name == runtime.GOARCH }

// libDirs are the directories in which the dynamic loader of Debian's glibc
// looks for libraries when there is no ld.so.cache, as in the guests: the
// multiarch directories first, then the plain ones.
func (a *guestArch) libDirs() []string {
	return []string{"/lib/" + a.triplet, "/usr/lib/" + a.triplet, "/lib", "/usr/lib"}
}

// nativeArch returns the guest architecture that is the host's, or nil.
func nativeArch() *guestArch {
	i := slices.IndexFunc(allArches, (*guestArch).native)
	if i < 0 {
		return nil
	}
	return allArches[i]
}

// kernelName is a kernel's name in output lines: "linux-6.1",
// "linux-arm64-6.1".
func (a *guestArch) kernelName(series string) string { return a.prefix + series }

// archSelectors expands the -arch flag: a comma list of architectures, or
// "all", in the order given, each once.
func archSelectors(flag string) ([]*guestArch, error) {
	var out []*guestArch
	add := func(a *guestArch) {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, s := range strings.Split(flag, ",") {
		s = strings.TrimSpace(s)
		if s == "all" {
			for _, a := range allArches {
				add(a)
			}
			continue
		}
		i := slices.IndexFunc(allArches, func(a *guestArch) bool { return a.name == s })
		if i < 0 {
			return nil, fmt.Errorf("vmtest: -arch %q: want %s or all, comma separated", s, strings.Join(archNames(allArches), ", "))
		}
		add(allArches[i])
	}
	return out, nil
}

func archNames(as []*guestArch) []string {
	var names []string
	for _, a := range as {
		names = append(names, a.name)
	}
	return names
}

// selectorsFor returns the -kernel selectors that apply to a: all of them
// but the exact release names of another architecture's flavour, so that
// `-kernel 6.12.94+deb13-cloud-amd64` pins that kernel without asking the
// other architectures for it.
func selectorsFor(a *guestArch, sels []string) []string {
	var out []string
	for _, s := range sels {
		other := slices.ContainsFunc(allArches, func(b *guestArch) bool {
			return b != a && strings.HasSuffix(s, "-"+b.flavour)
		})
		if !other {
			out = append(out, s)
		}
	}
	return out
}
