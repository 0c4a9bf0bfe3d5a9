// Package record frames and protects TLS records exactly as crypto/tls puts
// them on the wire: TLS 1.3 AEAD records (RFC 8446 §5.2–5.4), TLS 1.2
// AES-GCM (RFC 5288, RFC 5246 §6.2.3.3) and TLS 1.2 ChaCha20-Poly1305
// (RFC 7905).
//
// A Protector seals and opens the records of one direction under one key. It
// holds no sequence number: the caller passes it with every record, so that
// package conn can trial-open records at a known sequence number, and so that
// each engine keeps its own count.
package record

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/ktls-go/ktls/internal/keyschedule"
)

// HeaderLen is the length of a record header: type, version, length (RFC 8446
// §5.1, RFC 5246 §6.2.1).
const HeaderLen = 5

// MaxPlaintext is the largest plaintext one record may carry, 2^14 bytes
// (RFC 8446 §5.1, RFC 5246 §6.2.1).
const MaxPlaintext = 1 << 14

// Content types (RFC 8446 §5.1, RFC 5246 §6.2.1).
const (
	TypeChangeCipherSpec uint8 = 20
	TypeAlert            uint8 = 21
	TypeHandshake        uint8 = 22
	TypeApplicationData  uint8 = 23
)

// versionTLS12 is the record-layer version of every protected record:
// TLS 1.2's own (RFC 5246 §6.2.1) and TLS 1.3's legacy_record_version (RFC
// 8446 §5.1, §5.2).
const versionTLS12 = 0x0303

// Alerts a record error wraps, as crypto/tls names them (RFC 8446 §6.2),
// here and in the engines that open records themselves (backend.Opener:
// the error wraps the alert the connection must send).
const (
	AlertUnexpectedMessage = tls.AlertError(10)
	AlertBadRecordMAC      = tls.AlertError(20)
	AlertRecordOverflow    = tls.AlertError(22)
	AlertDecodeError       = tls.AlertError(50)
	AlertProtocolVersion   = tls.AlertError(70)
	AlertInternalError     = tls.AlertError(80)
)

// ErrUnsupported is wrapped by NewProtector for a version and suite it cannot
// protect; nothing else was wrong with the arguments.
var ErrUnsupported = errors.New("record: unsupported version or cipher suite")

// MaxCiphertext returns the largest length field a protected record of the
// version may carry: 2^14+256 for TLS 1.3 (RFC 8446 §5.2), 2^14+2048 for
// TLS 1.2 (RFC 5246 §6.2.3).
func MaxCiphertext(version uint16) int {
	if version == tls.VersionTLS13 {
		return MaxPlaintext + 256
	}
	return MaxPlaintext + 2048
}

// Header is a parsed record header (RFC 8446 §5.1, RFC 5246 §6.2.1).
type Header struct {
	Type    uint8
	Version uint16
	Length  int
}

// ParseHeader parses the first HeaderLen bytes of b. It checks only that there
// are enough bytes; what the type, version and length may be is the caller's
// policy.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("record: header of %d bytes, want %d: %w", len(b), HeaderLen, AlertDecodeError)
	}
	return Header{
		Type:    b[0],
		Version: binary.BigEndian.Uint16(b[1:3]),
		Length:  int(binary.BigEndian.Uint16(b[3:5])),
	}, nil
}

// Protector protects the records of one direction under one key.
//
// A Protector is not safe for concurrent use: it keeps the scratch space for
// nonces and additional data in itself so that sealing and opening allocate
// nothing.
type Protector struct {
	version  uint16
	suite    keyschedule.Suite
	aead     cipher.AEAD
	explicit int // explicit nonce bytes per record: 8 for TLS 1.2 AES-GCM, else 0
	overhead int // bytes a record adds to its plaintext, header excluded

	// iv is the 12-byte IV of TLS 1.3 and TLS 1.2 ChaCha20-Poly1305, or the
	// 4-byte salt of TLS 1.2 AES-GCM in iv[:4].
	iv [keyschedule.NonceLen]byte
	// nonce and aad are scratch space.
	nonce [keyschedule.NonceLen]byte
	aad   [13]byte
}

// NewProtector returns a Protector for a crypto/tls version and cipher suite.
// key and iv are copied (iv is the 4-byte salt for TLS 1.2 AES-GCM); the
// caller may zero them when NewProtector returns. An unknown or non-AEAD suite
// gives an error that wraps ErrUnsupported.
func NewProtector(version, suite uint16, key, iv []byte) (*Protector, error) {
	s, ok := keyschedule.Lookup(version, suite)
	if !ok {
		return nil, fmt.Errorf("%w: version %#04x, suite %#04x", ErrUnsupported, version, suite)
	}
	if len(key) != s.KeyLen {
		return nil, fmt.Errorf("record: %s key of %d bytes, want %d", s.Name(), len(key), s.KeyLen)
	}
	if len(iv) != s.IVLen {
		return nil, fmt.Errorf("record: %s IV of %d bytes, want %d", s.Name(), len(iv), s.IVLen)
	}
	var aead cipher.AEAD
	var err error
	if s.AES {
		var block cipher.Block
		if block, err = aes.NewCipher(key); err == nil {
			aead, err = cipher.NewGCM(block)
		}
	} else {
		aead, err = chacha20poly1305.New(key)
	}
	if err != nil {
		// Not the key's bytes (their length was checked above): a
		// construction the running mode refuses, such as FIPS 140-only.
		return nil, fmt.Errorf("%w: %s: %v", ErrUnsupported, s.Name(), err)
	}
	return NewProtectorWithAEAD(version, suite, aead, iv)
}

// NewProtectorWithAEAD is NewProtector with the AEAD supplied by the caller
// instead of built from a key: an engine whose AEAD is not crypto/cipher's
// (the afalg engine's, whose seal and open run in the kernel crypto API)
// keeps this package's framing, nonces and additional data. aead must take
// the whole 12-byte nonce (NonceSize 12) and give a 16-byte tag (Overhead
// 16), as crypto/cipher's GCM and x/crypto's ChaCha20-Poly1305 do; iv is
// copied as by NewProtector.
func NewProtectorWithAEAD(version, suite uint16, aead cipher.AEAD, iv []byte) (*Protector, error) {
	s, ok := keyschedule.Lookup(version, suite)
	if !ok {
		return nil, fmt.Errorf("%w: version %#04x, suite %#04x", ErrUnsupported, version, suite)
	}
	if len(iv) != s.IVLen {
		return nil, fmt.Errorf("record: %s IV of %d bytes, want %d", s.Name(), len(iv), s.IVLen)
	}
	if aead == nil || aead.NonceSize() != keyschedule.NonceLen || aead.Overhead() != keyschedule.TagLen {
		return nil, fmt.Errorf("record: %s needs an AEAD with a %d-byte nonce and a %d-byte tag", s.Name(), keyschedule.NonceLen, keyschedule.TagLen)
	}
	p := &Protector{version: version, suite: s, aead: aead}
	copy(p.iv[:], iv)
	if version == tls.VersionTLS12 && s.AES {
		p.explicit = keyschedule.ExplicitNonceLen
	}
	p.overhead = p.explicit + aead.Overhead()
	if version == tls.VersionTLS13 {
		p.overhead++ // the inner content type (RFC 8446 §5.2); ktls never pads
	}
	return p, nil
}

// Suite returns the suite the Protector was made for.
func (p *Protector) Suite() keyschedule.Suite { return p.suite }

// Version returns the protocol version the Protector was made for.
func (p *Protector) Version() uint16 { return p.version }

// Matches reports whether the Protector was made for version, suite and iv.
// An engine handed a Protector with its parameters (backend.Params.Protector)
// checks this before it takes it: the key cannot be compared, but a
// Protector of another direction or connection has another IV.
func (p *Protector) Matches(version, suite uint16, iv []byte) bool {
	return p.version == version && p.suite.ID == suite && len(iv) == p.suite.IVLen &&
		subtle.ConstantTimeCompare(p.iv[:len(iv)], iv) == 1
}

// Overhead returns how many bytes a record adds to its plaintext, the header
// excluded: the tag, plus the explicit nonce (TLS 1.2 AES-GCM) or the inner
// content type (TLS 1.3).
func (p *Protector) Overhead() int { return p.overhead }

// SealedLen returns the length of the record Seal makes of n plaintext bytes,
// header included.
func (p *Protector) SealedLen(n int) int { return HeaderLen + n + p.overhead }

// xorNonce sets p.nonce to the IV XOR the sequence number, left-padded to
// the IV length (RFC 8446 §5.3, RFC 7905 §2).
func (p *Protector) xorNonce(seq uint64) []byte {
	p.nonce = p.iv
	binary.BigEndian.PutUint64(p.nonce[4:], binary.BigEndian.Uint64(p.iv[4:])^seq)
	return p.nonce[:]
}

// aad12 builds the TLS 1.2 additional data (RFC 5246 §6.2.3.3):
//
//	additional_data = seq_num + TLSCompressed.type +
//	                  TLSCompressed.version + TLSCompressed.length;
func (p *Protector) aad12(seq uint64, hdr []byte, n int) []byte {
	binary.BigEndian.PutUint64(p.aad[:8], seq)
	p.aad[8], p.aad[9], p.aad[10] = hdr[0], hdr[1], hdr[2]
	binary.BigEndian.PutUint16(p.aad[11:], uint16(n))
	return p.aad[:]
}

// Seal appends to dst one complete record, header and protected fragment, of
// content type typ carrying plaintext, protected at sequence number seq, and
// returns the extended slice. plaintext may alias dst's spare capacity.
//
// For TLS 1.3 the record is application_data on the outside with typ inside
// (RFC 8446 §5.2) and no padding. For TLS 1.2 AES-GCM the explicit nonce is
// seq, as crypto/tls does it (conn.go, halfConn.encrypt) and as the kernel
// continues it.
//
// len(plaintext) must not exceed MaxPlaintext: that is the caller's
// framing, and a longer plaintext is a programming error that panics.
func (p *Protector) Seal(dst []byte, seq uint64, typ uint8, plaintext []byte) []byte {
	return p.seal(dst, seq, typ, plaintext, false, false)
}

// SealFrom is Seal without Seal's copy of the plaintext into the record:
// the AEAD reads plaintext where it is and writes the record's fragment,
// which plaintext must not overlap. For TLS 1.3 the AEAD's input is the
// plaintext followed by its content type (RFC 8446 §5.2), in one piece:
// with lent true, plaintext must have one byte of capacity past its end,
// which SealFrom sets to typ for the AEAD and then puts back, so nothing
// may read it during the call; with lent false a TLS 1.3 record is sealed
// as by Seal. crypto/tls seals TLS 1.2 records from the caller's bytes so
// too (conn.go, halfConn.encrypt).
func (p *Protector) SealFrom(dst []byte, seq uint64, typ uint8, plaintext []byte, lent bool) []byte {
	return p.seal(dst, seq, typ, plaintext, true, lent)
}

// seal is Seal (apart false) and SealFrom.
func (p *Protector) seal(dst []byte, seq uint64, typ uint8, plaintext []byte, apart, lent bool) []byte {
	n := len(plaintext)
	if n > MaxPlaintext {
		panic("record: Seal of more than 2^14 bytes")
	}
	total := HeaderLen + n + p.overhead
	var out []byte
	if free := cap(dst) - len(dst); free >= total {
		out = dst[:len(dst)+total]
	} else {
		out = make([]byte, len(dst)+total, len(dst)+max(total, len(dst)))
		copy(out, dst)
	}
	rec := out[len(dst):]
	body := rec[HeaderLen+p.explicit:]
	tls13 := p.version == tls.VersionTLS13
	if apart && tls13 && (!lent || cap(plaintext) == n) {
		apart = false
	}
	if !apart {
		// copy is a memmove: plaintext may overlap rec anywhere. The
		// header goes in after it, so a plaintext in dst's spare
		// capacity survives.
		copy(body, plaintext)
	}

	fragLen := total - HeaderLen
	rec[1], rec[2] = versionTLS12>>8, versionTLS12&0xff
	rec[3], rec[4] = byte(fragLen>>8), byte(fragLen)

	if p.version == tls.VersionTLS13 {
		// TLSInnerPlaintext = content || ContentType || zeros (RFC 8446
		// §5.2); additional_data = the record header (§5.2).
		rec[0] = TypeApplicationData
		if apart {
			inner := plaintext[:n+1]
			saved := inner[n]
			inner[n] = typ
			p.aead.Seal(body[:0], p.xorNonce(seq), inner, rec[:HeaderLen])
			inner[n] = saved
			return out
		}
		body[n] = typ
		p.aead.Seal(body[:0], p.xorNonce(seq), body[:n+1], rec[:HeaderLen])
		return out
	}
	src := body[:n]
	if apart {
		src = plaintext
	}

	rec[0] = typ
	aad := p.aad12(seq, rec, n)
	if p.explicit > 0 {
		// GCMNonce = salt || nonce_explicit (RFC 5288 §3).
		binary.BigEndian.PutUint64(rec[HeaderLen:], seq)
		copy(p.nonce[:keyschedule.SaltLen], p.iv[:keyschedule.SaltLen])
		binary.BigEndian.PutUint64(p.nonce[keyschedule.SaltLen:], seq)
		p.aead.Seal(body[:0], p.nonce[:], src, aad)
		return out
	}
	p.aead.Seal(body[:0], p.xorNonce(seq), src, aad)
	return out
}

// Open authenticates and decrypts rec, one complete record including its
// header, at sequence number seq. It decrypts in place, overwriting rec, and
// returns the content type and a subslice of rec holding the plaintext. For
// TLS 1.3 the type is the inner content type and the padding is removed
// (RFC 8446 §5.4).
//
// Every error wraps the tls.AlertError the connection must send:
// decode_error for a record too short for its AEAD or whose length field
// disagrees with len(rec), record_overflow for a record longer than the
// version allows (RFC 8446 §5.2, §5.4; RFC 5246 §6.2.3), unexpected_message
// for a TLS 1.3 record whose outer type is not application_data or whose
// plaintext has no non-zero byte (RFC 8446 §5.2, §5.4), and bad_record_mac
// for a record that fails authentication. Open does not check the record
// version: that is the caller's policy (and for TLS 1.2 it is authenticated).
//
// After a failed Open the contents of rec are unspecified (the AEADs clear
// their output on failure): to try a record under several keys or sequence
// numbers, open copies of it.
func (p *Protector) Open(seq uint64, rec []byte) (typ uint8, plaintext []byte, err error) {
	return p.open(nil, true, seq, rec)
}

// OpenTo is Open with the plaintext written to dst[:0] instead of over rec:
// the AEAD's whole output, which for TLS 1.3 is the inner plaintext with its
// content type and padding (RFC 8446 §5.2), OpenedLen(len(rec)) bytes, is
// written there, and the returned plaintext is a prefix of dst. dst must not
// overlap rec, and should have that capacity (the AEAD allocates otherwise).
// rec is left as it was. After a failed OpenTo, what dst holds up to
// OpenedLen bytes is unspecified: crypto/cipher's GCM (with assembly, amd64
// and arm64) and x/crypto's ChaCha20-Poly1305 (amd64) decrypt while they
// authenticate and zero their output when the tag is wrong
// (crypto/internal/fips140/aes/gcm, gcm.go Open; chacha20poly1305_amd64.go),
// but an AEAD from NewProtectorWithAEAD need not, and an authentic record
// that fails a later check (record_overflow, no content type) leaves its
// plaintext there.
func (p *Protector) OpenTo(dst []byte, seq uint64, rec []byte) (typ uint8, plaintext []byte, err error) {
	return p.open(dst[:0], false, seq, rec)
}

// OpenedLen returns how many bytes Open and OpenTo write for a record of
// recLen bytes, header included: the fragment less its explicit nonce and
// tag. It may exceed MaxPlaintext (TLS 1.3 padding, RFC 8446 §5.4) and is
// meaningless for a record too short to open.
func (p *Protector) OpenedLen(recLen int) int {
	return recLen - HeaderLen - p.explicit - p.aead.Overhead()
}

// open is Open (inPlace) and OpenTo (dst).
func (p *Protector) open(dst []byte, inPlace bool, seq uint64, rec []byte) (typ uint8, plaintext []byte, err error) {
	h, err := ParseHeader(rec)
	if err != nil {
		return 0, nil, err
	}
	if h.Length != len(rec)-HeaderLen {
		return 0, nil, fmt.Errorf("record: length field %d but %d bytes follow the header: %w", h.Length, len(rec)-HeaderLen, AlertDecodeError)
	}
	if h.Length > MaxCiphertext(p.version) {
		return 0, nil, fmt.Errorf("record: protected record of %d bytes exceeds %d: %w", h.Length, MaxCiphertext(p.version), AlertRecordOverflow)
	}
	frag := rec[HeaderLen:]
	tag := p.aead.Overhead()
	if len(frag) < p.explicit+tag {
		return 0, nil, fmt.Errorf("record: protected record of %d bytes is shorter than its nonce and tag: %w", len(frag), AlertDecodeError)
	}

	if p.version == tls.VersionTLS13 {
		if h.Type != TypeApplicationData {
			// RFC 8446 §5.2: every protected record is application_data
			// on the outside.
			return 0, nil, fmt.Errorf("record: protected TLS 1.3 record of outer type %d: %w", h.Type, AlertUnexpectedMessage)
		}
		if inPlace {
			dst = frag[:0]
		}
		pt, err := p.aead.Open(dst, p.xorNonce(seq), frag, rec[:HeaderLen])
		if err != nil {
			return 0, nil, errBadRecordMAC
		}
		// RFC 8446 §5.4: TLSInnerPlaintext must not exceed 2^14+1 bytes.
		if len(pt) > MaxPlaintext+1 {
			return 0, nil, fmt.Errorf("record: TLS 1.3 inner plaintext of %d bytes: %w", len(pt), AlertRecordOverflow)
		}
		// The content type is the last non-zero byte; the zeros after it
		// are padding (RFC 8446 §5.4).
		for i := len(pt) - 1; i >= 0; i-- {
			if pt[i] != 0 {
				return pt[i], pt[:i], nil
			}
		}
		return 0, nil, errNoContentType
	}

	ct := frag[p.explicit:]
	var nonce []byte
	if p.explicit > 0 {
		// GCMNonce = salt || nonce_explicit, the explicit part as the
		// sender chose it (RFC 5288 §3).
		copy(p.nonce[:keyschedule.SaltLen], p.iv[:keyschedule.SaltLen])
		copy(p.nonce[keyschedule.SaltLen:], frag[:p.explicit])
		nonce = p.nonce[:]
	} else {
		nonce = p.xorNonce(seq)
	}
	if inPlace {
		dst = ct[:0]
	}
	pt, err := p.aead.Open(dst, nonce, ct, p.aad12(seq, rec, len(ct)-tag))
	if err != nil {
		return 0, nil, errBadRecordMAC
	}
	if len(pt) > MaxPlaintext {
		return 0, nil, fmt.Errorf("record: plaintext of %d bytes: %w", len(pt), AlertRecordOverflow)
	}
	return h.Type, pt, nil
}

// Errors without variable parts are made once: Open allocates nothing, not
// even on a forged record.
var (
	errBadRecordMAC  = fmt.Errorf("record: message authentication failed: %w", AlertBadRecordMAC)
	errNoContentType = fmt.Errorf("record: TLS 1.3 inner plaintext has no content type: %w", AlertUnexpectedMessage)
)

// CheckHeader applies to a header what every engine checks before it reads a
// protected record's body, in crypto/tls's order (conn.go, readRecordOrCCS):
// a record version other than 0x0303 is protocol_version (RFC 8446 §5.1,
// RFC 5246 §6.2.1 and Appendix E.1), a length beyond MaxCiphertext is
// record_overflow, and for TLS 1.3 an outer type other than application_data
// is unexpected_message (RFC 8446 §5.2).
func CheckHeader(version uint16, h Header) error {
	if h.Version != versionTLS12 {
		return fmt.Errorf("record: record version %#04x, want 0x0303: %w", h.Version, AlertProtocolVersion)
	}
	if h.Length > MaxCiphertext(version) {
		return fmt.Errorf("record: protected record of %d bytes exceeds %d: %w", h.Length, MaxCiphertext(version), AlertRecordOverflow)
	}
	if version == tls.VersionTLS13 && h.Type != TypeApplicationData {
		return fmt.Errorf("record: protected TLS 1.3 record of outer type %d: %w", h.Type, AlertUnexpectedMessage)
	}
	return nil
}
