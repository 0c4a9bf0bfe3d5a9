package conn

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
)

// FuzzRecordStream feeds an arbitrary byte stream, as the peer's records, to
// a ktls server on the userspace engine right after a real handshake. The
// victim must never panic or hang, must return exactly the application data
// of the stream's valid records, and must end with io.EOF only where the
// stream ends cleanly (at a record boundary or with close_notify) and with
// an error everywhere else.
//
// So that sealed records in the corpus stay valid from one run to the next,
// the victim's RX is moved, after the handshake, to a fixed key through the
// engine's own Rekey (the path TLS 1.3 KeyUpdate takes), at sequence number
// 0. A small model (fuzzModel) says what the stream means.
//
// mode picks the protocol: 0 TLS 1.3 (the suite crypto/tls picks), 1 TLS 1.2
// AES-128-GCM, 2 TLS 1.2 ChaCha20-Poly1305.
func FuzzRecordStream(f *testing.F) {
	for mode := range uint8(fuzzModes) {
		suite := fuzzSuite(f, mode)
		for _, s := range fuzzSeeds(suite) {
			f.Add(mode, s)
		}
	}
	f.Fuzz(func(t *testing.T, mode uint8, stream []byte) {
		mode %= fuzzModes
		victim, peerTCP := fuzzVictim(t, mode)
		suite := victim.in.keys.suite
		want, end := fuzzModel(suite, stream)

		go func() {
			peerTCP.Write(stream)
			peerTCP.CloseWrite()
		}()
		victim.SetReadDeadline(time.Now().Add(10 * time.Second))
		var got []byte
		buf := make([]byte, 4096)
		var err error
		for err == nil {
			var n int
			n, err = victim.Read(buf)
			got = append(got, buf[:n]...)
		}
		if isTimeout(err) {
			t.Fatalf("victim hung: %v (model: %v after %d bytes)", err, end, len(want))
		}
		switch end {
		case endEOF, endError:
			if !bytes.Equal(got, want) {
				t.Fatalf("victim returned %d bytes %q; model %d bytes %q", len(got), trunc(got), len(want), trunc(want))
			}
		case endUnknown:
			if !bytes.HasPrefix(got, want) {
				t.Fatalf("victim returned %d bytes %q; model starts with %d bytes %q", len(got), trunc(got), len(want), trunc(want))
			}
		}
		switch {
		case end == endEOF && err != io.EOF:
			t.Fatalf("victim Read error %v; the stream ends cleanly, want io.EOF", err)
		case end == endError && err == io.EOF:
			t.Fatal("victim Read returned io.EOF; the stream is not a valid record stream, want an error")
		}
		// The failure sticks.
		if _, err2 := victim.Read(buf); err2 == nil {
			t.Fatalf("victim Read after %v succeeded", err)
		}
	})
}

const fuzzModes = 3

func fuzzConfigs(mode uint8) (client, server *tls.Config) {
	switch mode {
	case 0:
		return testConfigs(tls.VersionTLS13)
	case 1:
		client, server = testConfigs(tls.VersionTLS12)
		client.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	default:
		client, server = testConfigs(tls.VersionTLS12)
		client.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
	}
	return client, server
}

// fuzzVictim handshakes a ktls server with a stock client, moves the
// server's RX to the fixed key, and returns the server and the client's
// socket, on which the test writes the stream.
func fuzzVictim(t testing.TB, mode uint8) (*Conn, *net.TCPConn) {
	ccfg, scfg := fuzzConfigs(mode)
	rc, rs := testenv.TCPPair(t)
	victim := Server(rs, scfg, userspaceOptions())
	peer := tls.Client(rc, ccfg)
	errc := make(chan error, 1)
	go func() { errc <- peer.Handshake() }()
	if err := victim.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("peer handshake: %v", err)
	}
	t.Cleanup(func() { victim.Close() })
	if b := victim.Backend(); b.TX != backend.Userspace || b.RX != backend.Userspace {
		t.Fatalf("backend %+v, want userspace both ways", b)
	}
	victim.in.mu.Lock()
	defer victim.in.mu.Unlock()
	suite := victim.in.keys.suite
	p, secret := fuzzParams(suite)
	if err := victim.in.opener.(backend.Rekeyer).Rekey(p); err != nil {
		t.Fatal(err)
	}
	if secret != nil {
		victim.in.keys.secret = secret
	}
	return victim, rc.(*net.TCPConn)
}

// fuzzSuite returns the suite a mode negotiates.
func fuzzSuite(t testing.TB, mode uint8) keyschedule.Suite {
	v, _ := fuzzVictim(t, mode)
	return v.in.keys.suite
}

// fuzzParams returns the fixed key of a suite at sequence number 0, and for
// TLS 1.3 the traffic secret it comes from.
func fuzzParams(s keyschedule.Suite) (backend.Params, []byte) {
	p := backend.Params{Version: s.Version, CipherSuite: s.ID}
	if s.Version == tls.VersionTLS13 {
		secret := bytes.Repeat([]byte{0x5a}, s.Hash.Size())
		p.Key, p.IV = keyschedule.TrafficKey(s, secret)
		return p, secret
	}
	p.Key = bytes.Repeat([]byte{0x6b}, s.KeyLen)
	p.IV = bytes.Repeat([]byte{0x7c}, s.IVLen)
	return p, nil
}

// fuzzSealer seals records under the fixed key, following TLS 1.3 KeyUpdates
// as the model does.
type fuzzSealer struct {
	suite  keyschedule.Suite
	secret []byte
	prot   *record.Protector
	seq    uint64
}

func newFuzzSealer(s keyschedule.Suite) *fuzzSealer {
	p, secret := fuzzParams(s)
	prot, err := record.NewProtector(s.Version, s.ID, p.Key, p.IV)
	if err != nil {
		panic(err) // the suite came from a handshake: cannot happen
	}
	return &fuzzSealer{suite: s, secret: secret, prot: prot}
}

func (z *fuzzSealer) seal(typ uint8, pt []byte) []byte {
	rec := z.prot.Seal(nil, z.seq, typ, pt)
	z.seq++
	return rec
}

func (z *fuzzSealer) update() {
	z.secret = keyschedule.NextTrafficSecret(z.suite, z.secret)
	key, iv := keyschedule.TrafficKey(z.suite, z.secret)
	z.prot, _ = record.NewProtector(z.suite.Version, z.suite.ID, key, iv)
	z.seq = 0
}

// fuzzSeeds are valid streams and a few broken ones.
func fuzzSeeds(s keyschedule.Suite) [][]byte {
	tls13 := s.Version == tls.VersionTLS13
	var seeds [][]byte
	add := func(build func(z *fuzzSealer) []byte) {
		seeds = append(seeds, build(newFuzzSealer(s)))
	}
	cat := func(recs ...[]byte) []byte { return bytes.Join(recs, nil) }
	add(func(z *fuzzSealer) []byte { return nil })
	add(func(z *fuzzSealer) []byte { return z.seal(backend.TypeApplicationData, []byte("hello")) })
	add(func(z *fuzzSealer) []byte {
		return cat(z.seal(backend.TypeApplicationData, []byte("one")),
			z.seal(backend.TypeApplicationData, bytes.Repeat([]byte("two"), 300)),
			z.seal(backend.TypeAlert, []byte{alertLevelWarning, alertCloseNotify}),
			[]byte("ignored after close_notify"))
	})
	add(func(z *fuzzSealer) []byte {
		return cat(z.seal(backend.TypeApplicationData, nil), z.seal(backend.TypeApplicationData, nil),
			z.seal(backend.TypeApplicationData, []byte("after empty records")))
	})
	add(func(z *fuzzSealer) []byte {
		warn := []byte{alertLevelWarning, alertUserCanceled}
		return cat(z.seal(backend.TypeAlert, warn), z.seal(backend.TypeApplicationData, []byte("after a warning")))
	})
	add(func(z *fuzzSealer) []byte {
		return cat(z.seal(backend.TypeApplicationData, []byte("then")), z.seal(backend.TypeAlert, []byte{alertLevelError, 40}))
	})
	add(func(z *fuzzSealer) []byte {
		rec := z.seal(backend.TypeApplicationData, []byte("tampered"))
		rec[len(rec)-3] ^= 1
		return rec
	})
	add(func(z *fuzzSealer) []byte {
		rec := z.seal(backend.TypeApplicationData, []byte("truncated"))
		return rec[:len(rec)-4]
	})
	add(func(z *fuzzSealer) []byte { return []byte("GET / HTTP/1.1\r\n\r\n") })
	if tls13 {
		add(func(z *fuzzSealer) []byte {
			a := z.seal(backend.TypeApplicationData, []byte("before"))
			ku := z.seal(backend.TypeHandshake, []byte{typeKeyUpdate, 0, 0, 1, 1})
			z.update()
			return cat(a, ku, z.seal(backend.TypeApplicationData, []byte("after update")))
		})
		add(func(z *fuzzSealer) []byte {
			// Padding: type 0 puts the real type inside the plaintext,
			// followed by zeros (RFC 8446 §5.4).
			return z.seal(0, []byte("padded\x17\x00\x00\x00"))
		})
	}
	return seeds
}

// fuzzEnd is how the model says a stream ends.
type fuzzEnd int

const (
	endEOF     fuzzEnd = iota // cleanly: io.EOF after the data
	endError                  // with an error after the data
	endUnknown                // the model does not follow it (handshake messages)
)

func (e fuzzEnd) String() string {
	return [...]string{"clean EOF", "error", "unknown"}[e]
}

// fuzzModel reads stream as the victim should: the application data it
// carries and how it ends. It follows application data, alerts, TLS 1.3
// KeyUpdates alone in their record, and the limit on records without data;
// any other handshake record makes the rest unknown.
func fuzzModel(s keyschedule.Suite, stream []byte) ([]byte, fuzzEnd) {
	z := newFuzzSealer(s)
	tls13 := s.Version == tls.VersionTLS13
	var data []byte
	useless := 0
	uselessOK := func() bool {
		useless++
		return useless <= maxUselessRecords
	}
	for {
		if len(stream) == 0 {
			return data, endEOF
		}
		h, err := record.ParseHeader(stream)
		if err != nil || record.CheckHeader(s.Version, h) != nil || len(stream) < record.HeaderLen+h.Length {
			return data, endError
		}
		rec := bytes.Clone(stream[:record.HeaderLen+h.Length])
		stream = stream[len(rec):]
		typ, pt, err := z.prot.Open(z.seq, rec)
		if err != nil {
			return data, endError
		}
		z.seq++
		switch typ {
		case backend.TypeApplicationData:
			if len(pt) > 0 {
				useless = 0
				data = append(data, pt...)
			} else if !uselessOK() {
				return data, endError
			}
		case backend.TypeAlert:
			switch {
			case len(pt) != 2:
				return data, endError
			case pt[1] == alertCloseNotify:
				return data, endEOF
			case tls13 && pt[1] != alertUserCanceled, !tls13 && pt[0] != alertLevelWarning:
				return data, endError
			case !uselessOK():
				return data, endError
			}
		case backend.TypeHandshake:
			if !tls13 || len(pt) != 5 || !bytes.Equal(pt[:4], []byte{typeKeyUpdate, 0, 0, 1}) || pt[4] > 1 {
				return data, endUnknown
			}
			z.update()
			if !uselessOK() {
				return data, endError
			}
		default:
			return data, endError
		}
	}
}

func trunc(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// TestFuzzModelSeeds checks the seeds against the model, so that the model
// is not trivially permissive: the valid seeds end cleanly with their data,
// the broken ones with an error.
func TestFuzzModelSeeds(t *testing.T) {
	for mode := range uint8(fuzzModes) {
		s := fuzzSuite(t, mode)
		seeds := fuzzSeeds(s)
		wants := []struct {
			data string
			end  fuzzEnd
		}{
			{"", endEOF},
			{"hello", endEOF},
			{"one" + string(bytes.Repeat([]byte("two"), 300)), endEOF},
			{"after empty records", endEOF},
			{"after a warning", endEOF},
			{"then", endError},
			{"", endError},
			{"", endError},
			{"", endError},
			{"beforeafter update", endEOF},
			{"padded", endEOF},
		}
		for i, seed := range seeds {
			data, end := fuzzModel(s, seed)
			if string(data) != wants[i].data || end != wants[i].end {
				t.Errorf("%s seed %d: model says %q, %v; want %q, %v", s.Name(), i, data, end, wants[i].data, wants[i].end)
			}
		}
	}
}
