package record

import (
	"bytes"
	"crypto/tls"
	"testing"
)

func TestProtectorMatches(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 16)
	iv := bytes.Repeat([]byte{2}, 12)
	p, err := NewProtector(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, key, iv)
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Clone(iv)
	other[11] ^= 1
	for _, tc := range []struct {
		version, suite uint16
		iv             []byte
		want           bool
	}{
		{tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, iv, true},
		{tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, other, false},
		{tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, iv[:4], false},
		{tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256, iv, false},
		{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, iv, false},
	} {
		if got := p.Matches(tc.version, tc.suite, tc.iv); got != tc.want {
			t.Errorf("Matches(%#04x, %#04x, %x) = %v, want %v", tc.version, tc.suite, tc.iv, got, tc.want)
		}
	}
}
