package kernel

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
)

// TestCryptoInfo checks the crypto_info of every suite against the layout of
// include/uapi/linux/tls.h (struct tls12_crypto_info_aes_gcm_128 and its
// siblings: version, cipher_type, iv, key, salt, rec_seq) and the rules of
// cryptoInfo's comment; it needs no kTLS, so it runs everywhere.
func TestCryptoInfo(t *testing.T) {
	sizes := map[uint16]int{51: 40, 52: 56, 54: 56} // sizeof the kernel's structs
	const seq = 0x0102030405060708
	for _, s := range keyschedule.Suites() {
		c, err := lookup(s.Version, s.ID)
		if err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		key := bytes.Repeat([]byte{0xaa}, s.KeyLen)
		iv := make([]byte, s.IVLen)
		for i := range iv {
			iv[i] = byte(0x10 + i)
		}
		b, err := cryptoInfo(c, backend.Params{Version: s.Version, CipherSuite: s.ID, Key: key, IV: iv, Seq: seq})
		if err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		if len(b) != sizes[c.Type] {
			t.Fatalf("%s: crypto_info of %d bytes, want %d", s.Name(), len(b), sizes[c.Type])
		}
		if v, typ := binary.NativeEndian.Uint16(b[0:]), binary.NativeEndian.Uint16(b[2:]); v != s.Version || typ != c.Type {
			t.Errorf("%s: version %#04x, cipher_type %d", s.Name(), v, typ)
		}
		gotIV := b[4 : 4+c.IVLen]
		gotKey := b[4+c.IVLen : 4+c.IVLen+c.KeyLen]
		gotSalt := b[4+c.IVLen+c.KeyLen : len(b)-8]
		if !bytes.Equal(gotKey, key) || binary.BigEndian.Uint64(b[len(b)-8:]) != seq {
			t.Errorf("%s: key or rec_seq misplaced: % x", s.Name(), b)
		}
		var wantIV, wantSalt []byte
		switch {
		case !s.AES: // RFC 7905 §2, RFC 8446 §5.3: the whole IV, no salt
			wantIV = iv
		case s.Version == tls.VersionTLS13: // RFC 8446 §5.3
			wantSalt, wantIV = iv[:4], iv[4:]
		default: // RFC 5288 §3: the explicit nonce of the next record is its sequence number
			wantSalt, wantIV = iv, binary.BigEndian.AppendUint64(nil, seq)
		}
		if !bytes.Equal(gotIV, wantIV) || !bytes.Equal(gotSalt, wantSalt) {
			t.Errorf("%s: iv % x salt % x, want % x and % x", s.Name(), gotIV, gotSalt, wantIV, wantSalt)
		}
		if _, err := cryptoInfo(c, backend.Params{Version: s.Version, Key: key[1:], IV: iv}); err == nil {
			t.Errorf("%s: a short key was taken", s.Name())
		}
	}
	if _, err := lookup(tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA); err == nil ||
		err.Error() != "kernel: no kTLS cipher for TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: backend: not supported" {
		t.Errorf("lookup of a CBC suite: %v", err)
	}
}
