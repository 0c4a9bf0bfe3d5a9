// Package cpufacts reads what the processor offers the engines' AES-GCM,
// for the selector and for ktls doctor, so that both say the same. Its CPU
// is the selector's (selector.CPU is an alias of it): the type lives here,
// below the selector, so that this room imports no room above it
// (docs/ARCHITECTURE.md, Rooms).
//
// Two sources, because two parties decide. The kernel's AES-GCM drivers use
// the CPU's instructions whenever they are there; github.com/klauspost/cpuid
// reports them as the CPU does (CPUID on x86, the kernel's HWCAP bits on
// arm64 Linux), including the bare VAES and VPCLMULQDQ bits that
// golang.org/x/sys/cpu only shows with AVX-512. Go's own AES-GCM, which the
// userspace and stdlib engines run, follows golang.org/x/sys/cpu's view,
// which is internal/cpu's: the same instructions, minus what GODEBUG=cpu.X=off
// turns off, and only on the architectures where Go has assembly for them.
package cpufacts

import (
	"runtime"

	"github.com/klauspost/cpuid/v2"
	"golang.org/x/sys/cpu"
)

// CPU is what the selector knows of the processor. Two facts, because the
// kernel and Go decide apart: the kernel's AES-GCM drivers (aesni_intel on
// x86, aes-ce and ghash-ce on arm64) use the instructions whenever the CPU
// has them, while Go's own AES-GCM, which the userspace and stdlib engines
// run, uses them only where it has assembly for them and GODEBUG does not
// turn them off (crypto/tls's hasAESGCMHardwareSupport: not on 386, not
// with GODEBUG=cpu.aes=off).
type CPU struct {
	// Arch is the GOARCH the program runs as.
	Arch string
	// AESGCM says the CPU has the instructions AES-GCM needs to be fast and
	// constant-time, as cpuid reports them: AES-NI and PCLMULQDQ on x86, the
	// ARMv8 AES and PMULL instructions on arm64, CPACF's AES and GHASH on
	// s390x.
	AESGCM bool
	// GoAESGCM says Go's AES-GCM runs on them here.
	GoAESGCM bool
}

// Detect returns the facts for the selector. It reads variables filled once
// at program start and costs a few loads.
func Detect() CPU {
	return CPU{Arch: runtime.GOARCH, AESGCM: cpuAESGCM(), GoAESGCM: goAESGCM()}
}

// cpuAESGCM says the CPU has the instructions AES-GCM needs: AES and a
// carry-less multiply for GHASH.
func cpuAESGCM() bool {
	switch runtime.GOARCH {
	case "amd64", "386":
		return cpuid.CPU.Supports(cpuid.AESNI, cpuid.CLMUL)
	case "arm64":
		return cpuid.CPU.Supports(cpuid.AESARM, cpuid.PMULL)
	case "s390x":
		// cpuid knows x86 and ARM only; CPACF's facilities come from the
		// STFLE/KM/KIMD queries x/sys/cpu makes.
		return cpu.S390X.HasAES && cpu.S390X.HasAESCTR && cpu.S390X.HasGHASH
	}
	return false
}

// goAESGCM says whether Go's AES-GCM runs on instructions made for it here:
// the condition crypto/tls itself uses to prefer AES-GCM over
// ChaCha20-Poly1305 (crypto/tls/cipher_suites.go, hasAESGCMHardwareSupport):
// AES-NI with PCLMULQDQ on amd64, AES with PMULL on arm64, CPACF's AES, CTR
// and GHASH on s390x, and always on ppc64/ppc64le. 386 reports AES-NI but Go
// has no assembly for it there.
func goAESGCM() bool {
	switch runtime.GOARCH {
	case "amd64":
		return cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ
	case "arm64":
		return cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	case "s390x":
		return cpu.S390X.HasAES && cpu.S390X.HasAESCTR && cpu.S390X.HasGHASH
	case "ppc64", "ppc64le":
		return true
	}
	return false
}

// Feature is one CPU feature the doctor lists.
type Feature struct {
	Name    string
	Present bool
}

// Features lists the instructions that matter to the engines' crypto on
// this architecture, as cpuid reports them (x/sys/cpu's on s390x); nil
// where neither knows the architecture.
func Features() []Feature {
	var fs []Feature
	add := func(name string, id cpuid.FeatureID) {
		fs = append(fs, Feature{name, cpuid.CPU.Supports(id)})
	}
	switch runtime.GOARCH {
	case "amd64", "386":
		add("AES-NI", cpuid.AESNI)
		add("PCLMULQDQ", cpuid.CLMUL)
		add("AVX2", cpuid.AVX2)
		add("AVX-512F", cpuid.AVX512F)
		add("VAES", cpuid.VAES)
		add("VPCLMULQDQ", cpuid.VPCLMULQDQ)
		add("SHA-NI", cpuid.SHA)
	case "arm64":
		add("ASIMD", cpuid.ASIMD)
		add("AES", cpuid.AESARM)
		add("PMULL", cpuid.PMULL)
		add("SHA1", cpuid.SHA1)
		add("SHA2", cpuid.SHA2)
		add("SHA3", cpuid.SHA3)
	case "s390x":
		fs = append(fs, Feature{"AES (KM)", cpu.S390X.HasAES}, Feature{"AES-CTR (KMCTR)", cpu.S390X.HasAESCTR},
			Feature{"AES-GCM (KMA)", cpu.S390X.HasAESGCM}, Feature{"GHASH (KIMD)", cpu.S390X.HasGHASH})
	}
	return fs
}
