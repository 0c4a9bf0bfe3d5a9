package main

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/ktls-go/ktls/internal/netlink"
)

// The AEADs a TLS record layer would ask the kernel crypto API for
// (shared/reference/afalg-and-nic-offload.md, A.3): gcm(aes) with the whole
// 12-byte nonce (not rfc4106, whose AAD is laid out for ESP), and
// rfc7539(chacha20,poly1305).
var aeadNames = []struct{ name, serves string }{
	{"gcm(aes)", "AES-128-GCM, AES-256-GCM"},
	{"rfc7539(chacha20,poly1305)", "ChaCha20-Poly1305"},
}

// cryptoAlg is one registered implementation, from /proc/crypto or crypto
// netlink.
type cryptoAlg struct {
	name, driver, module string
	priority             int
	typ                  string // "aead", "skcipher", "larval", ...
	internal             bool
	// tested is CRYPTO_ALG_TESTED: "selftest: passed" in /proc/crypto.
	tested   bool
	flags    uint32
	hasFlags bool
}

// parseProcCrypto reads /proc/crypto (crypto/proc.c, c_show): records of
// "key : value" lines, one record per implementation, separated by blank
// lines.
func parseProcCrypto(r io.Reader) ([]cryptoAlg, error) {
	var algs []cryptoAlg
	var cur cryptoAlg
	inRecord := false
	flush := func() {
		if inRecord && cur.name != "" {
			algs = append(algs, cur)
		}
		cur, inRecord = cryptoAlg{tested: true}, false
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			flush()
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "name":
			flush()
			inRecord = true
			cur.name = value
		case "driver":
			cur.driver = value
		case "module":
			cur.module = value
		case "priority":
			n, err := strconv.Atoi(value)
			if err != nil {
				return algs, fmt.Errorf("/proc/crypto: %s: priority %q", cur.name, value)
			}
			cur.priority = n
		case "selftest":
			// CRYPTO_ALG_TESTED, "unknown" without it: such an
			// implementation is not handed out (crypto/api.c,
			// crypto_alg_lookup asks for CRYPTO_ALG_TESTED first).
			cur.tested = value == "passed"
		case "internal":
			cur.internal = value == "yes"
		case "type":
			cur.typ = value
		}
	}
	flush()
	return algs, sc.Err()
}

// The bits of cra_flags the doctor reads (include/linux/crypto.h).
const (
	cryptoAlgTypeMask       = 0x0000000f
	cryptoAlgLarval         = 0x00000010
	cryptoAlgDead           = 0x00000020
	cryptoAlgTested         = 0x00000400
	cryptoAlgKernDriverOnly = 0x00001000 // "hardware accelerated but not available to userspace via instruction set"
	cryptoAlgInternal       = 0x00002000
	cryptoAlgTypeAEAD       = 0x00000003
)

// crypto_user_alg (include/uapi/linux/cryptouser.h): three 64-byte names,
// then u32 type, mask, refcnt and flags.
const (
	cryptoMaxName     = 64
	sizeofCryptoUser  = 3*cryptoMaxName + 4*4
	cryptoMsgGetAlg   = 0x13 // CRYPTO_MSG_GETALG
	cryptocfgaPrioVal = 1    // CRYPTOCFGA_PRIORITY_VAL
)

// parseCryptoUserAlg reads one CRYPTO_MSG_GETALG reply: a crypto_user_alg
// and its attributes (crypto/crypto_user.c, crypto_report_one).
func parseCryptoUserAlg(b []byte) (cryptoAlg, error) {
	if len(b) < sizeofCryptoUser {
		return cryptoAlg{}, fmt.Errorf("crypto netlink: a reply of %d bytes, want at least %d", len(b), sizeofCryptoUser)
	}
	a := cryptoAlg{
		name:     netlink.CString(b[0:cryptoMaxName]),
		driver:   netlink.CString(b[cryptoMaxName : 2*cryptoMaxName]),
		module:   netlink.CString(b[2*cryptoMaxName : 3*cryptoMaxName]),
		flags:    binary.NativeEndian.Uint32(b[3*cryptoMaxName+12:]),
		hasFlags: true,
	}
	a.internal = a.flags&cryptoAlgInternal != 0
	a.tested = a.flags&cryptoAlgTested != 0
	switch {
	case a.flags&cryptoAlgLarval != 0:
		a.typ = "larval"
	case a.flags&cryptoAlgTypeMask == cryptoAlgTypeAEAD:
		a.typ = "aead"
	default:
		a.typ = fmt.Sprintf("type %#x", a.flags&cryptoAlgTypeMask)
	}
	if a.flags&cryptoAlgDead != 0 {
		a.typ = "dead"
	}
	attrs, err := netlink.ParseAttrs(b[netlink.Align(sizeofCryptoUser):])
	if err != nil {
		return a, err
	}
	for _, at := range attrs {
		if at.Type == cryptocfgaPrioVal {
			if p, ok := at.U32(); ok {
				a.priority = int(p)
			}
		}
	}
	return a, nil
}

// implementations returns the usable implementations of name, the one the
// kernel picks first: registered (not larval or dead), not internal, and
// not failed in its self-test, ordered by priority, highest first, as
// crypto/api.c's __crypto_alg_lookup chooses.
func implementations(algs []cryptoAlg, name string) []cryptoAlg {
	var out []cryptoAlg
	for _, a := range algs {
		if a.name != name || a.internal || !a.tested || a.typ == "larval" || a.typ == "dead" {
			continue
		}
		out = append(out, a)
	}
	slices.SortStableFunc(out, func(a, b cryptoAlg) int { return cmp.Compare(b.priority, a.priority) })
	return out
}

// Driver kinds.
const (
	kindCPU      = "cpu"
	kindHardware = "hardware"
	kindUnknown  = "unknown"
)

// hardwareDrivers are fragments of the driver names of crypto engines off
// the CPU that register AEADs or the ciphers under them
// (shared/reference/afalg-and-nic-offload.md, A.9, from the drivers'
// sources): NXP CAAM and DCP, ARM CryptoCell, Chelsio, AMD CCP, Inside
// Secure SafeXcel, IBM NX, TI OMAP and SA2UL, AMCC PPC4xx, Atmel, Axis
// ARTPEC, Broadcom iProc SPU, Intel Keem Bay and QAT, NVIDIA Tegra, ST
// STM32, Cavium Nitrox, Marvell OcteonTX CPT and CESA, HiSilicon SEC,
// Allwinner sun4i/sun8i, Rockchip, Qualcomm QCE, Samsung S5P/Exynos,
// Aspeed, Amlogic, Xilinx ZynqMP, StarFive, Freescale Talitos and SAHARA,
// virtio-crypto, Hifn, AMD Geode, Mediatek EIP-93. A fragment is matched
// against each part of the driver's name, so "ccp" matches "gcm-aes-ccp".
var hardwareDrivers = []string{
	"caam", "dcp", "ccree", "chcr", "ccp", "safexcel", "-nx", "nx-", "omap", "sa2ul",
	"ppc4xx", "crypto4xx", "atmel", "artpec", "iproc", "keembay", "qat", "tegra",
	"stm32", "n5_", "nitrox", "cpt", "mv-", "hisi", "sun4i", "sun8i", "rk-", "rockchip",
	"qce", "s5p", "exynos", "aspeed", "amlogic", "meson", "zynqmp", "xilinx",
	"starfive", "talitos", "sahara", "virtio", "hifn", "geode", "eip93", "mtk",
}

// cpuDrivers are fragments of the driver names of implementations that run
// on the CPU: generic C, the crypto library, and the instruction-set glue of
// x86 (AES-NI, AVX, VAES, CLMUL, SSSE3), arm64 and arm (Crypto Extensions
// "-ce", NEON), s390 (CPACF), powerpc (VMX, POWER8/10), RISC-V (vector
// crypto) and SPARC.
var cpuDrivers = []string{
	"vaes", "avx", "aesni", "clmul", "ssse3", "x86_64", "-ce", "neon", "simd", "arm64",
	"s390", "p8", "p10", "vmx", "riscv", "zvk", "sparc64", "padlock", "octeon", "mips",
	"generic", "-lib", "fixed-time",
}

// classify says whether an implementation runs on the CPU or on an engine
// off it, and what decided. With crypto netlink's flags,
// CRYPTO_ALG_KERN_DRIVER_ONLY ("hardware accelerated but not available to
// userspace via instruction set", include/linux/crypto.h) says hardware;
// not every hardware driver sets it (OcteonTX CPT does not), so the driver
// name lists come next, hardware first ("sun8i-ce" is a hardware engine,
// though "-ce" is arm's Crypto Extensions elsewhere). A template's driver
// name ("gcm_base(ctr(aes-generic),ghash-generic)") is judged by the
// implementations inside it: a template itself runs on the CPU.
func classify(a cryptoAlg) (kind, signal string) {
	if a.hasFlags && a.flags&cryptoAlgKernDriverOnly != 0 {
		return kindHardware, "flag CRYPTO_ALG_KERN_DRIVER_ONLY (crypto netlink)"
	}
	parts := driverParts(a.driver)
	for _, p := range parts {
		if f := match(p, hardwareDrivers); f != "" {
			return kindHardware, fmt.Sprintf("driver name %q is on the hardware list (%s)", p, f)
		}
	}
	var frags []string
	for _, p := range parts {
		f := match(p, cpuDrivers)
		if f == "" {
			if a.hasFlags {
				return kindCPU, fmt.Sprintf("no CRYPTO_ALG_KERN_DRIVER_ONLY flag (crypto netlink); driver name %q is on neither list", p)
			}
			return kindUnknown, fmt.Sprintf("driver name %q is on neither the CPU nor the hardware list", p)
		}
		if !slices.Contains(frags, f) {
			frags = append(frags, f)
		}
	}
	if len(parts) == 0 {
		return kindUnknown, "no driver name"
	}
	signal = fmt.Sprintf("driver name on the CPU list (%s)", strings.Join(frags, ", "))
	if a.hasFlags {
		signal = "no CRYPTO_ALG_KERN_DRIVER_ONLY flag (crypto netlink); " + signal
	}
	return kindCPU, signal
}

// driverParts returns the implementations named in a driver name: the name
// itself, or, for a template instance, the innermost names
// ("gcm_base(ctr(aes-generic),ghash-generic)": aes-generic, ghash-generic).
func driverParts(driver string) []string {
	var parts []string
	for _, f := range strings.FieldsFunc(driver, func(r rune) bool { return r == ',' || r == ')' }) {
		// Whatever precedes a "(" is a template's name.
		if i := strings.LastIndexByte(f, '('); i >= 0 {
			f = f[i+1:]
		}
		if f = strings.TrimSpace(f); f != "" {
			parts = append(parts, f)
		}
	}
	return parts
}

// match returns the first fragment of list found in name ("-ce" only at the
// end or before another "-"), or "".
func match(name string, list []string) string {
	name = strings.ToLower(name)
	for _, f := range list {
		i := strings.Index(name, f)
		if i < 0 {
			continue
		}
		if f == "-ce" || f == "-lib" {
			rest := name[i+len(f):]
			if rest != "" && rest[0] != '-' && rest[0] != '_' {
				continue
			}
		}
		return f
	}
	return ""
}

// driverOf turns an implementation into the report's Driver.
func driverOf(a cryptoAlg) Driver {
	d := Driver{Driver: a.driver, Module: a.module, Priority: a.priority}
	if a.hasFlags {
		f := a.flags
		d.Flags = &f
	}
	d.Kind, d.Signal = classify(a)
	return d
}
