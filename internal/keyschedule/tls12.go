package keyschedule

import (
	"crypto"
	"crypto/hmac"
)

// PRF12 is the TLS 1.2 pseudorandom function (RFC 5246 §5):
//
//	PRF(secret, label, seed) = P_<hash>(secret, label + seed)
//
//	P_hash(secret, seed) = HMAC_hash(secret, A(1) + seed) +
//	                       HMAC_hash(secret, A(2) + seed) + ...
//	A(0) = seed
//	A(i) = HMAC_hash(secret, A(i-1))
//
// It returns n bytes. h must be linked in (SHA-256 and SHA-384 are).
func PRF12(h crypto.Hash, secret []byte, label string, seed []byte, n int) []byte {
	if n <= 0 {
		return []byte{}
	}
	labelSeed := make([]byte, 0, len(label)+len(seed))
	labelSeed = append(labelSeed, label...)
	labelSeed = append(labelSeed, seed...)

	mac := hmac.New(h.New, secret)
	out := make([]byte, 0, n+h.Size())

	// A(1) = HMAC_hash(secret, A(0)), A(0) = label + seed.
	mac.Write(labelSeed)
	a := mac.Sum(nil)
	for len(out) < n {
		// HMAC_hash(secret, A(i) + seed)
		mac.Reset()
		mac.Write(a)
		mac.Write(labelSeed)
		out = mac.Sum(out)

		// A(i+1) = HMAC_hash(secret, A(i))
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	return out[:n:n]
}

// KeyBlock12 derives the record-protection keys of a TLS 1.2 AEAD suite from
// the master secret (RFC 5246 §6.3):
//
//	key_block = PRF(SecurityParameters.master_secret,
//	                "key expansion",
//	                SecurityParameters.server_random +
//	                SecurityParameters.client_random);
//
// partitioned as client_write_MAC_key, server_write_MAC_key,
// client_write_key, server_write_key, client_write_IV, server_write_IV. AEAD
// suites have no MAC keys (RFC 5246 §6.2.3.3); the IV is the 4-byte implicit
// salt for AES-GCM (RFC 5288 §3) and the 12-byte IV for ChaCha20-Poly1305
// (RFC 7905 §2). Extended master secret (RFC 7627) changes only how the
// master secret is made, not this step.
//
// The four results are separate slices that the caller may zero one by one.
func KeyBlock12(s Suite, master, clientRandom, serverRandom []byte) (clientKey, serverKey, clientIV, serverIV []byte) {
	seed := make([]byte, 0, len(serverRandom)+len(clientRandom))
	seed = append(seed, serverRandom...)
	seed = append(seed, clientRandom...)

	n := 2*s.KeyLen + 2*s.IVLen
	block := PRF12(s.Hash, master, "key expansion", seed, n)
	kb := block
	take := func(l int) []byte {
		out := make([]byte, l)
		copy(out, kb)
		kb = kb[l:]
		return out
	}
	clientKey = take(s.KeyLen)
	serverKey = take(s.KeyLen)
	clientIV = take(s.IVLen)
	serverIV = take(s.IVLen)
	clear(block) // the copies above are the only ones left
	return clientKey, serverKey, clientIV, serverIV
}
