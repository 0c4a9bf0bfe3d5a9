package recordlayer

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"runtime"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
)

// goAEAD builds the suite's AEAD from p's key, as internal/record does.
func goAEAD(t *testing.T, s keyschedule.Suite, key []byte) cipher.AEAD {
	t.Helper()
	var a cipher.AEAD
	var err error
	if s.AES {
		var b cipher.Block
		if b, err = aes.NewCipher(key); err == nil {
			a, err = cipher.NewGCM(b)
		}
	} else {
		a, err = chacha20poly1305.New(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sealInner13 protects an arbitrary TLSInnerPlaintext (content, type,
// padding: RFC 8446 §5.2) at seq, which record.Protector never makes: it
// neither pads nor seals more than 2^14+1 bytes.
func sealInner13(t *testing.T, s keyschedule.Suite, p backend.Params, seq uint64, inner []byte) []byte {
	t.Helper()
	a := goAEAD(t, s, p.Key)
	nonce := bytes.Clone(p.IV)
	binary.BigEndian.PutUint64(nonce[4:], binary.BigEndian.Uint64(nonce[4:])^seq)
	n := len(inner) + a.Overhead()
	hdr := []byte{backend.TypeApplicationData, 3, 3, byte(n >> 8), byte(n)}
	return a.Seal(hdr, nonce, inner, hdr)
}

// intoCase is one record of TestReadRecordInto's stream and what opening it
// gives.
type intoCase struct {
	name string
	rec  []byte
	typ  uint8
	data []byte
}

// TestReadRecordInto opens records of every size boundary, padded TLS 1.3
// records and records of other types through ReadRecordInto, into buffers
// of MaxPlaintext bytes, of exactly the AEAD's output and one byte less, and
// of 64 KiB, and checks each against what was sealed. ReadRecord reads
// every other record, so the sequence numbers of both paths must agree.
func TestReadRecordInto(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			p := randomParams(s, 7)
			prot, err := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
			if err != nil {
				t.Fatal(err)
			}
			tls13 := s.Version == tls.VersionTLS13
			pattern := func(n int) []byte {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(i*7 + n)
				}
				return b
			}
			var cases []intoCase
			seq := p.Seq
			add := func(name string, typ uint8, data []byte) {
				cases = append(cases, intoCase{name, prot.Seal(nil, seq, typ, data), typ, data})
				seq++
			}
			for _, n := range []int{0, 1, 1023, backend.MaxPlaintext - 1, backend.MaxPlaintext} {
				add("data", backend.TypeApplicationData, pattern(n))
			}
			add("alert", backend.TypeAlert, []byte{1, 0})
			add("handshake", backend.TypeHandshake, []byte{24, 0, 0, 1, 0})
			if tls13 {
				pad := func(name string, typ uint8, data []byte, zeros int) {
					inner := append(append(bytes.Clone(data), typ), make([]byte, zeros)...)
					cases = append(cases, intoCase{name, sealInner13(t, s, p, seq, inner), typ, data})
					seq++
				}
				// Inner plaintexts of 2^14+1 bytes, the most RFC 8446
				// §5.4 allows: one byte more than a MaxPlaintext buffer.
				pad("padded to the limit", backend.TypeApplicationData, pattern(100), backend.MaxPlaintext-100)
				pad("padded empty", backend.TypeApplicationData, nil, backend.MaxPlaintext)
				pad("padded handshake", backend.TypeHandshake, []byte{24, 0, 0, 1, 1}, 40)
				pad("padded a little", backend.TypeApplicationData, pattern(5000), 3)
			}
			var stream []byte
			for _, c := range cases {
				stream = append(stream, c.rec...)
			}

			for _, fit := range []string{"MaxPlaintext", "exact", "exact-1", "64KiB"} {
				t.Run(fit, func(t *testing.T) {
					o, err := goEngine().NewOpener(backend.Link{Conn: &readerConn{r: bytes.NewReader(stream)}}, cloneParams(p))
					if err != nil {
						t.Fatal(err)
					}
					defer o.Close()
					for i, c := range cases {
						var typ uint8
						var data []byte
						if i%2 == 1 {
							typ, data, err = o.ReadRecord()
						} else {
							size := backend.MaxPlaintext
							switch fit {
							case "exact":
								size = max(prot.OpenedLen(len(c.rec)), backend.MaxPlaintext)
							case "exact-1":
								size = max(prot.OpenedLen(len(c.rec))-1, backend.MaxPlaintext)
							case "64KiB":
								size = 64 << 10
							}
							buf := bytes.Repeat([]byte{0xaa}, size)
							var n int
							typ, n, err = o.(backend.IntoReader).ReadRecordInto(buf)
							data = buf[:n]
							if n > 0 && &data[0] != &buf[0] {
								t.Fatalf("%s: plaintext not at the start of the buffer", c.name)
							}
						}
						if err != nil {
							t.Fatalf("record %d (%s, %d bytes): %v", i, c.name, len(c.rec), err)
						}
						if typ != c.typ || !bytes.Equal(data, c.data) {
							t.Fatalf("record %d (%s): type %d, %d bytes; want type %d, %d bytes", i, c.name, typ, len(data), c.typ, len(c.data))
						}
					}
				})
			}
		})
	}
}

// TestReadRecordIntoForged: a record that fails authentication, or whose
// authenticated inner plaintext is too long, leaves no plaintext in the
// caller's buffer, the error is sticky, and the record after it is never
// opened.
func TestReadRecordIntoForged(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			p := randomParams(s, 0)
			prot, _ := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
			secret := bytes.Repeat([]byte("secret!"), 2000)
			good := prot.Seal(nil, 0, backend.TypeApplicationData, secret)
			forged := bytes.Clone(good)
			forged[len(forged)-1] ^= 1
			cases := []struct {
				name string
				rec  []byte
				want tls.AlertError
			}{{"tampered tag", forged, 20}}
			if s.Version == tls.VersionTLS13 {
				// Authentic, but 2^14+2 bytes of inner plaintext:
				// record_overflow (RFC 8446 §5.4).
				long := append(bytes.Clone(secret), backend.TypeApplicationData)
				long = append(long, make([]byte, backend.MaxPlaintext+2-len(long))...)
				cases = append(cases, struct {
					name string
					rec  []byte
					want tls.AlertError
				}{"inner plaintext too long", sealInner13(t, s, p, 0, long), 22})
			}
			for _, c := range cases {
				next := prot.Seal(nil, 1, backend.TypeApplicationData, []byte("never"))
				stream := append(bytes.Clone(c.rec), next...)
				o, err := goEngine().NewOpener(backend.Link{Conn: eofConn{}, Buffered: stream}, cloneParams(p))
				if err != nil {
					t.Fatal(err)
				}
				buf := bytes.Repeat([]byte{0xaa}, 64<<10)
				_, n, err := o.(backend.IntoReader).ReadRecordInto(buf)
				checkErr(t, c.name, err, c.want)
				if n != 0 {
					t.Errorf("%s: n = %d", c.name, n)
				}
				if bytes.Contains(buf, []byte("secret!")) {
					t.Errorf("%s: plaintext left in the caller's buffer", c.name)
				}
				_, n2, err2 := o.(backend.IntoReader).ReadRecordInto(buf)
				if err2 != err || n2 != 0 {
					t.Errorf("%s: not sticky: %v then %d, %v", c.name, err, n2, err2)
				}
				if _, _, err3 := o.ReadRecord(); err3 != err {
					t.Errorf("%s: ReadRecord after it: %v", c.name, err3)
				}
				o.Close()
			}
		})
	}
}

// spyAEAD is an engine's AEAD (New's newAEAD) over Go's, which says whether
// an Open ever wrote into the buffer the test hands ReadRecordInto.
type spyAEAD struct {
	cipher.AEAD
	caller []byte
	wrote  bool
}

func (a *spyAEAD) Open(dst, nonce, ciphertext, ad []byte) ([]byte, error) {
	if full := dst[:cap(dst)]; len(full) > 0 && len(a.caller) > 0 && &full[0] == &a.caller[0] {
		a.wrote = true
	}
	return a.AEAD.Open(dst, nonce, ciphertext, ad)
}
func (a *spyAEAD) Err() error   { return nil }
func (a *spyAEAD) Close() error { return nil }

// TestReadRecordIntoEngineAEAD: an engine's AEAD (afalg's, in the kernel
// crypto API) never gets the caller's buffer: what it writes before it
// checks the tag is not Go's to vouch for. The record still arrives.
func TestReadRecordIntoEngineAEAD(t *testing.T) {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	p := randomParams(s, 0)
	prot, _ := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
	rec := prot.Seal(nil, 0, backend.TypeApplicationData, []byte("through the engine"))
	buf := make([]byte, 64<<10)
	spy := &spyAEAD{AEAD: goAEAD(t, s, p.Key), caller: buf}
	e := New("spy", func(backend.Params) (AEAD, error) { return spy, nil })
	o, err := e.NewOpener(backend.Link{Conn: eofConn{}, Buffered: rec}, cloneParams(p))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	typ, n, err := o.(backend.IntoReader).ReadRecordInto(buf)
	if err != nil || typ != backend.TypeApplicationData || string(buf[:n]) != "through the engine" {
		t.Fatalf("%d %q %v", typ, buf[:n], err)
	}
	if spy.wrote {
		t.Error("the engine's AEAD opened into the caller's buffer")
	}
	// And Go's AEAD does (the point of ReadRecordInto): the spy, told
	// it is Go's, sees the caller's buffer.
	o2, _ := goEngine().NewOpener(backend.Link{Conn: eofConn{}, Buffered: rec}, cloneParams(p))
	defer o2.Close()
	o2.(*opener).prot, _ = record.NewProtectorWithAEAD(p.Version, p.CipherSuite, spy, p.IV)
	if _, _, err := o2.(backend.IntoReader).ReadRecordInto(buf); err != nil || !spy.wrote {
		t.Errorf("Go's AEAD: wrote %v, %v", spy.wrote, err)
	}
}

// TestSealFrom: record.Protector.SealFrom, which the Sealer uses for every
// record, makes the same bytes as Seal, for every suite and size boundary,
// lent or not, and leaves the plaintext and the lent byte past it as they
// were.
func TestSealFrom(t *testing.T) {
	for _, s := range keyschedule.Suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			p := randomParams(s, 0)
			prot, _ := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
			for _, n := range []int{0, 1, 1000, backend.MaxPlaintext - 1, backend.MaxPlaintext} {
				for _, lent := range []bool{false, true} {
					buf := make([]byte, n+1)
					for i := range buf {
						buf[i] = byte(i*13 + 1)
					}
					orig := bytes.Clone(buf)
					pt := buf[:n]
					if !lent {
						pt = buf[:n:n]
					}
					seq := uint64(n) + 5
					want := prot.Seal(nil, seq, backend.TypeHandshake, pt)
					got := prot.SealFrom(make([]byte, 3, 3+len(want)), seq, backend.TypeHandshake, pt, lent)
					if !bytes.Equal(got[3:], want) {
						t.Errorf("%d bytes, lent %v: SealFrom differs from Seal", n, lent)
					}
					if !bytes.Equal(buf, orig) {
						t.Errorf("%d bytes, lent %v: the plaintext or the byte past it changed", n, lent)
					}
				}
			}
		})
	}
}

// TestSealPoolKeeps: a seal buffer given back survives garbage collections
// (bufpool.Pool's kept buffers), which a sync.Pool alone drops at the second.
func TestSealPoolKeeps(t *testing.T) {
	p := sealPools[0]
	bp := p.Get()
	p.Put(bp)
	runtime.GC()
	runtime.GC()
	if got := p.Get(); got != bp {
		t.Error("the buffer did not survive two GCs")
	}
	p.Put(bp)
	other := make([]byte, 100)
	p.Put(&other) // another size: left to the GC
	if got := p.Get(); got == &other {
		t.Error("the pool took a buffer of another size")
	} else {
		p.Put(got)
	}
}
