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
