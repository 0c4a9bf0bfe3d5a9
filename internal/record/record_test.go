package record

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/ktls-go/ktls/internal/keyschedule"
)

// testKey returns a recognisable key and IV for a suite. No error message may
// contain a run of them.
func testKey(s keyschedule.Suite) (key, iv []byte) {
	key = bytes.Repeat([]byte{0xa7}, s.KeyLen)
	iv = bytes.Repeat([]byte{0x3c}, s.IVLen)
	for i := range key {
		key[i] ^= byte(i)
	}
	return key, iv
}

func newTestProtector(t testing.TB, s keyschedule.Suite) *Protector {
	t.Helper()
	key, iv := testKey(s)
	p, err := NewProtector(s.Version, s.ID, key, iv)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rawAEAD is the suite's AEAD built directly, for crafting records that Seal
// will not make.
func rawAEAD(t testing.TB, s keyschedule.Suite) cipher.AEAD {
	key, _ := testKey(s)
	if s.AES {
		b, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	a, err := chacha20poly1305.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func suiteName(s keyschedule.Suite) string {
	v := "TLS13"
	if s.Version == tls.VersionTLS12 {
		v = "TLS12"
	}
	return v + "/" + s.Name()
}

func wantAlert(t *testing.T, what string, err error, alert tls.AlertError) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, alert)
		return
	}
	var a tls.AlertError
	if !errors.As(err, &a) || a != alert {
		t.Errorf("%s: %v, want alert %d (%v)", what, err, uint8(alert), alert)
	}
	if !strings.HasPrefix(err.Error(), "record: ") {
		t.Errorf("%s: error %q lacks the package prefix", what, err)
	}
	msg := strings.ToLower(err.Error())
	for _, b := range []byte{0xa7, 0x3c} {
		if strings.Contains(msg, strings.Repeat(fmt.Sprintf("%02x", b), 4)) {
			t.Errorf("%s: error %q contains key bytes", what, err)
		}
	}
}

func TestRoundTripAllSuites(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range keyschedule.Suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			p := newTestProtector(t, s)
			for _, n := range []int{0, 1, 15, 16, 17, 255, 256, 1000, MaxPlaintext - 1, MaxPlaintext} {
				for _, typ := range []uint8{TypeApplicationData, TypeHandshake, TypeAlert} {
					pt := make([]byte, n)
					for i := range pt {
						pt[i] = byte(rng.Uint32())
					}
					seq := rng.Uint64()
					rec := p.Seal(nil, seq, typ, pt)
					if len(rec) != p.SealedLen(n) {
						t.Fatalf("len %d, SealedLen %d", len(rec), p.SealedLen(n))
					}
					h, _ := ParseHeader(rec)
					if h.Version != 0x0303 || h.Length != len(rec)-HeaderLen {
						t.Fatalf("header %+v", h)
					}
					if s.Version == tls.VersionTLS13 && h.Type != TypeApplicationData || s.Version == tls.VersionTLS12 && h.Type != typ {
						t.Fatalf("outer type %d", h.Type)
					}
					if s.Version == tls.VersionTLS12 && s.AES && binary.BigEndian.Uint64(rec[HeaderLen:]) != seq {
						t.Fatal("explicit nonce is not the sequence number")
					}
					gtyp, got, err := p.Open(seq, rec)
					if err != nil || gtyp != typ || !bytes.Equal(got, pt) {
						t.Fatalf("n=%d typ=%d: %d %v", n, typ, gtyp, err)
					}
				}
			}
		})
	}
}

// TestSealAliasing checks that Seal may take its plaintext from dst's spare
// capacity, where WriteRecords-style callers keep it.
func TestSealAliasing(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		p := newTestProtector(t, s)
		want := p.Seal(nil, 9, TypeApplicationData, []byte("hello, world"))
		for off := 0; off < 20; off++ {
			buf := make([]byte, 3, 100)
			pt := buf[3+off : 3+off+12]
			copy(pt, "hello, world")
			got := p.Seal(buf, 9, TypeApplicationData, pt)
			if !bytes.Equal(got[3:], want) {
				t.Errorf("%s offset %d: aliasing broke the record", suiteName(s), off)
			}
		}
	}
}

func TestNewProtectorErrors(t *testing.T) {
	for _, tt := range []struct {
		name         string
		version, id  uint16
		key, iv      []byte
		unsupported  bool
		wantContains string
	}{
		{"CBC", tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, make([]byte, 16), make([]byte, 16), true, "unsupported"},
		{"TLS 1.1", tls.VersionTLS11, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, make([]byte, 16), make([]byte, 4), true, "unsupported"},
		{"1.3 suite as 1.2", tls.VersionTLS12, tls.TLS_AES_128_GCM_SHA256, make([]byte, 16), make([]byte, 12), true, "unsupported"},
		{"short key", tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384, bytes.Repeat([]byte{0xa7}, 16), make([]byte, 12), false, "key of 16 bytes"},
		{"long IV", tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, make([]byte, 16), bytes.Repeat([]byte{0xa7}, 12), false, "IV of 12 bytes"},
	} {
		_, err := NewProtector(tt.version, tt.id, tt.key, tt.iv)
		if err == nil || errors.Is(err, ErrUnsupported) != tt.unsupported || !strings.Contains(err.Error(), tt.wantContains) {
			t.Errorf("%s: %v", tt.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "a7a7") {
			t.Errorf("%s: key bytes in %v", tt.name, err)
		}
	}
}

func TestMaxCiphertext(t *testing.T) {
	if got := MaxCiphertext(tls.VersionTLS13); got != 16384+256 {
		t.Errorf("TLS 1.3: %d", got)
	}
	if got := MaxCiphertext(tls.VersionTLS12); got != 16384+2048 {
		t.Errorf("TLS 1.2: %d", got)
	}
}

func TestParseHeader(t *testing.T) {
	h, err := ParseHeader([]byte{23, 3, 3, 0x40, 0x11, 0xff})
	if err != nil || h != (Header{23, 0x0303, 0x4011}) {
		t.Errorf("%+v %v", h, err)
	}
	for n := range HeaderLen {
		_, err := ParseHeader(make([]byte, n))
		wantAlert(t, fmt.Sprintf("%d bytes", n), err, tls.AlertError(50))
	}
}

func TestCheckHeader(t *testing.T) {
	for _, tt := range []struct {
		version uint16
		h       Header
		alert   tls.AlertError // 0: no error
	}{
		{tls.VersionTLS13, Header{23, 0x0303, 16384 + 256}, 0},
		{tls.VersionTLS13, Header{23, 0x0303, 16384 + 257}, 22},
		{tls.VersionTLS13, Header{22, 0x0303, 100}, 10},
		{tls.VersionTLS13, Header{20, 0x0303, 1}, 10},
		{tls.VersionTLS13, Header{23, 0x0301, 100}, 70},
		{tls.VersionTLS13, Header{23, 0x0304, 100}, 70},
		{tls.VersionTLS12, Header{22, 0x0303, 16384 + 2048}, 0},
		{tls.VersionTLS12, Header{21, 0x0303, 16384 + 2049}, 22},
		{tls.VersionTLS12, Header{23, 0x0302, 100}, 70},
		{tls.VersionTLS12, Header{23, 0x0303, 0}, 0}, // too short: Open's business
	} {
		err := CheckHeader(tt.version, tt.h)
		if tt.alert == 0 {
			if err != nil {
				t.Errorf("%x %+v: %v", tt.version, tt.h, err)
			}
			continue
		}
		wantAlert(t, fmt.Sprintf("%x %+v", tt.version, tt.h), err, tt.alert)
	}
}

// TestOpenAdversarial feeds Open every kind of broken record, for every suite.
func TestOpenAdversarial(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			p := newTestProtector(t, s)
			const seq = 77
			good := p.Seal(nil, seq, TypeApplicationData, []byte("attack at dawn, bring snacks"))

			// Every single-bit flip in the fragment, and in the header
			// fields the AEAD authenticates, fails.
			for i := range good {
				for _, bit := range []byte{0x01, 0x80} {
					rec := bytes.Clone(good)
					rec[i] ^= bit
					_, _, err := p.Open(seq, rec)
					var want tls.AlertError = 20 // the AEAD covers it
					switch {
					case i == 0 && s.Version == tls.VersionTLS13:
						want = 10 // not application_data outside
					case i == 3 || i == 4:
						want = 50 // length disagrees with the bytes
					}
					wantAlert(t, fmt.Sprintf("flip byte %d bit %#x", i, bit), err, want)
				}
			}

			// Truncated at every length, with the header left stale:
			// length mismatch.
			for n := 0; n < len(good); n++ {
				_, _, err := p.Open(seq, bytes.Clone(good[:n]))
				wantAlert(t, fmt.Sprintf("truncated to %d", n), err, 50)
			}

			// Truncated with a consistent header: too short for the
			// AEAD, or fails authentication.
			min := p.Overhead()
			if s.Version == tls.VersionTLS13 {
				min-- // the tag alone is enough to try
			}
			for n := 0; n < len(good)-HeaderLen; n++ {
				rec := append([]byte(nil), good[:HeaderLen+n]...)
				binary.BigEndian.PutUint16(rec[3:], uint16(n))
				_, _, err := p.Open(seq, rec)
				if n < min {
					wantAlert(t, fmt.Sprintf("fragment of %d", n), err, 50)
				} else {
					wantAlert(t, fmt.Sprintf("fragment of %d", n), err, 20)
				}
			}

			// Oversized: a length beyond the version's maximum.
			max := MaxCiphertext(s.Version)
			big := make([]byte, HeaderLen+max+1)
			copy(big, good[:3])
			binary.BigEndian.PutUint16(big[3:], uint16(max+1))
			_, _, err := p.Open(seq, big)
			wantAlert(t, "oversized", err, 22)
			// At exactly the maximum it is merely a forgery.
			binary.BigEndian.PutUint16(big[3:], uint16(max))
			_, _, err = p.Open(seq, big[:HeaderLen+max])
			wantAlert(t, "maximum size forgery", err, 20)

			// Wrong sequence number.
			_, _, err = p.Open(seq+1, bytes.Clone(good))
			wantAlert(t, "wrong seq", err, 20)

			// The record still opens after all that.
			if _, _, err := p.Open(seq, bytes.Clone(good)); err != nil {
				t.Fatal(err)
			}

			if s.Version == tls.VersionTLS13 {
				testOpenTLS13Inner(t, s, p)
			} else {
				testOpenTLS12Overflow(t, s, p)
			}
		})
	}
}

// sealInner13 protects an arbitrary TLSInnerPlaintext, which Seal never
// makes (zero type, padding, oversize).
func sealInner13(t *testing.T, s keyschedule.Suite, seq uint64, inner []byte) []byte {
	aead := rawAEAD(t, s)
	_, iv := testKey(s)
	nonce := bytes.Clone(iv)
	for i := range 8 {
		nonce[4+i] ^= byte(seq >> (56 - 8*i))
	}
	n := len(inner) + aead.Overhead()
	hdr := []byte{23, 3, 3, byte(n >> 8), byte(n)}
	return aead.Seal(hdr, nonce, inner, hdr)
}

func testOpenTLS13Inner(t *testing.T, s keyschedule.Suite, p *Protector) {
	// Padding is removed and the type is the last non-zero byte (RFC 8446
	// §5.4).
	inner := append([]byte("data"), TypeHandshake)
	inner = append(inner, make([]byte, 300)...)
	typ, pt, err := p.Open(5, sealInner13(t, s, 5, inner))
	if err != nil || typ != TypeHandshake || string(pt) != "data" {
		t.Errorf("padded: %d %q %v", typ, pt, err)
	}
	// Only padding and a type: an empty record of that type.
	typ, pt, err = p.Open(5, sealInner13(t, s, 5, []byte{TypeApplicationData, 0, 0}))
	if err != nil || typ != TypeApplicationData || len(pt) != 0 {
		t.Errorf("empty padded: %d %q %v", typ, pt, err)
	}
	// Maximum: 2^14 bytes of content, the type, and 0 padding is fine;
	// with padding up to 2^14+1 bytes of inner plaintext also fine.
	inner = append(make([]byte, MaxPlaintext), TypeApplicationData)
	if _, pt, err := p.Open(6, sealInner13(t, s, 6, inner)); err != nil || len(pt) != MaxPlaintext {
		t.Errorf("maximum: %d %v", len(pt), err)
	}
	// All zeros: no content type (RFC 8446 §5.4).
	for _, n := range []int{0, 1, 100, MaxPlaintext + 1} {
		_, _, err := p.Open(7, sealInner13(t, s, 7, make([]byte, n)))
		wantAlert(t, fmt.Sprintf("all-zero inner plaintext of %d", n), err, 10)
	}
	// Inner plaintext beyond 2^14+1 bytes (RFC 8446 §5.4), still within
	// the ciphertext limit of 2^14+256.
	for _, n := range []int{MaxPlaintext + 2, MaxPlaintext + 256 - 16} {
		inner := append(make([]byte, n-1), TypeApplicationData)
		_, _, err := p.Open(8, sealInner13(t, s, 8, inner))
		wantAlert(t, fmt.Sprintf("inner plaintext of %d", n), err, 22)
	}
	// Wrong outer types, even with a valid tag.
	for _, typ := range []uint8{0, TypeChangeCipherSpec, TypeAlert, TypeHandshake, 24, 0xff} {
		rec := sealInner13(t, s, 9, []byte{1, TypeApplicationData})
		rec[0] = typ
		_, _, err := p.Open(9, rec)
		wantAlert(t, fmt.Sprintf("outer type %d", typ), err, 10)
	}
}

func testOpenTLS12Overflow(t *testing.T, s keyschedule.Suite, p *Protector) {
	// A plaintext beyond 2^14 bytes authenticates but overflows (RFC 5246
	// §6.2.3; crypto/tls checks the same after decryption).
	aead := rawAEAD(t, s)
	_, iv := testKey(s)
	const seq = 3
	n := MaxPlaintext + 1
	hdr := []byte{TypeApplicationData, 3, 3, 0, 0}
	aad := binary.BigEndian.AppendUint64(nil, seq)
	aad = append(aad, hdr[:3]...)
	aad = binary.BigEndian.AppendUint16(aad, uint16(n))
	var nonce, rec []byte
	if s.AES {
		nonce = binary.BigEndian.AppendUint64(bytes.Clone(iv), 12345) // any explicit nonce
		rec = append(hdr, nonce[4:]...)
	} else {
		nonce = bytes.Clone(iv)
		for i := range 8 {
			nonce[4+i] ^= byte(uint64(seq) >> (56 - 8*i))
		}
		rec = hdr
	}
	rec = aead.Seal(rec, nonce, make([]byte, n), aad)
	binary.BigEndian.PutUint16(rec[3:], uint16(len(rec)-HeaderLen))
	_, _, err := p.Open(seq, rec)
	wantAlert(t, "TLS 1.2 plaintext of 2^14+1", err, 22)

	// A peer's explicit nonce need not be the sequence number (RFC 5288
	// §3 lets the sender choose): the record above at 2^14 bytes opens.
	if s.AES {
		n = MaxPlaintext
		aad = binary.BigEndian.AppendUint64(nil, seq)
		aad = append(aad, hdr[:3]...)
		aad = binary.BigEndian.AppendUint16(aad, uint16(n))
		rec = append(append([]byte{}, hdr...), nonce[4:]...)
		rec = aead.Seal(rec, nonce, make([]byte, n), aad)
		binary.BigEndian.PutUint16(rec[3:], uint16(len(rec)-HeaderLen))
		if _, pt, err := p.Open(seq, rec); err != nil || len(pt) != n {
			t.Errorf("explicit nonce other than seq: %v", err)
		}
	}

	// The record version is authenticated in TLS 1.2.
	good := p.Seal(nil, 4, TypeHandshake, []byte("x"))
	good[2] = 1
	_, _, err = p.Open(4, good)
	wantAlert(t, "TLS 1.2 version changed", err, 20)
	// So is the type.
	good = p.Seal(nil, 4, TypeHandshake, []byte("x"))
	good[0] = TypeApplicationData
	_, _, err = p.Open(4, good)
	wantAlert(t, "TLS 1.2 type changed", err, 20)
}

func TestSealOpenAllocs(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		p := newTestProtector(t, s)
		pt := make([]byte, MaxPlaintext)
		buf := make([]byte, 0, p.SealedLen(MaxPlaintext))
		var rec []byte
		seq := uint64(0)
		if n := testing.AllocsPerRun(100, func() {
			rec = p.Seal(buf[:0], seq, TypeApplicationData, pt)
		}); n != 0 {
			t.Errorf("%s: Seal allocates %v times", suiteName(s), n)
		}
		work := make([]byte, len(rec))
		if n := testing.AllocsPerRun(100, func() {
			copy(work, rec)
			if _, _, err := p.Open(seq, work); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: Open allocates %v times", suiteName(s), n)
		}
		if n := testing.AllocsPerRun(100, func() {
			work[len(work)-1] ^= 1
			p.Open(seq, work)
		}); n != 0 {
			t.Errorf("%s: failed Open allocates %v times", suiteName(s), n)
		}
	}
}

func TestSealPanicsOnOversize(t *testing.T) {
	p := newTestProtector(t, keyschedule.Suites()[0])
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	p.Seal(nil, 0, TypeApplicationData, make([]byte, MaxPlaintext+1))
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{23, 3, 3, 0, 20})
	f.Add([]byte{22, 3, 1, 0xff, 0xff, 0})
	f.Add([]byte{})
	f.Add([]byte{0x80, 0x2c})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if len(b) < HeaderLen {
			if err == nil {
				t.Fatal("short header accepted")
			}
			return
		}
		if err != nil || h.Type != b[0] || h.Version != uint16(b[1])<<8|uint16(b[2]) || h.Length != int(b[3])<<8|int(b[4]) {
			t.Fatalf("%x: %+v %v", b, h, err)
		}
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			if err := CheckHeader(v, h); err != nil {
				var a tls.AlertError
				if !errors.As(err, &a) {
					t.Fatalf("CheckHeader: %v", err)
				}
			}
		}
	})
}

// FuzzOpen opens arbitrary bytes under every suite: never a panic, every
// error an alert. Its second half seals the input as plaintext and opens it
// back.
func FuzzOpen(f *testing.F) {
	suites := keyschedule.Suites()
	for i, s := range suites {
		p := newTestProtector(f, s)
		f.Add(uint8(i), uint64(0), p.Seal(nil, 0, TypeApplicationData, []byte("seed")))
		f.Add(uint8(i), uint64(1), p.Seal(nil, 1, TypeHandshake, nil))
		f.Add(uint8(i), uint64(1<<40), p.Seal(nil, 1<<40, TypeAlert, []byte{1, 0}))
	}
	f.Add(uint8(0), uint64(0), []byte{23, 3, 3, 0, 0})
	f.Add(uint8(3), uint64(0), []byte{23, 3, 3, 0x48, 0x01})
	f.Add(uint8(0), uint64(0), []byte{})
	protectors := make([]*Protector, len(suites))
	for i, s := range suites {
		protectors[i] = newTestProtector(f, s)
	}
	f.Fuzz(func(t *testing.T, which uint8, seq uint64, rec []byte) {
		p := protectors[int(which)%len(protectors)]
		typ, pt, err := p.Open(seq, bytes.Clone(rec))
		if err != nil {
			var a tls.AlertError
			if !errors.As(err, &a) || !strings.HasPrefix(err.Error(), "record: ") {
				t.Fatalf("error %v", err)
			}
		} else {
			if len(pt) > MaxPlaintext {
				t.Fatalf("plaintext of %d", len(pt))
			}
			// Something authenticated: it must seal back to the input
			// when the input carried no padding (TLS 1.3) and its
			// explicit nonce was seq (TLS 1.2 AES-GCM).
			if again := p.Seal(nil, seq, typ, pt); len(again) == len(rec) && p.Suite().Version == tls.VersionTLS13 && !bytes.Equal(again, rec) {
				t.Fatalf("authenticated record does not reseal")
			}
		}
		// Round trip of the input as plaintext.
		if len(rec) > MaxPlaintext {
			rec = rec[:MaxPlaintext]
		}
		sealed := p.Seal(nil, seq, which|1, rec)
		gtyp, got, err := p.Open(seq, sealed)
		if err != nil || gtyp != which|1 || !bytes.Equal(got, rec) {
			t.Fatalf("round trip: %d %v", gtyp, err)
		}
	})
}
