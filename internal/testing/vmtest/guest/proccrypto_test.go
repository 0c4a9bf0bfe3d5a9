package main

import (
	"strings"
	"testing"
)

// An excerpt of /proc/crypto on a Debian 6.1 kernel with aesni_intel loaded,
// after gcm(aes) was instantiated.
const procCryptoSample = `name         : gcm(aes)
driver       : gcm_base(ctr(aes-generic),ghash-generic)
module       : gcm
priority     : 100
refcnt       : 1
selftest     : passed
internal     : no
type         : aead

name         : __gcm(aes)
driver       : __generic-gcm-aesni
module       : aesni_intel
priority     : 400
refcnt       : 1
selftest     : passed
internal     : yes
type         : aead

name         : gcm(aes)
driver       : generic-gcm-aesni
module       : aesni_intel
priority     : 400
refcnt       : 1
selftest     : passed
internal     : no
type         : aead

name         : gcm(aes)
driver       : broken-gcm
module       : kernel
priority     : 9000
refcnt       : 1
selftest     : unknown
internal     : no
type         : aead
`

func TestBestDriver(t *testing.T) {
	algs, err := parseProcCrypto(strings.NewReader(procCryptoSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(algs) != 4 {
		t.Fatalf("parsed %d entries, want 4: %+v", len(algs), algs)
	}
	got, ok := bestDriver(algs, "gcm(aes)")
	if !ok || got.driver != "generic-gcm-aesni" || got.module != "aesni_intel" || got.priority != 400 {
		t.Errorf("bestDriver(gcm(aes)) = %+v, %v; want generic-gcm-aesni from aesni_intel", got, ok)
	}
	if got, ok := bestDriver(algs, "rfc7539(chacha20,poly1305)"); ok {
		t.Errorf("bestDriver of an absent algorithm = %+v", got)
	}
}
