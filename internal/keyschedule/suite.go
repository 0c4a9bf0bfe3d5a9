// Package keyschedule turns the secrets that crypto/tls writes to its
// KeyLogWriter into record-protection keys: the AEAD cipher suites ktls can
// move out of crypto/tls, the TLS 1.3 key schedule pieces that follow a
// traffic secret (RFC 8446 §7.1–7.3), the TLS 1.2 PRF and key block (RFC 5246
// §5, §6.3), and the NSS key log format itself.
//
// Nothing here does I/O or keeps state; every function is safe for concurrent
// use. Errors never carry key material.
package keyschedule

import (
	"crypto"
	"crypto/tls"

	// The hashes are linked in here so that Suite.Hash.New never panics
	// with "requested hash function is unavailable".
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// Suite describes an AEAD cipher suite, by its crypto/tls ID, and what its
// keys are made of.
type Suite struct {
	// ID is the crypto/tls cipher suite ID.
	ID uint16
	// Version is tls.VersionTLS12 or tls.VersionTLS13.
	Version uint16
	// KeyLen is the AEAD key length in bytes.
	KeyLen int
	// IVLen is the length of the per-direction IV: 12 for TLS 1.3 (RFC 8446
	// §5.3) and for TLS 1.2 ChaCha20-Poly1305 (RFC 7905 §2); 4 for TLS 1.2
	// AES-GCM, whose IV is the implicit salt (RFC 5288 §3).
	IVLen int
	// Hash is the HKDF hash for TLS 1.3 (RFC 8446 §7.1) and the PRF hash for
	// TLS 1.2 (RFC 5246 §5, RFC 5288 §3, RFC 7905 §2).
	Hash crypto.Hash
	// AES is true for AES-GCM, false for ChaCha20-Poly1305.
	AES bool
	// Kernel is the kTLS cipher that serves the suite in both versions.
	Kernel KernelCipher
	// NICOffload says a mainline device can take the suite with TLS_HW:
	// tls_set_device_offload refuses every version but TLS 1.2 (net/tls/
	// tls_device.c), and the drivers with tlsdev_ops (mlx5, ch_ktls, nfp,
	// funeth) take AES-GCM only.
	NICOffload bool
	// AFALG is the kernel crypto API algorithm that seals the suite's
	// records through an AF_ALG "aead" socket
	// (Documentation/crypto/userspace-if.rst; docs/ARCHITECTURE.md, AF_ALG).
	AFALG string
}

// KernelCipher is a kTLS cipher type and the layout of its crypto_info:
// struct tls_crypto_info {u16 version; u16 cipher_type}, then iv, key, salt
// and rec_seq[8] (include/uapi/linux/tls.h, struct
// tls12_crypto_info_aes_gcm_128 and its siblings).
type KernelCipher struct {
	// Type is TLS_CIPHER_* of include/uapi/linux/tls.h.
	Type uint16
	// Name is how messages name the cipher: "AES-GCM-128".
	Name string
	// IVLen, KeyLen and SaltLen are the sizes of the crypto_info's iv, key
	// and salt fields.
	IVLen, KeyLen, SaltLen int
}

// KernelRecSeqLen is the size of crypto_info's rec_seq.
const KernelRecSeqLen = 8

// InfoLen is the size of the cipher's crypto_info: the 4-byte
// tls_crypto_info, iv, key, salt and rec_seq.
func (c KernelCipher) InfoLen() int { return 4 + c.IVLen + c.KeyLen + c.SaltLen + KernelRecSeqLen }

// The kTLS ciphers of include/uapi/linux/tls.h that a crypto/tls suite uses
// (TLS_CIPHER_AES_GCM_128 = 51, TLS_CIPHER_AES_GCM_256 = 52,
// TLS_CIPHER_CHACHA20_POLY1305 = 54). AES-CCM, SM4 and ARIA have no
// crypto/tls suite.
var (
	kernelAESGCM128 = KernelCipher{Type: 51, Name: "AES-GCM-128", IVLen: 8, KeyLen: 16, SaltLen: 4}
	kernelAESGCM256 = KernelCipher{Type: 52, Name: "AES-GCM-256", IVLen: 8, KeyLen: 32, SaltLen: 4}
	kernelChaCha20  = KernelCipher{Type: 54, Name: "ChaCha20-Poly1305", IVLen: 12, KeyLen: 32}
)

// The kernel crypto API's names of the AEADs of Suite.AFALG.
const (
	// AFALGGCMAES is AES-GCM with a 12-byte IV, the whole nonce: TLS 1.3's
	// (RFC 8446 §5.3) and TLS 1.2's salt ‖ explicit nonce (RFC 5288 §3);
	// never rfc4106(gcm(aes)), whose additional data is laid out for ESP.
	AFALGGCMAES = "gcm(aes)"
	// AFALGChaCha20Poly1305 is RFC 8439's AEAD with a 12-byte nonce (RFC
	// 7905 §2, RFC 8446 §5.3); the kernel names it after RFC 7539.
	AFALGChaCha20Poly1305 = "rfc7539(chacha20,poly1305)"
)

// NonceLen is the length of every AEAD nonce ktls builds: 12 bytes for both
// AES-GCM (RFC 5288 §3, RFC 8446 §5.3) and ChaCha20-Poly1305 (RFC 8439 §2.8).
const NonceLen = 12

// TagLen is the authentication tag length of every supported AEAD (RFC 5116
// §5.1, RFC 8439 §2.8).
const TagLen = 16

// TLS 1.2 AES-GCM nonce parts: a 4-byte implicit salt from the key block and
// an 8-byte explicit nonce carried in each record (RFC 5288 §3).
const (
	SaltLen          = 4
	ExplicitNonceLen = 8
)

// suites lists every suite ktls can take from crypto/tls. TLS 1.2 CBC and RC4
// suites are deliberately absent: they stay in crypto/tls.
var suites = []Suite{
	// TLS 1.3, RFC 8446 §B.4.
	{tls.TLS_AES_128_GCM_SHA256, tls.VersionTLS13, 16, 12, crypto.SHA256, true, kernelAESGCM128, false, AFALGGCMAES},
	{tls.TLS_AES_256_GCM_SHA384, tls.VersionTLS13, 32, 12, crypto.SHA384, true, kernelAESGCM256, false, AFALGGCMAES},
	{tls.TLS_CHACHA20_POLY1305_SHA256, tls.VersionTLS13, 32, 12, crypto.SHA256, false, kernelChaCha20, false, AFALGChaCha20Poly1305},

	// TLS 1.2 AES-GCM, RFC 5288 §3 and RFC 5289 §3.2 (the PRF hash is the
	// one in the suite name).
	{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12, 16, 4, crypto.SHA256, true, kernelAESGCM128, true, AFALGGCMAES},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12, 16, 4, crypto.SHA256, true, kernelAESGCM128, true, AFALGGCMAES},
	{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.VersionTLS12, 32, 4, crypto.SHA384, true, kernelAESGCM256, true, AFALGGCMAES},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.VersionTLS12, 32, 4, crypto.SHA384, true, kernelAESGCM256, true, AFALGGCMAES},
	{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12, 16, 4, crypto.SHA256, true, kernelAESGCM128, true, AFALGGCMAES},
	{tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.VersionTLS12, 32, 4, crypto.SHA384, true, kernelAESGCM256, true, AFALGGCMAES},

	// TLS 1.2 ChaCha20-Poly1305, RFC 7905 §2 (PRF SHA-256, 12-byte IV).
	{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, tls.VersionTLS12, 32, 12, crypto.SHA256, false, kernelChaCha20, false, AFALGChaCha20Poly1305},
	{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.VersionTLS12, 32, 12, crypto.SHA256, false, kernelChaCha20, false, AFALGChaCha20Poly1305},
}

// Lookup returns the suite for a protocol version and a crypto/tls cipher
// suite ID. ok is false for unknown suites, for suites without AEAD (TLS 1.2
// CBC), for a TLS 1.3 suite asked for under TLS 1.2 and the other way round,
// and for any version other than TLS 1.2 and 1.3.
func Lookup(version, id uint16) (s Suite, ok bool) {
	for _, s := range suites {
		if s.ID == id && s.Version == version {
			return s, true
		}
	}
	return Suite{}, false
}

// Suites returns every supported suite, TLS 1.3 first. The slice is a copy.
func Suites() []Suite {
	return append([]Suite(nil), suites...)
}

// Name returns the crypto/tls name of the suite.
func (s Suite) Name() string {
	return tls.CipherSuiteName(s.ID)
}
