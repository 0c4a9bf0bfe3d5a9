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
}

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
	{tls.TLS_AES_128_GCM_SHA256, tls.VersionTLS13, 16, 12, crypto.SHA256, true},
	{tls.TLS_AES_256_GCM_SHA384, tls.VersionTLS13, 32, 12, crypto.SHA384, true},
	{tls.TLS_CHACHA20_POLY1305_SHA256, tls.VersionTLS13, 32, 12, crypto.SHA256, false},

	// TLS 1.2 AES-GCM, RFC 5288 §3 and RFC 5289 §3.2 (the PRF hash is the
	// one in the suite name).
	{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12, 16, 4, crypto.SHA256, true},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12, 16, 4, crypto.SHA256, true},
	{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.VersionTLS12, 32, 4, crypto.SHA384, true},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.VersionTLS12, 32, 4, crypto.SHA384, true},
	{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12, 16, 4, crypto.SHA256, true},
	{tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.VersionTLS12, 32, 4, crypto.SHA384, true},

	// TLS 1.2 ChaCha20-Poly1305, RFC 7905 §2 (PRF SHA-256, 12-byte IV).
	{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, tls.VersionTLS12, 32, 12, crypto.SHA256, false},
	{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.VersionTLS12, 32, 12, crypto.SHA256, false},
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
