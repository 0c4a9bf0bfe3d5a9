package testenv

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"strings"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
)

// SuiteName names a suite for subtests: "TLS1.3/TLS_AES_128_GCM_SHA256".
func SuiteName(s keyschedule.Suite) string {
	return strings.ReplaceAll(tls.VersionName(s.Version), " ", "") + "/" + s.Name()
}

// RandomParams returns engine Params with a fresh random key and IV for a
// suite, starting at sequence number seq.
func RandomParams(s keyschedule.Suite, seq uint64) backend.Params {
	key := make([]byte, s.KeyLen)
	iv := make([]byte, s.IVLen)
	rand.Read(key)
	rand.Read(iv)
	return backend.Params{Version: s.Version, CipherSuite: s.ID, Key: key, IV: iv, Seq: seq}
}

// CloneParams deep-copies p, so that the caller can zero its own copy as
// the backend contract says it does.
func CloneParams(p backend.Params) backend.Params {
	p.Key, p.IV = bytes.Clone(p.Key), bytes.Clone(p.IV)
	return p
}

// EngineSuites are one suite per AEAD, key size and version, the set the
// engines' tests cover: AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305
// under TLS 1.3 and TLS 1.2.
func EngineSuites() []keyschedule.Suite {
	var out []keyschedule.Suite
	for _, id := range []struct{ v, s uint16 }{
		{tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256},
		{tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384},
		{tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256},
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
	} {
		s, ok := keyschedule.Lookup(id.v, id.s)
		if !ok {
			panic("testenv: unknown suite")
		}
		out = append(out, s)
	}
	return out
}
