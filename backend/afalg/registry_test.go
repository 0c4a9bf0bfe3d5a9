package afalg

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/internal/netlink"
)

func readProcCrypto(t *testing.T, name string) []Implementation {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	algs, err := ParseProcCrypto(f)
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
	want := Implementation{Name: "cbc(aes)", Driver: "cbc(ecb(aes-fixed-time))", Module: "kernel", Priority: 101, Type: "lskcipher", Tested: true}
	if algs[0] != want {
		t.Errorf("first record = %+v, want %+v", algs[0], want)
	}
	for _, a := range algs {
		if a.Type == "aead" {
			t.Errorf("an AEAD on the host: %+v", a)
		}
	}
	for _, n := range AEADs {
		if impls := Usable(algs, n.Name); len(impls) != 0 {
			t.Errorf("Usable(%s) = %+v, want none", n.Name, impls)
		}
	}
	rng := Usable(algs, "stdrng")
	if len(rng) != 18 || rng[0].Driver != "drbg_nopr_hmac_sha512" || rng[0].Priority != 217 || rng[17].Priority != 200 {
		t.Errorf("stdrng: %d implementations, first %+v; want 18, drbg_nopr_hmac_sha512 at 217 first", len(rng), rng[0])
	}
	if k, sig := rng[0].Classify(); k != KindUnknown {
		t.Errorf("Classify(%s) = %s (%s), want unknown: a DRBG is on neither list", rng[0].Driver, k, sig)
	}
	aes := Usable(algs, "aes")
	if k, sig := aes[0].Classify(); aes[0].Driver != "aes-fixed-time" || k != KindCPU || !strings.Contains(sig, "fixed-time") {
		t.Errorf("aes: best %s, classified %s (%s); want aes-fixed-time, cpu", aes[0].Driver, k, sig)
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
		impls := Usable(algs, tc.name)
		if len(impls) == 0 {
			t.Errorf("%s: no implementation", tc.name)
			continue
		}
		d := impls[0]
		if kind, _ := d.Classify(); d.Driver != tc.driver || d.Module != tc.module || d.Priority != tc.priority || kind != KindCPU {
			t.Errorf("%s: %+v (%s), want %s (module %s, priority %d), cpu", tc.name, d, kind, tc.driver, tc.module, tc.priority)
		}
		for _, o := range impls[1:] {
			if o.Priority > impls[0].Priority || o.Internal {
				t.Errorf("%s: %+v ranked after %+v", tc.name, o, impls[0])
			}
		}
	}
	// Every AEAD there runs on the (emulated) CPU: AES-NI glue, the
	// crypto library, generic templates.
	n := 0
	for _, a := range algs {
		if a.Type != "aead" {
			continue
		}
		n++
		if k, sig := a.Classify(); k != KindCPU {
			t.Errorf("%s %s: %s (%s), want cpu", a.Name, a.Driver, k, sig)
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
	algs, err := ParseProcCrypto(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(algs) != 5 {
		t.Fatalf("%d records, want 5", len(algs))
	}
	impls := Usable(algs, "gcm(aes)")
	var got []string
	for _, a := range impls {
		got = append(got, a.Driver)
	}
	if strings.Join(got, " ") != "generic-gcm-aesni gcm_base(ctr(aes-generic),ghash-generic)" {
		t.Errorf("Usable = %q, want generic-gcm-aesni, then the generic template", got)
	}
	if _, err := ParseProcCrypto(strings.NewReader("name : x\npriority : high\n")); err == nil {
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
		{"generic-gcm-aesni", 0, false, KindCPU, "aesni"},
		{"generic-gcm-aesni-avx", 0, false, KindCPU, "avx"},
		{"generic-gcm-vaes-avx2", 0, false, KindCPU, "vaes"},
		{"generic-gcm-vaes-avx512", 0, false, KindCPU, "vaes"},
		{"gcm-aes-ce", 0, false, KindCPU, "-ce"},
		{"gcm-aes-s390", 0, false, KindCPU, "s390"},
		{"p10_aes_gcm", 0, false, KindCPU, "p10"},
		{"gcm_base(ctr(aes-generic),ghash-generic)", 0, false, KindCPU, "generic"},
		{"gcm_base(ctr(aes-fixed-time),ghash-generic)", 0, false, KindCPU, "fixed-time"},
		{"rfc7539(chacha20-simd,poly1305-simd)", 0, false, KindCPU, "simd"},
		{"rfc7539(chacha20-lib,poly1305-generic)", 0, false, KindCPU, "-lib, generic"},
		{"rfc7539(chacha20-neon,poly1305-neon)", 0, false, KindCPU, "neon"},
		// Hardware, by name.
		{"gcm-aes-caam", 0, false, KindHardware, `"gcm-aes-caam" is on the hardware list (caam)`},
		{"gcm-aes-caam-qi2", 0, false, KindHardware, "caam"},
		{"rfc7539-chacha20-poly1305-caam", 0, false, KindHardware, "caam"},
		{"gcm-aes-ccree", 0, false, KindHardware, "ccree"},
		{"gcm-aes-chcr", 0, false, KindHardware, "chcr"},
		{"gcm-aes-ccp", 0, false, KindHardware, "ccp"},
		{"safexcel-gcm-aes", 0, false, KindHardware, "safexcel"},
		{"gcm-aes-nx", 0, false, KindHardware, "-nx"},
		{"gcm-aes-tegra", 0, false, KindHardware, "tegra"},
		{"hisi_sec_aes_gcm", 0, false, KindHardware, "hisi"},
		{"cpt_rfc4106_gcm_aes", 0, false, KindHardware, "cpt"},
		{"ccm-aes-qce", 0, false, KindHardware, "qce"},
		// "-ce" is arm's Crypto Extensions, but sun8i-ce is an engine.
		{"gcm-aes-sun8i-ce", 0, false, KindHardware, "sun8i"},
		// A template over a hardware cipher runs on the hardware.
		{"gcm_base(ctr-aes-caam,ghash-generic)", 0, false, KindHardware, "caam"},
		// Neither list.
		{"gcm-aes-mystery", 0, false, KindUnknown, `"gcm-aes-mystery" is on neither`},
		{"", 0, false, KindUnknown, "no driver name"},
		// crypto netlink's flag decides first; without it, the names.
		{"gcm-aes-mystery", FlagKernDriverOnly, true, KindHardware, "CRYPTO_ALG_KERN_DRIVER_ONLY"},
		{"generic-gcm-aesni", FlagKernDriverOnly, true, KindHardware, "CRYPTO_ALG_KERN_DRIVER_ONLY"},
		{"gcm-aes-mystery", 0, true, KindCPU, "no CRYPTO_ALG_KERN_DRIVER_ONLY flag"},
		{"cpt_rfc4106_gcm_aes", 0, true, KindHardware, "cpt"},
		{"generic-gcm-aesni", 0, true, KindCPU, "no CRYPTO_ALG_KERN_DRIVER_ONLY flag (crypto netlink); driver name on the CPU list (aesni)"},
	} {
		kind, signal := Implementation{Driver: tc.driver, Flags: tc.flags, HasFlags: tc.nl}.Classify()
		if kind != tc.kind || !strings.Contains(signal, tc.signal) {
			t.Errorf("Classify(%q, flags %#x, netlink %v) = %s (%s), want %s (…%s…)", tc.driver, tc.flags, tc.nl, kind, signal, tc.kind, tc.signal)
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
	flags := uint32(flagTypeAEAD | flagTested | FlagKernDriverOnly | 0x80)
	binary.NativeEndian.PutUint32(b[3*64+12:], flags)
	b = netlink.AppendAttr(b, cryptocfgaPrioVal, binary.NativeEndian.AppendUint32(nil, 3000))
	b = netlink.AppendAttr(b, 5, make([]byte, 140)) // CRYPTOCFGA_REPORT_AEAD, ignored
	a, err := ParseCryptoUserAlg(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Implementation{Name: "gcm(aes)", Driver: "gcm-aes-caam", Module: "caamalg", Priority: 3000, Type: "aead", Tested: true, Flags: flags, HasFlags: true}
	if a != want {
		t.Errorf("ParseCryptoUserAlg = %+v, want %+v", a, want)
	}
	if kind, _ := a.Classify(); kind != KindHardware {
		t.Errorf("Classify(%+v) = %s, want hardware", a, kind)
	}
	if h := hardwareOf(GCMAES, Registry{Algs: []Implementation{a}}); !h.ok || h.what != "gcm-aes-caam" {
		t.Errorf("hardwareOf = %+v, want gcm-aes-caam", h)
	}

	binary.NativeEndian.PutUint32(b[3*64+12:], flagTypeAEAD|flagInternal)
	a, _ = ParseCryptoUserAlg(b)
	if !a.Internal || a.Tested || len(Usable([]Implementation{a}, "gcm(aes)")) != 0 {
		t.Errorf("an internal, untested implementation: %+v, handed out", a)
	}
	if _, err := ParseCryptoUserAlg(b[:100]); err == nil {
		t.Error("a short reply: no error")
	}
}

// FuzzParseCryptoUserAlg: whatever the kernel sends, the parsers return,
// with an error or without, and never panic.
func FuzzParseCryptoUserAlg(f *testing.F) {
	b := make([]byte, sizeofCryptoUser)
	copy(b, "gcm(aes)")
	b = netlink.AppendAttr(b, cryptocfgaPrioVal, binary.NativeEndian.AppendUint32(nil, 3000))
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte("name : gcm(aes)\npriority : 1\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, err := ParseCryptoUserAlg(b); err == nil {
			a.Classify()
		}
		algs, _ := ParseProcCrypto(bytes.NewReader(b))
		for _, a := range Usable(algs, "gcm(aes)") {
			a.Classify()
		}
	})
}
