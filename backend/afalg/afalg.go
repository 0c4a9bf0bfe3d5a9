// Package afalg is the AF_ALG engine: the AEAD of each record runs in the
// kernel crypto API, reached through AF_ALG "aead" sockets
// (Documentation/crypto/userspace-if.rst), while the framing, nonces,
// additional data, read-ahead and batching stay in user space, those of
// backend/internal/recordlayer, the record loop the userspace engine runs too
// (engines never import each other: docs/ARCHITECTURE.md, Rooms).
//
// Per direction and key the engine opens a transform socket, binds it to
// gcm(aes) (with the whole 12-byte nonce: TLS 1.3's IV XOR the sequence
// number, TLS 1.2's salt and explicit nonce; never rfc4106(gcm(aes)), whose
// additional data is laid out for ESP) or rfc7539(chacha20,poly1305), sets
// the key and the 16-byte tag length once, accepts one operation socket and
// closes the transform socket (the operation socket holds the transform).
// Each record is one sendmsg of additional data and input with the
// operation, IV and associated-data length as control messages, and one
// readv of additional data and output (the layout of
// docs/ARCHITECTURE.md, AF_ALG). The operation socket is
// non-blocking and parked on the Go netpoller. A TLS 1.3 KeyUpdate opens a
// new transform and operation socket: the kernel refuses a new key on a
// transform that has operation sockets (EBUSY, crypto/af_alg.c,
// alg_setsockopt). A record that fails authentication (EBADMSG) is
// bad_record_mac. The engine never uses splice or vmsplice with AF_ALG: that
// path was CVE-2026-31431 ("Copy Fail", a page-cache write leading to local
// root), and Linux 7.2 removed it.
//
// When to use it: hardly ever. AF_ALG is deprecated upstream ("crypto:
// af_alg - Document the deprecation of AF_ALG", which calls it insecure),
// Linux 7.3 refuses gcm(aes) and ChaCha20-Poly1305 to it by default
// (/proc/sys/crypto/af_alg_restrict), and two system calls and two copies
// per record make it slower than Go's in-process AES-GCM on any CPU with
// AES instructions: about 11 times at 64 bytes, still about 2 times at
// 16 KiB (lower bounds measured in docs/ARCHITECTURE.md,
// AF_ALG). Its one niche is a
// machine whose kernel drives a crypto engine off the CPU (NXP CAAM, ARM
// CryptoCell, SafeXcel, ...) where the CPU has no AES instructions and kTLS
// is missing. So the automatic choice takes it only there: the engine's
// Hardware says whether the implementation the kernel picks for a suite's
// algorithm is such an engine ([Implementation.Classify]); everywhere else
// it runs only when forced (KTLS_BACKEND=afalg).
//
// The engine exists on Linux only; elsewhere New returns an engine whose
// every answer wraps backend.ErrNotSupported and names the platform. The
// parsing and classification of the kernel's implementations (registry.go)
// are portable, and `ktls doctor` uses them.
package afalg

import (
	"crypto/tls"
	"strconv"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
)

// The algorithms of the kernel crypto API that a TLS record layer uses
// (docs/ARCHITECTURE.md, AF_ALG), as package keyschedule's suite table
// names them.
const (
	// GCMAES is AES-GCM with a 12-byte IV, the whole nonce.
	GCMAES = keyschedule.AFALGGCMAES
	// ChaCha20Poly1305 is RFC 8439's AEAD with a 12-byte nonce.
	ChaCha20Poly1305 = keyschedule.AFALGChaCha20Poly1305
)

// AEADs are the algorithms the engine uses and the TLS ciphers each serves.
var AEADs = []struct{ Name, Serves string }{
	{GCMAES, "AES-128-GCM, AES-256-GCM"},
	{ChaCha20Poly1305, "ChaCha20-Poly1305"},
}

// Algorithm returns the name of the kernel crypto API algorithm that
// protects the records of a TLS version and crypto/tls AEAD cipher suite (the
// suite table's AFALG), or an error wrapping backend.ErrNotSupported.
func Algorithm(version, suite uint16) (string, error) {
	if version != tls.VersionTLS12 && version != tls.VersionTLS13 {
		return "", backend.NotSupported(backend.AFALG, "protocol version %#04x", version)
	}
	s, ok := keyschedule.Lookup(version, suite)
	if !ok {
		return "", backend.NotSupported(backend.AFALG, "cipher suite %s under %s", tls.CipherSuiteName(suite), tls.VersionName(version))
	}
	return s.AFALG, nil
}

// RestrictFile is the switch with which Linux 7.3 limits AF_ALG (Eric
// Biggers, "crypto: af_alg - Add af_alg_restrict sysctl, defaulting to 1";
// Documentation/admin-guide/sysctl/crypto.rst). The af_alg module registers
// it when it loads.
const RestrictFile = "/proc/sys/crypto/af_alg_restrict"

// RestrictMeaning says what a value of RestrictFile does.
func RestrictMeaning(n int) string {
	switch n {
	case 0:
		return "0: AF_ALG unrestricted"
	case 1:
		return "1 (the Linux 7.3 default): an allowlist whose only AEAD is ccm(aes); gcm(aes) and ChaCha20-Poly1305 are refused (ENOENT)"
	case 2:
		return "2: AF_ALG disabled"
	}
	return strconv.Itoa(n) + ": a value this package does not know"
}
