package keyschedule

import (
	"crypto"
	"crypto/hkdf"
	"hash"
)

// ExpandLabel is HKDF-Expand-Label (RFC 8446 §7.1):
//
//	HKDF-Expand-Label(Secret, Label, Context, Length) =
//	     HKDF-Expand(Secret, HkdfLabel, Length)
//
//	struct {
//	    uint16 length = Length;
//	    opaque label<7..255> = "tls13 " + Label;
//	    opaque context<0..255> = Context;
//	} HkdfLabel;
//
// Its arguments come from this program, never from the peer: a label or
// context too long for the encoding, a length beyond 255 hash blocks, or a
// hash that is not linked in is a programming error and panics, as in
// crypto/tls.
func ExpandLabel(h crypto.Hash, secret []byte, label string, context []byte, length int) []byte {
	const prefix = "tls13 "
	if len(prefix)+len(label) > 255 || len(context) > 255 || length < 0 || length > 0xffff {
		panic("keyschedule: invalid HKDF-Expand-Label arguments")
	}
	info := make([]byte, 0, 2+1+len(prefix)+len(label)+1+len(context))
	info = append(info, byte(length>>8), byte(length))
	info = append(info, byte(len(prefix)+len(label)))
	info = append(info, prefix...)
	info = append(info, label...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	out, err := hkdf.Expand(func() hash.Hash { return h.New() }, secret, string(info), length)
	if err != nil {
		// Only a length beyond 255 blocks of h, or FIPS 140-only mode with
		// a secret shorter than 112 bits; neither comes from the peer.
		panic("keyschedule: HKDF-Expand-Label: " + err.Error())
	}
	return out
}

// TrafficKey derives the record-protection key and IV of a TLS 1.3 traffic
// secret (RFC 8446 §7.3):
//
//	[sender]_write_key = HKDF-Expand-Label(Secret, "key", "", key_length)
//	[sender]_write_iv  = HKDF-Expand-Label(Secret, "iv", "", iv_length)
//
// s must be a TLS 1.3 suite; for a TLS 1.2 suite the result is meaningless.
func TrafficKey(s Suite, secret []byte) (key, iv []byte) {
	key = ExpandLabel(s.Hash, secret, "key", nil, s.KeyLen)
	iv = ExpandLabel(s.Hash, secret, "iv", nil, s.IVLen)
	return key, iv
}

// NextTrafficSecret derives the traffic secret that follows a KeyUpdate
// (RFC 8446 §7.2):
//
//	application_traffic_secret_N+1 =
//	    HKDF-Expand-Label(application_traffic_secret_N,
//	                      "traffic upd", "", Hash.length)
func NextTrafficSecret(s Suite, secret []byte) []byte {
	return ExpandLabel(s.Hash, secret, "traffic upd", nil, s.Hash.Size())
}
