package keyschedule

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/tls"
	"encoding/hex"
	"strings"
	"testing"
)

// unhex decodes hex written the way RFCs print it: pairs separated by blanks
// and line breaks.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// RFC 8448 §3, "Simple 1-RTT Handshake" (TLS_AES_128_GCM_SHA256).
const (
	rfc8448EarlySecret = `33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c
	   e2 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a`
	rfc8448EmptyHash = `e3 b0 c4 42 98 fc 1c 14 9a fb f4 c8 99 6f b9 24
	   27 ae 41 e4 64 9b 93 4c a4 95 99 1b 78 52 b8 55`
	rfc8448DerivedEarly = `6f 26 15 a1 08 c7 02 c5 67 8f 54 fc 9d ba
	   b6 97 16 c0 76 18 9c 48 25 0c eb ea c3 57 6c 36 11 ba`
	rfc8448HandshakeSecret = `1d c8 26 e9 36 06 aa 6f dc 0a ad c1 2f 74 1b
	   01 04 6a a6 b9 9f 69 1e d2 21 a9 f0 ca 04 3f be ac`
	rfc8448HelloHash = `86 0c 06 ed c0 78 58 ee 8e 78 f0 e7 42 8c 58 ed
	   d6 b4 3f 2c a3 e6 e9 5f 02 ed 06 3c f0 e1 ca d8`
	rfc8448ClientHSSecret = `b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e
	   2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21`
	rfc8448ServerHSSecret = `b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d
	   37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38`
	rfc8448DerivedHS = `43 de 77 e0 c7 77 13 85 9a 94 4d b9 db 25
	   90 b5 31 90 a6 5b 3e e2 e4 f1 2d d7 a0 bb 7c e2 54 b4`
	rfc8448MasterSecret = `18 df 06 84 3d 13 a0 8b f2 a4 49 84 4c 5f 8a
	   47 80 01 bc 4d 4c 62 79 84 d5 a4 1d a8 d0 40 29 19`
	rfc8448FinishedHash = `96 08 10 2a 0f 1c cc 6d b6 25 0b 7b 7e 41 7b 1a
	   00 0e aa da 3d aa e4 77 7a 76 86 c9 ff 83 df 13`
	rfc8448ClientAppSecret = `9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce
	   65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5`
	rfc8448ServerAppSecret = `a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9
	   50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43`
	rfc8448ServerFinishedKey = `00 8d 3b 66 f8 16 ea 55 9f 96 b5 37 e8 85
	   c3 1f c0 68 bf 49 2c 65 2f 01 f2 88 a1 d8 cd c1 9f c8`

	rfc8448ServerHSKey  = `3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc`
	rfc8448ServerHSIV   = `5d 31 3e b2 67 12 76 ee 13 00 0b 30`
	rfc8448ClientHSKey  = `db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01`
	rfc8448ClientHSIV   = `5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f`
	rfc8448ServerAppKey = `9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56`
	rfc8448ServerAppIV  = `cf 78 2b 88 dd 83 54 9a ad f1 e9 84`
	rfc8448ClientAppKey = `17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51`
	rfc8448ClientAppIV  = `5b 78 92 3d ee 08 57 90 33 e5 23 d9`
)

func TestExpandLabelRFC8448(t *testing.T) {
	// Derive-Secret(Secret, Label, Messages) =
	//     HKDF-Expand-Label(Secret, Label, Transcript-Hash(Messages), Hash.length)
	// (RFC 8446 §7.1); every step below is printed in RFC 8448 §3.
	tests := []struct {
		name, secret, label, context, want string
	}{
		{"derived (early)", rfc8448EarlySecret, "derived", rfc8448EmptyHash, rfc8448DerivedEarly},
		{"c hs traffic", rfc8448HandshakeSecret, "c hs traffic", rfc8448HelloHash, rfc8448ClientHSSecret},
		{"s hs traffic", rfc8448HandshakeSecret, "s hs traffic", rfc8448HelloHash, rfc8448ServerHSSecret},
		{"derived (handshake)", rfc8448HandshakeSecret, "derived", rfc8448EmptyHash, rfc8448DerivedHS},
		{"c ap traffic", rfc8448MasterSecret, "c ap traffic", rfc8448FinishedHash, rfc8448ClientAppSecret},
		{"s ap traffic", rfc8448MasterSecret, "s ap traffic", rfc8448FinishedHash, rfc8448ServerAppSecret},
		{"finished", rfc8448ServerHSSecret, "finished", "", rfc8448ServerFinishedKey},
	}
	for _, tt := range tests {
		got := ExpandLabel(crypto.SHA256, unhex(t, tt.secret), tt.label, unhex(t, tt.context), 32)
		if want := unhex(t, tt.want); !bytes.Equal(got, want) {
			t.Errorf("%s: got %x, want %x", tt.name, got, want)
		}
	}
}

func TestTrafficKeyRFC8448(t *testing.T) {
	s, ok := Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	if !ok {
		t.Fatal("TLS_AES_128_GCM_SHA256 not found")
	}
	tests := []struct {
		name, secret, key, iv string
	}{
		{"{server} handshake", rfc8448ServerHSSecret, rfc8448ServerHSKey, rfc8448ServerHSIV},
		{"{client} handshake", rfc8448ClientHSSecret, rfc8448ClientHSKey, rfc8448ClientHSIV},
		{"{server} application", rfc8448ServerAppSecret, rfc8448ServerAppKey, rfc8448ServerAppIV},
		{"{client} application", rfc8448ClientAppSecret, rfc8448ClientAppKey, rfc8448ClientAppIV},
	}
	for _, tt := range tests {
		key, iv := TrafficKey(s, unhex(t, tt.secret))
		if want := unhex(t, tt.key); !bytes.Equal(key, want) {
			t.Errorf("%s key: got %x, want %x", tt.name, key, want)
		}
		if want := unhex(t, tt.iv); !bytes.Equal(iv, want) {
			t.Errorf("%s iv: got %x, want %x", tt.name, iv, want)
		}
	}
}

// hkdfExpandRef is HKDF-Expand written out from RFC 5869 §2.3 with
// crypto/hmac, independent of crypto/hkdf.
func hkdfExpandRef(h crypto.Hash, prk, info []byte, l int) []byte {
	var out, prev []byte
	for i := byte(1); len(out) < l; i++ {
		m := hmac.New(h.New, prk)
		m.Write(prev)
		m.Write(info)
		m.Write([]byte{i})
		prev = m.Sum(nil)
		out = append(out, prev...)
	}
	return out[:l]
}

func TestExpandLabelEncoding(t *testing.T) {
	// The HkdfLabel layout of RFC 8446 §7.1, spelled out byte by byte, for
	// both hashes and the labels this package uses. RFC 8448 §3 prints the
	// "key" and "iv" infos: 00 10 09 74 6c 73 31 33 20 6b 65 79 00 and
	// 00 0c 08 74 6c 73 31 33 20 69 76 00.
	secret48 := bytes.Repeat([]byte{0x5a}, 48)
	for _, tt := range []struct {
		h      crypto.Hash
		label  string
		ctx    []byte
		length int
		info   string
	}{
		{crypto.SHA256, "key", nil, 16, "00 10 09 74 6c 73 31 33 20 6b 65 79 00"},
		{crypto.SHA256, "iv", nil, 12, "00 0c 08 74 6c 73 31 33 20 69 76 00"},
		{crypto.SHA384, "key", nil, 32, "00 20 09 74 6c 73 31 33 20 6b 65 79 00"},
		{crypto.SHA384, "iv", nil, 12, "00 0c 08 74 6c 73 31 33 20 69 76 00"},
		// "traffic upd" (RFC 8446 §7.2), Hash.length 32 and 48.
		{crypto.SHA256, "traffic upd", nil, 32, "00 20 11 74 6c 73 31 33 20 74 72 61 66 66 69 63 20 75 70 64 00"},
		{crypto.SHA384, "traffic upd", nil, 48, "00 30 11 74 6c 73 31 33 20 74 72 61 66 66 69 63 20 75 70 64 00"},
		{crypto.SHA384, "c hs traffic", []byte{1, 2, 3}, 48, "00 30 12 74 6c 73 31 33 20 63 20 68 73 20 74 72 61 66 66 69 63 03 01 02 03"},
	} {
		got := ExpandLabel(tt.h, secret48[:tt.h.Size()], tt.label, tt.ctx, tt.length)
		want := hkdfExpandRef(tt.h, secret48[:tt.h.Size()], unhex(t, tt.info), tt.length)
		if !bytes.Equal(got, want) {
			t.Errorf("%v %q: got %x, want %x", tt.h, tt.label, got, want)
		}
	}
}

func TestNextTrafficSecret(t *testing.T) {
	for _, s := range Suites() {
		if s.Version != tls.VersionTLS13 {
			continue
		}
		secret := bytes.Repeat([]byte{7}, s.Hash.Size())
		next := NextTrafficSecret(s, secret)
		want := ExpandLabel(s.Hash, secret, "traffic upd", nil, s.Hash.Size())
		if !bytes.Equal(next, want) || len(next) != s.Hash.Size() {
			t.Errorf("%s: got %x, want %x", s.Name(), next, want)
		}
		key, iv := TrafficKey(s, next)
		if len(key) != s.KeyLen || len(iv) != s.IVLen {
			t.Errorf("%s: key %d iv %d bytes", s.Name(), len(key), len(iv))
		}
	}
	// The RFC 8448 client application secret, one update on, computed with
	// the independent HKDF-Expand above.
	s, _ := Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	sec := unhex(t, rfc8448ClientAppSecret)
	want := hkdfExpandRef(crypto.SHA256, sec, unhex(t, "00 20 11 74 6c 73 31 33 20 74 72 61 66 66 69 63 20 75 70 64 00"), 32)
	if got := NextTrafficSecret(s, sec); !bytes.Equal(got, want) {
		t.Errorf("traffic upd: got %x, want %x", got, want)
	}
}

// The TLS 1.2 PRF test vectors posted to the IETF TLS working group list
// ("TLS 1.2 PRF test vectors", 2009-2010, msg03416) and carried by many test
// suites (mbedTLS, wolfSSL, Botan, BoringSSL's users).
func TestPRF12Vectors(t *testing.T) {
	tests := []struct {
		name         string
		h            crypto.Hash
		secret, seed string
		want         string
	}{
		{
			name:   "P_SHA256 100 bytes",
			h:      crypto.SHA256,
			secret: "9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35",
			seed:   "a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c",
			want: `e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53
				c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a
				6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af
				0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab
				4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba
				a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01
				87 34 7b 66`,
		},
		{
			name:   "P_SHA384 148 bytes",
			h:      crypto.SHA384,
			secret: "b8 0b 73 3d 6c ee fc dc 71 56 6e a4 8e 55 67 df",
			seed:   "cd 66 5c f6 a8 44 7d d6 ff 8b 27 55 5e db 74 65",
			want: `7b 0c 18 e9 ce d4 10 ed 18 04 f2 cf a3 4a 33 6a
				1c 14 df fb 49 00 bb 5f d7 94 21 07 e8 1c 83 cd
				e9 ca 0f aa 60 be 9f e3 4f 82 b1 23 3c 91 46 a0
				e5 34 cb 40 0f ed 27 00 88 4f 9d c2 36 f8 0e dd
				8b fa 96 11 44 c9 e8 d7 92 ec a7 22 a7 b3 2f c3
				d4 16 d4 73 eb c2 c5 fd 4a bf da d0 5d 91 84 25
				9b 5b f8 cd 4d 90 fa 0d 31 e2 de c4 79 e4 f1 a2
				60 66 f2 ee a9 a6 92 36 a3 e5 26 55 c9 e9 ae e6
				91 c8 f3 a2 68 54 30 8d 5e aa 3b e8 5e 09 90 70
				3d 73 e5 6f`,
		},
	}
	for _, tt := range tests {
		want := unhex(t, tt.want)
		got := PRF12(tt.h, unhex(t, tt.secret), "test label", unhex(t, tt.seed), len(want))
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %x\nwant %x", tt.name, got, want)
		}
		// Every prefix is the same stream.
		for _, n := range []int{0, 1, 31, 32, 33, 48, 49} {
			if p := PRF12(tt.h, unhex(t, tt.secret), "test label", unhex(t, tt.seed), n); !bytes.Equal(p, want[:n]) {
				t.Errorf("%s: prefix %d differs", tt.name, n)
			}
		}
	}
}

func TestKeyBlock12Layout(t *testing.T) {
	master := bytes.Repeat([]byte{0x11}, 48)
	cr := bytes.Repeat([]byte{0xc1}, 32)
	sr := bytes.Repeat([]byte{0x5e}, 32)
	for _, s := range Suites() {
		if s.Version != tls.VersionTLS12 {
			continue
		}
		ck, sk, civ, siv := KeyBlock12(s, master, cr, sr)
		// RFC 5246 §6.3: seed is server_random + client_random, and the
		// block is split with no MAC keys for AEAD suites.
		kb := PRF12(s.Hash, master, "key expansion", append(append([]byte{}, sr...), cr...), 2*s.KeyLen+2*s.IVLen)
		want := [][]byte{kb[:s.KeyLen], kb[s.KeyLen : 2*s.KeyLen], kb[2*s.KeyLen : 2*s.KeyLen+s.IVLen], kb[2*s.KeyLen+s.IVLen:]}
		for i, got := range [][]byte{ck, sk, civ, siv} {
			if !bytes.Equal(got, want[i]) {
				t.Errorf("%s part %d: got %x, want %x", s.Name(), i, got, want[i])
			}
		}
	}
}

func TestLookup(t *testing.T) {
	for _, s := range Suites() {
		got, ok := Lookup(s.Version, s.ID)
		if !ok || got != s {
			t.Errorf("Lookup(%x, %s) = %+v, %v", s.Version, s.Name(), got, ok)
		}
		if s.Hash.Size() == 0 || !s.Hash.Available() {
			t.Errorf("%s: hash not available", s.Name())
		}
		if s.Version == tls.VersionTLS12 && s.AES && s.IVLen != SaltLen ||
			(s.Version == tls.VersionTLS13 || !s.AES) && s.IVLen != NonceLen {
			t.Errorf("%s: IVLen %d", s.Name(), s.IVLen)
		}
		// The engines' facts agree with the suite's: the kernel's key
		// and nonce parts (include/uapi/linux/tls.h), TLS_HW for TLS 1.2
		// AES-GCM only, the AF_ALG AEAD of its kind.
		k := s.Kernel
		if k.KeyLen != s.KeyLen || k.IVLen+k.SaltLen != NonceLen || s.AES != (k.SaltLen == SaltLen) {
			t.Errorf("%s: kernel cipher %+v", s.Name(), k)
		}
		if want := map[uint16]int{51: 40, 52: 56, 54: 56}[k.Type]; k.InfoLen() != want {
			t.Errorf("%s: crypto_info of %d bytes, want %d", s.Name(), k.InfoLen(), want)
		}
		if s.NICOffload != (s.Version == tls.VersionTLS12 && s.AES) {
			t.Errorf("%s: NICOffload %v", s.Name(), s.NICOffload)
		}
		if want := map[bool]string{true: AFALGGCMAES, false: AFALGChaCha20Poly1305}[s.AES]; s.AFALG != want {
			t.Errorf("%s: AFALG %q, want %q", s.Name(), s.AFALG, want)
		}
		// Same ID, other version: never.
		other := uint16(tls.VersionTLS12)
		if s.Version == tls.VersionTLS12 {
			other = tls.VersionTLS13
		}
		if _, ok := Lookup(other, s.ID); ok {
			t.Errorf("%s found under version %x", s.Name(), other)
		}
	}
	if n := len(Suites()); n != 11 {
		t.Errorf("%d suites, want 11", n)
	}
	for _, tt := range []struct {
		v, id uint16
	}{
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA},
		{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
		{tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_CBC_SHA},
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA},
		{tls.VersionTLS11, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		{tls.VersionTLS10, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA},
		{0x0305, tls.TLS_AES_128_GCM_SHA256},
		{tls.VersionTLS13, 0},
		{tls.VersionTLS13, 0xffff},
	} {
		if s, ok := Lookup(tt.v, tt.id); ok {
			t.Errorf("Lookup(%x, %x) = %+v, want not found", tt.v, tt.id, s)
		}
	}
	// The crypto/tls lists agree on which suites are AEAD: every TLS 1.2
	// suite crypto/tls knows with GCM or CHACHA20 in its name is here.
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		aead := strings.Contains(cs.Name, "_GCM_") || strings.Contains(cs.Name, "CHACHA20")
		for _, v := range cs.SupportedVersions {
			if v != tls.VersionTLS12 && v != tls.VersionTLS13 {
				continue
			}
			if _, ok := Lookup(v, cs.ID); ok != aead {
				t.Errorf("Lookup(%x, %s) ok = %v, want %v", v, cs.Name, ok, aead)
			}
		}
	}
}

// TestExpandLabelLengths: HKDF-Expand past one hash block (RFC 5869 §2.3,
// T(2) = HMAC(PRK, T(1) | info | 0x02) and on), at the block boundaries,
// with each hash, and one HMAC shared by several labels (as TrafficKey
// shares it) giving what separate ones give.
func TestExpandLabelLengths(t *testing.T) {
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		secret := bytes.Repeat([]byte{0xa5}, h.Size())
		mac := hmac.New(h.New, secret)
		for _, l := range []int{0, 1, 12, h.Size() - 1, h.Size(), h.Size() + 1, 2 * h.Size(), 3*h.Size() + 5, 255 * h.Size()} {
			info := []byte{byte(l >> 8), byte(l), byte(len("tls13 x")), 't', 'l', 's', '1', '3', ' ', 'x', 2, 7, 8}
			want := hkdfExpandRef(h, secret, info, l)
			if got := ExpandLabel(h, secret, "x", []byte{7, 8}, l); !bytes.Equal(got, want) {
				t.Errorf("%v length %d: got %x, want %x", h, l, got, want)
			}
			mac.Reset()
			if got := expandLabel(mac, "x", []byte{7, 8}, l); !bytes.Equal(got, want) {
				t.Errorf("%v length %d, shared HMAC: got %x, want %x", h, l, got, want)
			}
			if got := ExpandLabel(h, secret, "x", []byte{7, 8}, l); len(got) != l || cap(got) != l {
				t.Errorf("%v length %d: len %d cap %d", h, l, len(got), cap(got))
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("ExpandLabel of 256 blocks did not panic")
		}
	}()
	ExpandLabel(crypto.SHA256, make([]byte, 32), "x", nil, 256*32)
}
