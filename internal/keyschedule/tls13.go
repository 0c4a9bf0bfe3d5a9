package keyschedule

import (
	"crypto"
	"crypto/hmac"
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
	return expandLabel(hmac.New(h.New, secret), label, context, length)
}

// expandLabel is ExpandLabel with the HMAC keyed with the secret supplied, so
// that one HMAC serves every label derived from one secret: keying it is most
// of the cost of a short HKDF-Expand (two hash states made and fed a block
// each), and the handoff derives a key and an IV from each of four secrets
// (conn/secrets.go). mac must be fresh from hmac.New or Reset (crypto/hmac's
// New leaves it keyed and ready: a Reset then would only hash the key block
// again); it is left in an unspecified state.
//
// HKDF-Expand (RFC 5869 §2.3), with PRK the secret HMAC is keyed with:
//
//	T(0) = empty string
//	T(i) = HMAC-Hash(PRK, T(i-1) | info | i)   (i one octet)
//	OKM  = first L octets of T(1) | T(2) | ... T(N), N = ceil(L/HashLen)
func expandLabel(mac hash.Hash, label string, context []byte, length int) []byte {
	const prefix = "tls13 "
	size := mac.Size()
	if len(prefix)+len(label) > 255 || len(context) > 255 || length < 0 || length > 0xffff || length > 255*size {
		panic("keyschedule: invalid HKDF-Expand-Label arguments")
	}
	// One buffer: the output (rounded up to whole blocks, the part past
	// length cleared before returning), then info and the counter octet.
	n := (length + size - 1) / size * size
	buf := make([]byte, n, n+2+1+len(prefix)+len(label)+1+len(context)+1)
	info := buf[n:]
	info = append(info, byte(length>>8), byte(length))
	info = append(info, byte(len(prefix)+len(label)))
	info = append(info, prefix...)
	info = append(info, label...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	info = append(info, 0) // the counter, i
	out := buf[:0]
	var prev []byte
	for i := 1; len(out) < length; i++ {
		info[len(info)-1] = byte(i)
		if i > 1 {
			mac.Reset()
		}
		mac.Write(prev)
		mac.Write(info)
		out = mac.Sum(out)
		prev = out[len(out)-size:]
	}
	clear(buf[length:cap(buf)])
	return buf[:length:length]
}

// TrafficKey derives the record-protection key and IV of a TLS 1.3 traffic
// secret (RFC 8446 §7.3):
//
//	[sender]_write_key = HKDF-Expand-Label(Secret, "key", "", key_length)
//	[sender]_write_iv  = HKDF-Expand-Label(Secret, "iv", "", iv_length)
//
// s must be a TLS 1.3 suite; for a TLS 1.2 suite the result is meaningless.
// key and iv share one array (each slice capped at its own length), so that
// the caller may zero and drop them one at a time.
//
// Both outputs are shorter than one hash block, so each is T(1) alone
// (RFC 5869 §2.3): one HMAC of info|0x01. TrafficKey computes the two HMACs
// by their definition (RFC 2104 §2) over one plain hash: every handoff
// derives eight keys (conn/secrets.go, dir13), and crypto/hmac's keying
// (two hash states, saved by marshalling at the first Reset) cost about as
// much as the hashing itself, in allocations mostly. TestTrafficKeyHMAC
// checks the result against ExpandLabel for both hashes and every key
// length.
func TrafficKey(s Suite, secret []byte) (key, iv []byte) {
	h := s.Hash.New()
	size, bs := h.Size(), h.BlockSize()
	if s.KeyLen > size || s.IVLen > size || len(secret) > bs {
		// Not a suite of RFC 8446 §B.4 (nor its secret); HKDF-Expand-Label
		// in full.
		mac := hmac.New(s.Hash.New, secret)
		key = expandLabel(mac, "key", nil, s.KeyLen)
		mac.Reset()
		iv = expandLabel(mac, "iv", nil, s.IVLen)
		return key, iv
	}
	// One scratch array: the padded key (RFC 2104's K XOR ipad, then
	// opad), the inner hash, and the longest info. It holds the secret
	// masked and the inner hashes: cleared at the end.
	const maxInfo = 2 + 1 + len("tls13 key") + 1 + 1
	scratch := make([]byte, bs+size+maxInfo)
	pad, inner, info := scratch[:bs], scratch[bs:bs+size], scratch[bs+size:]
	out := make([]byte, s.KeyLen+s.IVLen)
	key, iv = out[:s.KeyLen:s.KeyLen], out[s.KeyLen:]
	for _, l := range [2]struct {
		label string
		dst   []byte
	}{{"key", key}, {"iv", iv}} {
		// HkdfLabel (RFC 8446 §7.1) with an empty context, then the
		// counter octet 1.
		in := append(info[:0], 0, byte(len(l.dst)), byte(len("tls13 ")+len(l.label)))
		in = append(in, "tls13 "...)
		in = append(in, l.label...)
		in = append(in, 0, 1)
		// HMAC(K, m) = H((K XOR opad) | H((K XOR ipad) | m)).
		clear(pad)
		copy(pad, secret)
		for i := range pad {
			pad[i] ^= 0x36
		}
		h.Reset()
		h.Write(pad)
		h.Write(in)
		h.Sum(inner[:0])
		for i := range pad {
			pad[i] ^= 0x36 ^ 0x5c
		}
		h.Reset()
		h.Write(pad)
		h.Write(inner)
		copy(l.dst, h.Sum(inner[:0]))
	}
	clear(scratch)
	h.Reset()
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
