package main

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/internal/netlink"
)

func readProcCrypto(t *testing.T, name string) []cryptoAlg {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	algs, err := parseProcCrypto(f)
	if err != nil {
		t.Fatal(err)
	}
	return algs
}

// TestParseProcCryptoHost reads the development host's /proc/crypto
// (Linux 6.18, a Firecracker kernel with neither kTLS nor AF_ALG), captured
// as it was: no AEAD is registered there at all.
func TestParseProcCryptoHost(t *testing.T) {
	algs := readProcCrypto(t, "proc-crypto-6.18-host.txt")
	if len(algs) != 56 {
		t.Errorf("%d records, want 56", len(algs))
	}
	want := cryptoAlg{name: "cbc(aes)", driver: "cbc(ecb(aes-fixed-time))", module: "kernel", priority: 101, typ: "lskcipher", tested: true}
	if algs[0] != want {
		t.Errorf("first record = %+v, want %+v", algs[0], want)
	}
	for _, a := range algs {
		if a.typ == "aead" {
			t.Errorf("an AEAD on the host: %+v", a)
		}
	}
	for _, n := range aeadNames {
		if impls := implementations(algs, n.name); len(impls) != 0 {
			t.Errorf("implementations(%s) = %+v, want none", n.name, impls)
		}
	}
	rng := implementations(algs, "stdrng")
	if len(rng) != 18 || rng[0].driver != "drbg_nopr_hmac_sha512" || rng[0].priority != 217 || rng[17].priority != 200 {
		t.Errorf("stdrng: %d implementations, first %+v; want 18, drbg_nopr_hmac_sha512 at 217 first", len(rng), rng[0])
	}
	if k, sig := classify(rng[0]); k != kindUnknown {
		t.Errorf("classify(%s) = %s (%s), want unknown: a DRBG is on neither list", rng[0].driver, k, sig)
	}
	aes := implementations(algs, "aes")
	if k, sig := classify(aes[0]); aes[0].driver != "aes-fixed-time" || k != kindCPU || !strings.Contains(sig, "fixed-time") {
		t.Errorf("aes: best %s, classified %s (%s); want aes-fixed-time, cpu", aes[0].driver, k, sig)
	}
}

// TestParseProcCryptoVM reads /proc/crypto of a VM of the harness (Debian's
// 7.3 kernel under qemu -cpu max, after kTLS and AF_ALG used the AEADs),
// captured from the log of TestDoctorHere.
func TestParseProcCryptoVM(t *testing.T) {
	algs := readProcCrypto(t, "proc-crypto-7.3-vm.txt")
	for _, tc := range []struct {
		name, driver, module string
		priority             int
	}{
		{"gcm(aes)", "generic-gcm-aesni-avx", "aesni_intel", 500},
		{"rfc7539(chacha20,poly1305)", "rfc7539(chacha20-lib,poly1305-generic)", "chacha20poly1305", 300},
	} {
		impls := implementations(algs, tc.name)
		if len(impls) == 0 {
			t.Errorf("%s: no implementation", tc.name)
			continue
		}
		d := driverOf(impls[0])
		if d.Driver != tc.driver || d.Module != tc.module || d.Priority != tc.priority || d.Kind != kindCPU {
			t.Errorf("%s: %+v, want %s (module %s, priority %d), cpu", tc.name, d, tc.driver, tc.module, tc.priority)
		}
		for _, o := range impls[1:] {
			if o.priority > impls[0].priority || o.internal {
				t.Errorf("%s: %+v ranked after %+v", tc.name, o, impls[0])
			}
		}
	}
	// Every AEAD there runs on the (emulated) CPU: AES-NI glue, the
	// crypto library, generic templates.
	n := 0
	for _, a := range algs {
		if a.typ != "aead" {
			continue
		}
		n++
		if k, sig := classify(a); k != kindCPU {
			t.Errorf("%s %s: %s (%s), want cpu", a.name, a.driver, k, sig)
		}
	}
	if n < 8 {
		t.Errorf("%d AEADs, want the 8 or more the VM had", n)
	}
}

// TestImplementations checks the kernel's choice among implementations of a
// name: internal helpers, implementations whose self-test has not passed,
// and larval entries are never handed out; the highest priority wins.
func TestImplementations(t *testing.T) {
	const sample = `name         : gcm(aes)
driver       : __generic-gcm-aesni
module       : aesni_intel
priority     : 900
refcnt       : 1
selftest     : passed
internal     : yes
type         : aead

name         : gcm(aes)
driver       : gcm-aes-broken
module       : broken
priority     : 800
selftest     : unknown
internal     : no
type         : aead

name         : gcm(aes)
driver       : gcm(aes)
module       : kernel
priority     : 700
selftest     : passed
internal     : no
type         : larval
flags        : 0x10

name         : gcm(aes)
driver       : gcm_base(ctr(aes-generic),ghash-generic)
module       : gcm
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : aead
async        : no
blocksize    : 1
ivsize       : 12
maxauthsize  : 16
geniv        : <none>

name         : gcm(aes)
driver       : generic-gcm-aesni
module       : aesni_intel
priority     : 400
refcnt       : 1
selftest     : passed
internal     : no
type         : aead
`
	algs, err := parseProcCrypto(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(algs) != 5 {
		t.Fatalf("%d records, want 5", len(algs))
	}
	impls := implementations(algs, "gcm(aes)")
	var got []string
	for _, a := range impls {
		got = append(got, a.driver)
	}
	if strings.Join(got, " ") != "generic-gcm-aesni gcm_base(ctr(aes-generic),ghash-generic)" {
		t.Errorf("implementations = %q, want generic-gcm-aesni, then the generic template", got)
	}
	if _, err := parseProcCrypto(strings.NewReader("name : x\npriority : high\n")); err == nil {
		t.Error("a priority that is not a number: no error")
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		driver string
		flags  uint32
		nl     bool // the flags come from crypto netlink
		kind   string
		signal string // a fragment of the signal
	}{
		// CPU: x86, arm64, s390, powerpc, generic C and the templates over them.
		{"generic-gcm-aesni", 0, false, kindCPU, "aesni"},
		{"generic-gcm-aesni-avx", 0, false, kindCPU, "avx"},
		{"generic-gcm-vaes-avx2", 0, false, kindCPU, "vaes"},
		{"generic-gcm-vaes-avx512", 0, false, kindCPU, "vaes"},
		{"gcm-aes-ce", 0, false, kindCPU, "-ce"},
		{"gcm-aes-s390", 0, false, kindCPU, "s390"},
		{"p10_aes_gcm", 0, false, kindCPU, "p10"},
		{"gcm_base(ctr(aes-generic),ghash-generic)", 0, false, kindCPU, "generic"},
		{"gcm_base(ctr(aes-fixed-time),ghash-generic)", 0, false, kindCPU, "fixed-time"},
		{"rfc7539(chacha20-simd,poly1305-simd)", 0, false, kindCPU, "simd"},
		{"rfc7539(chacha20-lib,poly1305-generic)", 0, false, kindCPU, "-lib, generic"},
		{"rfc7539(chacha20-neon,poly1305-neon)", 0, false, kindCPU, "neon"},
		// Hardware, by name.
		{"gcm-aes-caam", 0, false, kindHardware, `"gcm-aes-caam" is on the hardware list (caam)`},
		{"gcm-aes-caam-qi2", 0, false, kindHardware, "caam"},
		{"rfc7539-chacha20-poly1305-caam", 0, false, kindHardware, "caam"},
		{"gcm-aes-ccree", 0, false, kindHardware, "ccree"},
		{"gcm-aes-chcr", 0, false, kindHardware, "chcr"},
		{"gcm-aes-ccp", 0, false, kindHardware, "ccp"},
		{"safexcel-gcm-aes", 0, false, kindHardware, "safexcel"},
		{"gcm-aes-nx", 0, false, kindHardware, "-nx"},
		{"gcm-aes-tegra", 0, false, kindHardware, "tegra"},
		{"hisi_sec_aes_gcm", 0, false, kindHardware, "hisi"},
		{"cpt_rfc4106_gcm_aes", 0, false, kindHardware, "cpt"},
		{"ccm-aes-qce", 0, false, kindHardware, "qce"},
		// "-ce" is arm's Crypto Extensions, but sun8i-ce is an engine.
		{"gcm-aes-sun8i-ce", 0, false, kindHardware, "sun8i"},
		// A template over a hardware cipher runs on the hardware.
		{"gcm_base(ctr-aes-caam,ghash-generic)", 0, false, kindHardware, "caam"},
		// Neither list.
		{"gcm-aes-mystery", 0, false, kindUnknown, `"gcm-aes-mystery" is on neither`},
		{"", 0, false, kindUnknown, "no driver name"},
		// crypto netlink's flag decides first; without it, the names.
		{"gcm-aes-mystery", cryptoAlgKernDriverOnly, true, kindHardware, "CRYPTO_ALG_KERN_DRIVER_ONLY"},
		{"generic-gcm-aesni", cryptoAlgKernDriverOnly, true, kindHardware, "CRYPTO_ALG_KERN_DRIVER_ONLY"},
		{"gcm-aes-mystery", 0, true, kindCPU, "no CRYPTO_ALG_KERN_DRIVER_ONLY flag"},
		{"cpt_rfc4106_gcm_aes", 0, true, kindHardware, "cpt"},
		{"generic-gcm-aesni", 0, true, kindCPU, "no CRYPTO_ALG_KERN_DRIVER_ONLY flag (crypto netlink); driver name on the CPU list (aesni)"},
	} {
		kind, signal := classify(cryptoAlg{driver: tc.driver, flags: tc.flags, hasFlags: tc.nl})
		if kind != tc.kind || !strings.Contains(signal, tc.signal) {
			t.Errorf("classify(%q, flags %#x, netlink %v) = %s (%s), want %s (…%s…)", tc.driver, tc.flags, tc.nl, kind, signal, tc.kind, tc.signal)
		}
	}
}

func TestDriverParts(t *testing.T) {
	for in, want := range map[string]string{
		"generic-gcm-aesni":                        "generic-gcm-aesni",
		"gcm_base(ctr(aes-generic),ghash-generic)": "aes-generic ghash-generic",
		"rfc7539(chacha20-simd,poly1305-simd)":     "chacha20-simd poly1305-simd",
		"rfc4106(gcm_base(ctr(aes-ce),ghash-ce))":  "aes-ce ghash-ce",
		"cbc(ecb(aes-fixed-time))":                 "aes-fixed-time",
		"":                                         "",
		"((,))":                                    "",
	} {
		if got := strings.Join(driverParts(in), " "); got != want {
			t.Errorf("driverParts(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestParseCryptoUserAlg reads a CRYPTO_MSG_GETALG reply built as
// crypto_report_one builds it: crypto_user_alg, then the priority. (No
// kernel at hand has CONFIG_CRYPTO_USER to capture one from.)
func TestParseCryptoUserAlg(t *testing.T) {
	b := make([]byte, sizeofCryptoUser)
	copy(b, "gcm(aes)")
	copy(b[64:], "gcm-aes-caam")
	copy(b[128:], "caamalg")
	flags := uint32(cryptoAlgTypeAEAD | cryptoAlgTested | cryptoAlgKernDriverOnly | 0x80)
	binary.NativeEndian.PutUint32(b[3*64+12:], flags)
	b = netlink.AppendAttr(b, cryptocfgaPrioVal, binary.NativeEndian.AppendUint32(nil, 3000))
	b = netlink.AppendAttr(b, 5, make([]byte, 140)) // CRYPTOCFGA_REPORT_AEAD, ignored
	a, err := parseCryptoUserAlg(b)
	if err != nil {
		t.Fatal(err)
	}
	want := cryptoAlg{name: "gcm(aes)", driver: "gcm-aes-caam", module: "caamalg", priority: 3000, typ: "aead", tested: true, flags: flags, hasFlags: true}
	if a != want {
		t.Errorf("parseCryptoUserAlg = %+v, want %+v", a, want)
	}
	if d := driverOf(a); d.Kind != kindHardware || d.Flags == nil || *d.Flags != flags {
		t.Errorf("driverOf = %+v, want hardware with the flags", d)
	}

	binary.NativeEndian.PutUint32(b[3*64+12:], cryptoAlgTypeAEAD|cryptoAlgInternal)
	a, _ = parseCryptoUserAlg(b)
	if !a.internal || a.tested || len(implementations([]cryptoAlg{a}, "gcm(aes)")) != 0 {
		t.Errorf("an internal, untested implementation: %+v, handed out", a)
	}
	if _, err := parseCryptoUserAlg(b[:100]); err == nil {
		t.Error("a short reply: no error")
	}
}
