package afalg

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

// This file is the one place of the module that knows which of the kernel's
// implementations of an algorithm runs where: it reads /proc/crypto and the
// crypto netlink dump, picks the implementation the kernel would hand out,
// and classifies it as the CPU's or a hardware engine's. The engine asks it
// (Hardware), and so does `ktls doctor`. It is portable, so that its tests
// run everywhere on captured input; reading the live kernel is in
// afalg_linux.go.

// Implementation is one registered implementation of an algorithm of the
// kernel crypto API, from /proc/crypto or crypto netlink
// (docs/ARCHITECTURE.md, AF_ALG).
type Implementation struct {
	Name   string // cra_name: "gcm(aes)"
	Driver string // cra_driver_name: "generic-gcm-aesni", "gcm-aes-caam"
	Module string // "kernel" when built in
	// Priority decides among implementations of one name: the highest
	// wins (crypto/api.c, __crypto_alg_lookup).
	Priority int
	// Type is "aead", "skcipher", ..., "larval" (a template being
	// instantiated) or "dead".
	Type string
	// Internal is CRYPTO_ALG_INTERNAL ("internal: yes"): a helper the
	// kernel never hands out by name.
	Internal bool
	// Tested is CRYPTO_ALG_TESTED ("selftest: passed"): without it, the
	// implementation is not handed out (crypto/api.c, crypto_alg_lookup
	// asks for CRYPTO_ALG_TESTED first).
	Tested bool
	// Flags are cra_flags, from crypto netlink only (HasFlags).
	Flags    uint32
	HasFlags bool
}

// The bits of cra_flags read here (include/linux/crypto.h).
const (
	flagTypeMask = 0x0000000f
	flagLarval   = 0x00000010
	flagDead     = 0x00000020
	flagTested   = 0x00000400
	// FlagKernDriverOnly is CRYPTO_ALG_KERN_DRIVER_ONLY, "hardware
	// accelerated but not available to userspace via instruction set"
	// (include/linux/crypto.h): the flag a hardware engine's driver sets.
	FlagKernDriverOnly = 0x00001000
	flagInternal       = 0x00002000
	flagTypeAEAD       = 0x00000003
)

// ParseProcCrypto reads /proc/crypto (crypto/proc.c, c_show): records of
// "key : value" lines, one record per implementation, separated by blank
// lines.
func ParseProcCrypto(r io.Reader) ([]Implementation, error) {
	var algs []Implementation
	var cur Implementation
	inRecord := false
	flush := func() {
		if inRecord && cur.Name != "" {
			algs = append(algs, cur)
		}
		cur, inRecord = Implementation{Tested: true}, false
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
			cur.Name = value
		case "driver":
			cur.Driver = value
		case "module":
			cur.Module = value
		case "priority":
			n, err := strconv.Atoi(value)
			if err != nil {
				return algs, fmt.Errorf("afalg: /proc/crypto: %s: priority %q", cur.Name, value)
			}
			cur.Priority = n
		case "selftest":
			cur.Tested = value == "passed"
		case "internal":
			cur.Internal = value == "yes"
		case "type":
			cur.Type = value
		}
	}
	flush()
	return algs, sc.Err()
}

// crypto_user_alg (include/uapi/linux/cryptouser.h): three 64-byte names,
// then u32 type, mask, refcnt and flags.
const (
	cryptoMaxName     = 64
	sizeofCryptoUser  = 3*cryptoMaxName + 4*4
	cryptoMsgGetAlg   = 0x13 // CRYPTO_MSG_GETALG
	cryptocfgaPrioVal = 1    // CRYPTOCFGA_PRIORITY_VAL
)

// ParseCryptoUserAlg reads one CRYPTO_MSG_GETALG reply: a crypto_user_alg
// and its attributes (crypto/crypto_user.c, crypto_report_one).
func ParseCryptoUserAlg(b []byte) (Implementation, error) {
	if len(b) < sizeofCryptoUser {
		return Implementation{}, fmt.Errorf("afalg: crypto netlink: a reply of %d bytes, want at least %d", len(b), sizeofCryptoUser)
	}
	a := Implementation{
		Name:     netlink.CString(b[0:cryptoMaxName]),
		Driver:   netlink.CString(b[cryptoMaxName : 2*cryptoMaxName]),
		Module:   netlink.CString(b[2*cryptoMaxName : 3*cryptoMaxName]),
		Flags:    binary.NativeEndian.Uint32(b[3*cryptoMaxName+12:]),
		HasFlags: true,
	}
	a.Internal = a.Flags&flagInternal != 0
	a.Tested = a.Flags&flagTested != 0
	switch {
	case a.Flags&flagLarval != 0:
		a.Type = "larval"
	case a.Flags&flagTypeMask == flagTypeAEAD:
		a.Type = "aead"
	default:
		a.Type = fmt.Sprintf("type %#x", a.Flags&flagTypeMask)
	}
	if a.Flags&flagDead != 0 {
		a.Type = "dead"
	}
	attrs, err := netlink.ParseAttrs(b[netlink.Align(sizeofCryptoUser):])
	if err != nil {
		return a, fmt.Errorf("afalg: crypto netlink: %w", err)
	}
	for _, at := range attrs {
		if at.Type == cryptocfgaPrioVal {
			if p, ok := at.U32(); ok {
				a.Priority = int(p)
			}
		}
	}
	return a, nil
}

// Registry is what the kernel crypto API had registered when it was read.
type Registry struct {
	Algs []Implementation
	// Source is where they were read: "crypto netlink
	// (CRYPTO_MSG_GETALG)" or "/proc/crypto".
	Source string
	// Note says why crypto netlink was not used, when it was not.
	Note string
}

// Implementations returns the implementations of name that the kernel
// would hand out, the one it picks first: see [Usable].
func (r Registry) Implementations(name string) []Implementation { return Usable(r.Algs, name) }

// Usable returns the implementations of name that the kernel would hand
// out: registered (not larval or dead), not internal, and not failed in
// their self-test, ordered by priority, highest first, as crypto/api.c's
// __crypto_alg_lookup chooses. The first is the one an AF_ALG bind to name
// gets. Templates are instantiated on first use, so an algorithm nobody used
// yet may be missing: bind first, then read.
func Usable(algs []Implementation, name string) []Implementation {
	var out []Implementation
	for _, a := range algs {
		if a.Name != name || a.Internal || !a.Tested || a.Type == "larval" || a.Type == "dead" {
			continue
		}
		out = append(out, a)
	}
	slices.SortStableFunc(out, func(a, b Implementation) int { return cmp.Compare(b.Priority, a.Priority) })
	return out
}

// hwAnswer is the engine's answer to Hardware for one algorithm.
type hwAnswer struct {
	ok   bool
	what string
}

// hardwareOf judges the implementation of alg the kernel picks from reg.
func hardwareOf(alg string, reg Registry) hwAnswer {
	impls := reg.Implementations(alg)
	if len(impls) == 0 {
		return hwAnswer{false, "no usable implementation of " + alg + " in " + reg.Source}
	}
	best := impls[0]
	kind, signal := best.Classify()
	if kind == KindHardware {
		return hwAnswer{true, best.Driver}
	}
	return hwAnswer{false, fmt.Sprintf("%s is served by %s (priority %d), %s: %s", alg, best.Driver, best.Priority, kind, signal)}
}

// What Classify says an implementation runs on.
const (
	KindCPU      = "cpu"      // the CPU's instructions, or generic C
	KindHardware = "hardware" // an engine off the CPU
	KindUnknown  = "unknown"
)

// hardwareDrivers are fragments of the driver names of crypto engines off
// the CPU that register AEADs or the ciphers under them
// (docs/ARCHITECTURE.md, AF_ALG; the drivers' sources): NXP CAAM and DCP, ARM CryptoCell, Chelsio, AMD CCP, Inside
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

// Classify says whether an implementation runs on the CPU or on an engine
// off it, and what decided. With crypto netlink's flags,
// CRYPTO_ALG_KERN_DRIVER_ONLY ("hardware accelerated but not available to
// userspace via instruction set", include/linux/crypto.h) says hardware;
// not every hardware driver sets it (OcteonTX CPT does not), so the driver
// name lists come next, hardware first ("sun8i-ce" is a hardware engine,
// though "-ce" is arm's Crypto Extensions elsewhere). A template's driver
// name ("gcm_base(ctr(aes-generic),ghash-generic)") is judged by the
// implementations inside it: a template itself runs on the CPU.
func (a Implementation) Classify() (kind, signal string) {
	if a.HasFlags && a.Flags&FlagKernDriverOnly != 0 {
		return KindHardware, "flag CRYPTO_ALG_KERN_DRIVER_ONLY (crypto netlink)"
	}
	parts := driverParts(a.Driver)
	for _, p := range parts {
		if f := match(p, hardwareDrivers); f != "" {
			return KindHardware, fmt.Sprintf("driver name %q is on the hardware list (%s)", p, f)
		}
	}
	var frags []string
	for _, p := range parts {
		f := match(p, cpuDrivers)
		if f == "" {
			if a.HasFlags {
				return KindCPU, fmt.Sprintf("no CRYPTO_ALG_KERN_DRIVER_ONLY flag (crypto netlink); driver name %q is on neither list", p)
			}
			return KindUnknown, fmt.Sprintf("driver name %q is on neither the CPU nor the hardware list", p)
		}
		if !slices.Contains(frags, f) {
			frags = append(frags, f)
		}
	}
	if len(parts) == 0 {
		return KindUnknown, "no driver name"
	}
	signal = fmt.Sprintf("driver name on the CPU list (%s)", strings.Join(frags, ", "))
	if a.HasFlags {
		signal = "no CRYPTO_ALG_KERN_DRIVER_ONLY flag (crypto netlink); " + signal
	}
	return KindCPU, signal
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

// match returns the first fragment of list found in name ("-ce" and "-lib"
// only at the end or before another "-" or "_"), or "".
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
