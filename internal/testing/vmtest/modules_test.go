package main

import (
	"slices"
	"strings"
	"testing"
)

// Excerpt of the modules.dep that depmod writes for Debian's 6.1 cloud
// kernel (linux-image-6.1.0-50-cloud-amd64-unsigned).
const modulesDep61 = `kernel/arch/x86/crypto/aesni-intel.ko: kernel/crypto/crypto_simd.ko kernel/crypto/cryptd.ko
kernel/arch/x86/crypto/ghash-clmulni-intel.ko: kernel/crypto/cryptd.ko
kernel/arch/x86/crypto/chacha-x86_64.ko: kernel/lib/crypto/libchacha.ko
kernel/arch/x86/crypto/poly1305-x86_64.ko:
kernel/crypto/crypto_simd.ko: kernel/crypto/cryptd.ko
kernel/crypto/cryptd.ko:
kernel/crypto/gcm.ko:
kernel/crypto/ccm.ko:
kernel/crypto/chacha20poly1305.ko:
kernel/crypto/af_alg.ko:
kernel/crypto/algif_aead.ko: kernel/crypto/af_alg.ko
kernel/lib/crypto/libchacha.ko:
kernel/net/tls/tls.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
`

// Excerpt for trixie-backports' 7.3 kernel: compressed modules, and the
// x86 glue merged into fewer modules.
const modulesDep73 = `kernel/arch/x86/crypto/aesni-intel.ko.xz: kernel/lib/crypto/libaes.ko.xz kernel/crypto/gf128mul.ko.xz
kernel/crypto/gf128mul.ko.xz:
kernel/lib/crypto/libaes.ko.xz:
kernel/crypto/gcm.ko.xz: kernel/crypto/gf128mul.ko.xz
kernel/crypto/chacha20poly1305.ko.xz: kernel/lib/crypto/libpoly1305.ko.xz
kernel/lib/crypto/libpoly1305.ko.xz:
kernel/crypto/af_alg.ko.xz:
kernel/crypto/algif_aead.ko.xz: kernel/crypto/af_alg.ko.xz
kernel/net/tls/tls.ko.xz:
`

func TestClosure61(t *testing.T) {
	md, err := parseModulesDep(strings.NewReader(modulesDep61))
	if err != nil {
		t.Fatal(err)
	}
	wanted := []string{"tls", "af_alg", "algif_aead", "aesni-intel", "ghash-clmulni-intel", "chacha-x86_64", "poly1305-x86_64",
		"gcm", "ghash-generic", "ctr", "aes-generic", "chacha20poly1305", "chacha-generic", "poly1305-generic", "ccm"}
	order, absent, err := md.closure(wanted)
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, md, order)
	for _, want := range []string{"kernel/net/tls/tls.ko", "kernel/crypto/algif_aead.ko", "kernel/crypto/cryptd.ko", "kernel/lib/crypto/libchacha.ko", "kernel/crypto/ccm.ko"} {
		if !slices.Contains(order, want) {
			t.Errorf("closure lacks %s: %v", want, order)
		}
	}
	if slices.Contains(order, "kernel/drivers/net/virtio_net.ko") {
		t.Errorf("closure has an unwanted module: %v", order)
	}
	if got := len(order); got != 13 {
		t.Errorf("closure has %d modules, want 13: %v", got, order)
	}
	wantAbsent := []string{"ghash-generic", "ctr", "aes-generic", "chacha-generic", "poly1305-generic"}
	if !slices.Equal(absent, wantAbsent) {
		t.Errorf("absent = %v, want %v", absent, wantAbsent)
	}
}

func TestClosure73(t *testing.T) {
	md, err := parseModulesDep(strings.NewReader(modulesDep73))
	if err != nil {
		t.Fatal(err)
	}
	order, _, err := md.closure([]string{"tls", "algif_aead", "aesni-intel", "gcm", "chacha20poly1305"})
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, md, order)
	want := []string{
		"kernel/net/tls/tls.ko.xz",
		"kernel/crypto/af_alg.ko.xz", "kernel/crypto/algif_aead.ko.xz",
		"kernel/lib/crypto/libaes.ko.xz", "kernel/crypto/gf128mul.ko.xz", "kernel/arch/x86/crypto/aesni-intel.ko.xz",
		"kernel/crypto/gcm.ko.xz",
		"kernel/lib/crypto/libpoly1305.ko.xz", "kernel/crypto/chacha20poly1305.ko.xz",
	}
	if !slices.Equal(order, want) {
		t.Errorf("order =\n%v\nwant\n%v", order, want)
	}
}

// checkOrder asserts that every module comes after all of its dependencies
// and appears once.
func checkOrder(t *testing.T, md moduleDeps, order []string) {
	t.Helper()
	pos := map[string]int{}
	for i, p := range order {
		if _, dup := pos[p]; dup {
			t.Errorf("%s appears twice", p)
		}
		pos[p] = i
	}
	for i, p := range order {
		for _, d := range md[moduleNameOf(p)].deps {
			if j, ok := pos[d]; !ok || j > i {
				t.Errorf("%s is loaded before its dependency %s", p, d)
			}
		}
	}
}

func TestClosureErrors(t *testing.T) {
	md, err := parseModulesDep(strings.NewReader("a.ko: b.ko\nb.ko: a.ko\nc.ko: missing.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := md.closure([]string{"a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: err = %v", err)
	}
	if _, _, err := md.closure([]string{"c"}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing dependency: err = %v", err)
	}
	if _, err := parseModulesDep(strings.NewReader("no colon here\n")); err == nil {
		t.Errorf("a line without a colon was accepted")
	}
}

func TestModuleNameOf(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/arch/x86/crypto/aesni-intel.ko.xz":      "aesni_intel",
		"kernel/arch/x86/crypto/ghash-clmulni-intel.ko": "ghash_clmulni_intel",
		"kernel/net/tls/tls.ko.zst":                     "tls",
		"updates/dkms/chacha-x86_64.ko":                 "chacha_x86_64",
	} {
		if got := moduleNameOf(in); got != want {
			t.Errorf("moduleNameOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestModulesForAliases(t *testing.T) {
	// Excerpts of modules.alias: Debian's 6.1 and 7.3 cloud kernels.
	const alias61 = `alias crypto-chacha20 chacha_x86_64
alias crypto-aes aesni_intel
alias crypto-ghash ghash_clmulni_intel
alias crypto-poly1305 poly1305_x86_64
alias crypto-ctr ctr
alias crypto-gcm gcm
alias crypto-rfc7539 chacha20poly1305
alias crypto-chacha20 chacha_generic
alias crypto-poly1305 poly1305_generic
alias crypto-ghash ghash_generic
alias net-pf-38 af_alg
alias tcp-ulp-tls tls
alias pci:v00008086d00001572sv*sd*bc*sc*i* i40e
`
	const alias73 = `alias crypto-gcm gcm
alias crypto-chacha20 chacha
alias crypto-ccm ccm
alias net-pf-38 af_alg
alias crypto-rfc7539 chacha20poly1305
alias tcp-ulp-tls tls
alias crypto-aes aesni_intel
alias crypto-ctr ctr
`
	aliases := []string{"crypto-ghash", "crypto-chacha20", "crypto-rfc7539", "tcp-ulp-tls"}
	mods, none, err := modulesForAliases(strings.NewReader(alias61), aliases)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ghash_clmulni_intel", "ghash_generic", "chacha_x86_64", "chacha_generic", "chacha20poly1305", "tls"}; !slices.Equal(mods, want) || len(none) != 0 {
		t.Errorf("6.1: modules %v, none %v; want %v", mods, none, want)
	}
	mods, none, err = modulesForAliases(strings.NewReader(alias73), aliases)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"chacha", "chacha20poly1305", "tls"}; !slices.Equal(mods, want) || !slices.Equal(none, []string{"crypto-ghash"}) {
		t.Errorf("7.3: modules %v, none %v; want %v and none [crypto-ghash]", mods, none, want)
	}
}
