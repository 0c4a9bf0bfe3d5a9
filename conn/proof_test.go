package conn

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// dir13Full is the proof of a TLS 1.3 direction as it was before dir13 opened
// only the records in question: every protected record opened, under the
// handshake key until the first that opens under the application key, and
// under the application key after it. The tests hold dir13 to it, and
// checkSequence (close_test.go) uses it to check every record a connection
// sent.
func dir13Full(suite keyschedule.Suite, hsSecret, appSecret []byte, log [][]byte, who string) (*dirKeys, error) {
	hk, hiv := keyschedule.TrafficKey(suite, hsSecret)
	hs, err := record.NewProtector(suite.Version, suite.ID, hk, hiv)
	clear(hk)
	clear(hiv)
	if err != nil {
		return nil, err
	}
	d := &dirKeys{suite: suite, secret: bytes.Clone(appSecret)}
	d.params = backend.Params{Version: suite.Version, CipherSuite: suite.ID}
	d.params.Key, d.params.IV = keyschedule.TrafficKey(suite, appSecret)
	if d.prot, err = record.NewProtector(suite.Version, suite.ID, d.params.Key, d.params.IV); err != nil {
		d.wipe()
		return nil, err
	}
	// Every protected record (outer type application_data, RFC 8446 §5.2)
	// must open under the handshake key until the first one that opens under
	// the application key, and under the application key after it.
	var h, a uint64
	var scratch []byte
	for i, rec := range log {
		if rec[0] != backend.TypeApplicationData {
			continue
		}
		if a == 0 {
			scratch = append(scratch[:0], rec...)
			if _, _, err := hs.Open(h, scratch); err == nil {
				h++
				continue
			}
		}
		scratch = append(scratch[:0], rec...)
		if _, _, err := d.prot.Open(a, scratch); err != nil {
			d.wipe()
			return nil, fmt.Errorf("%s record %d of the handshake opens under neither of its keys", who, i)
		}
		a++
	}
	if h == 0 {
		d.wipe()
		return nil, fmt.Errorf("no %s record under the handshake key was seen", who)
	}
	d.params.Seq = a
	return d, nil
}

// proofVariants are the TLS 1.3 handshakes whose logs the proof is tried on:
// each gives the directions another shape (more handshake records, a second
// ServerHello, tickets or none).
var proofVariants = []struct {
	name    string
	tickets int // NewSessionTickets the server sends under its application key
	conf    func(client, server *tls.Config)
}{
	{"default", 0, func(c, s *tls.Config) {}},
	// crypto/tls sends a ticket only to a client that can use it
	// (psk_key_exchange_modes, RFC 8446 §4.2.9): one with a session cache.
	{"tickets", 1, func(c, s *tls.Config) { c.ClientSessionCache = tls.NewLRUClientSessionCache(1) }},
	{"tickets disabled", 0, func(c, s *tls.Config) {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(1)
		s.SessionTicketsDisabled = true
	}},
	{"client certificate", 1, func(c, s *tls.Config) {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(1)
		p := testpki.Get()
		c.Certificates = []tls.Certificate{p.Client()}
		s.ClientAuth = tls.RequireAndVerifyClientCert
		s.ClientCAs = p.Pool
	}},
	{"HelloRetryRequest", 0, func(c, s *tls.Config) {
		// The client's first key share is for X25519 only; the server
		// wants P-256 and asks again (RFC 8446 §4.1.4).
		c.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
		s.CurvePreferences = []tls.CurveID{tls.CurveP256}
	}},
}

// proofDir is one direction's log, as one end recorded it, and its secrets.
type proofDir struct {
	who             string
	log             [][]byte
	hsSecret, appSc []byte
	suite           keyschedule.Suite // as negotiated: ChaCha20 where the CPU has no AES (qemu's s390x)
}

// proofLogs13 runs a real TLS 1.3 handshake of the variant and returns each
// direction's log as each end recorded it (what it wrote, what it read).
func proofLogs13(t *testing.T, conf func(client, server *tls.Config)) []proofDir {
	t.Helper()
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	conf(ccfg, scfg)
	cli, srv := recordedPairConfigs(t, ccfg, scfg)
	if cli.tls.ConnectionState().Version != tls.VersionTLS13 {
		t.Fatal("not TLS 1.3")
	}
	cr, ok := helloRandom(cli.rc.txLog, typeClientHello)
	if !ok {
		t.Fatal("no ClientHello")
	}
	get := func(label string) []byte {
		s, ok := cli.keyLog.secret(label, cr)
		if !ok {
			t.Fatalf("no %s", label)
		}
		return bytes.Clone(s)
	}
	ch, ct := get(keyschedule.LabelClientHandshake), get(keyschedule.LabelClientTraffic0)
	sh, st := get(keyschedule.LabelServerHandshake), get(keyschedule.LabelServerTraffic0)
	st13, ok := keyschedule.Lookup(tls.VersionTLS13, cli.tls.ConnectionState().CipherSuite)
	if !ok {
		t.Fatalf("no suite %#04x", cli.tls.ConnectionState().CipherSuite)
	}
	return []proofDir{
		{"client TX", cli.rc.txLog, ch, ct, st13},
		{"server RX", srv.rc.rxLog, ch, ct, st13},
		{"server TX", srv.rc.txLog, sh, st, st13},
		{"client RX", cli.rc.rxLog, sh, st, st13},
	}
}

// seal13 seals a record of type typ under secret's key at seq.
func seal13(t *testing.T, s keyschedule.Suite, secret []byte, seq uint64, typ uint8, msg []byte) []byte {
	t.Helper()
	k, iv := keyschedule.TrafficKey(s, secret)
	p, err := record.NewProtector(s.Version, s.ID, k, iv)
	if err != nil {
		t.Fatal(err)
	}
	return p.Seal(nil, seq, typ, msg)
}

// proofResult runs a proof on a copy of log (a proof must not change the log)
// and returns the count, or -1 where it refused.
func proofResult(t *testing.T, f func(keyschedule.Suite, []byte, []byte, [][]byte, string) (*dirKeys, error), s keyschedule.Suite, hs, app []byte, log [][]byte) int {
	t.Helper()
	cp := make([][]byte, len(log))
	for i, r := range log {
		cp[i] = bytes.Clone(r)
	}
	d, err := f(s, hs, app, cp, "test")
	for i := range log {
		if !bytes.Equal(cp[i], log[i]) {
			t.Fatalf("the proof changed record %d of the log", i)
		}
	}
	if err != nil {
		if d != nil {
			t.Fatal("an error and keys")
		}
		return -1
	}
	return int(d.params.Seq)
}

// TestDir13RealHandshakes: on the logs of real handshakes both proofs accept
// with the same counts: none under the application key except a server's
// NewSessionTickets (RFC 8446 §4.6.1), which crypto/tls sends before it reads
// the client's Finished.
func TestDir13RealHandshakes(t *testing.T) {
	for _, v := range proofVariants {
		t.Run(v.name, func(t *testing.T) {
			for _, d := range proofLogs13(t, v.conf) {
				s := d.suite
				got := proofResult(t, dir13, s, d.hsSecret, d.appSc, d.log)
				full := proofResult(t, dir13Full, s, d.hsSecret, d.appSc, d.log)
				want := 0
				if d.who == "server TX" {
					want = v.tickets
				}
				if got != want || full != want {
					t.Errorf("%s: dir13 counts %d, the full proof %d; want %d", d.who, got, full, want)
				}
			}
		})
	}
}

// mutation is a change of a log; inPlace says it keeps the number of
// protected records and every record where it was except the changed ones
// (the only logs dir13 may accept where the full proof refused, see dir13).
type mutation struct {
	name    string
	log     [][]byte
	inPlace bool
}

// mutations returns every single change of log the tests try: each protected
// record dropped, repeated, corrupted, swapped with the next, and records
// under other keys or numbers added at each place.
func mutations(t *testing.T, s keyschedule.Suite, d proofDir) []mutation {
	var ms []mutation
	with := func(i int, recs ...[]byte) [][]byte { // log with recs in place of log[i:i+1]
		out := append([][]byte(nil), d.log[:i]...)
		out = append(out, recs...)
		return append(out, d.log[i+1:]...)
	}
	insert := func(i int, rec []byte) [][]byte {
		out := append([][]byte(nil), d.log[:i]...)
		out = append(out, rec)
		return append(out, d.log[i:]...)
	}
	next := keyschedule.NextTrafficSecret(s, d.appSc)
	// Records a sender could have made under another key, or at another
	// number: early data (here any key but these), a KeyUpdate's next key,
	// the handshake and application keys at numbers far off.
	other := make([]byte, len(d.hsSecret))
	other[0] = 1
	foreign := [][]byte{
		seal13(t, s, other, 0, backend.TypeApplicationData, []byte("early data")),
		seal13(t, s, next, 0, backend.TypeHandshake, []byte{typeKeyUpdate, 0, 0, 1, 0}),
		seal13(t, s, d.hsSecret, 0, backend.TypeHandshake, []byte("hs 0")),
		seal13(t, s, d.hsSecret, 7, backend.TypeHandshake, []byte("hs 7")),
		seal13(t, s, d.appSc, 0, backend.TypeHandshake, []byte{typeNewSessionTicket, 0, 0, 1, 0}),
		seal13(t, s, d.appSc, 1, backend.TypeHandshake, []byte{typeNewSessionTicket, 0, 0, 1, 1}),
		seal13(t, s, d.appSc, 7, backend.TypeApplicationData, []byte("app 7")),
	}
	for i, rec := range d.log {
		if rec[0] != backend.TypeApplicationData {
			continue
		}
		bad := bytes.Clone(rec)
		bad[len(bad)-1] ^= 1
		ms = append(ms,
			mutation{fmt.Sprintf("record %d dropped", i), with(i), false},
			mutation{fmt.Sprintf("record %d repeated", i), with(i, rec, rec), false},
			mutation{fmt.Sprintf("record %d corrupted", i), with(i, bad), true},
		)
		if i+1 < len(d.log) {
			sw := with(i, d.log[i+1], rec)
			sw = append(sw[:i+2:i+2], d.log[i+2:]...)
			ms = append(ms, mutation{fmt.Sprintf("records %d and %d swapped", i, i+1), sw, true})
		}
		for k, f := range foreign {
			ms = append(ms, mutation{fmt.Sprintf("record %d replaced by foreign %d", i, k), with(i, f), true})
		}
	}
	for i := 0; i <= len(d.log); i++ {
		for k, f := range foreign {
			ms = append(ms, mutation{fmt.Sprintf("foreign %d inserted at %d", k, i), insert(i, f), false})
		}
	}
	ms = append(ms, mutation{"only the plaintext records", func() [][]byte {
		var out [][]byte
		for _, r := range d.log {
			if r[0] != backend.TypeApplicationData {
				out = append(out, r)
			}
		}
		return out
	}(), false})
	return ms
}

// TestDir13AgreesWithFullProof: on every change of real logs, and with wrong
// secrets, dir13 refuses (the connection stays on stdlib) wherever the full
// proof refused, accepts with the same count wherever it accepted, and
// accepts where the full proof refused only for a change in place of
// records it does not open, with the count of the log unchanged: such a log
// is one crypto/tls cannot have written or read (see dir13).
func TestDir13AgreesWithFullProof(t *testing.T) {
	for _, v := range proofVariants {
		t.Run(v.name, func(t *testing.T) {
			for _, d := range proofLogs13(t, v.conf) {
				s := d.suite
				orig := proofResult(t, dir13, s, d.hsSecret, d.appSc, d.log)
				if orig < 0 {
					t.Fatalf("%s: the real log refused", d.who)
				}
				refusedBoth, differ := 0, 0
				for _, m := range mutations(t, s, d) {
					got := proofResult(t, dir13, s, d.hsSecret, d.appSc, m.log)
					full := proofResult(t, dir13Full, s, d.hsSecret, d.appSc, m.log)
					switch {
					case got == full:
						if got < 0 {
							refusedBoth++
						}
					case got >= 0 && full < 0 && m.inPlace && got == orig:
						differ++
					default:
						t.Errorf("%s, %s: dir13 %d, the full proof %d (-1: refused)", d.who, m.name, got, full)
					}
				}
				if refusedBoth == 0 {
					t.Errorf("%s: no change refused", d.who)
				}
				t.Logf("%s: %d changes refused by both, %d in place accepted by dir13 only", d.who, refusedBoth, differ)

				// Wrong secrets: a handshake secret that is not the
				// connection's opens nothing; a wrong application secret
				// is refused where a record was protected under it.
				wrong := bytes.Clone(d.hsSecret)
				wrong[0] ^= 1
				if got, full := proofResult(t, dir13, s, wrong, d.appSc, d.log), proofResult(t, dir13Full, s, wrong, d.appSc, d.log); got != -1 || full != -1 {
					t.Errorf("%s, wrong handshake secret: dir13 %d, full proof %d; want both refused", d.who, got, full)
				}
				wrong = bytes.Clone(d.appSc)
				wrong[0] ^= 1
				got, full := proofResult(t, dir13, s, d.hsSecret, wrong, d.log), proofResult(t, dir13Full, s, d.hsSecret, wrong, d.log)
				if got != full || (orig > 0) != (got < 0) {
					t.Errorf("%s, wrong application secret: dir13 %d, full proof %d; want both refused iff records were protected under it (%d)", d.who, got, full, orig)
				}
			}
		})
	}
}

// TestDir13Counts: records the application key protected after the real
// ones are counted (each at its number), and one more at a number taken
// (a nonce reused), under the next key, or a last one that is a KeyUpdate
// (after which the sender's key is the next one) is refused.
func TestDir13Counts(t *testing.T) {
	for _, d := range proofLogs13(t, proofVariants[1].conf) {
		s := d.suite
		base := proofResult(t, dir13, s, d.hsSecret, d.appSc, d.log)
		log := append([][]byte(nil), d.log...)
		for k := range 3 {
			log = append(log, seal13(t, s, d.appSc, uint64(base+k), backend.TypeApplicationData, []byte("data")))
			if got := proofResult(t, dir13, s, d.hsSecret, d.appSc, log); got != base+k+1 {
				t.Errorf("%s with %d more: count %d, want %d", d.who, k+1, got, base+k+1)
			}
		}
		for _, tc := range []struct {
			name string
			rec  []byte
		}{
			{"a number used again", seal13(t, s, d.appSc, uint64(base+1), backend.TypeApplicationData, []byte("again"))},
			{"the next key", seal13(t, s, keyschedule.NextTrafficSecret(s, d.appSc), 0, backend.TypeApplicationData, []byte("next"))},
			{"the handshake key", seal13(t, s, d.hsSecret, 99, backend.TypeHandshake, []byte("late"))},
			// Under the right key and number, but the sender then moved
			// to the next key (RFC 8446 §4.6.3): the full proof accepted
			// these.
			{"a KeyUpdate", seal13(t, s, d.appSc, uint64(base+3), backend.TypeHandshake, []byte{typeKeyUpdate, 0, 0, 1, 0})},
			{"a KeyUpdate after a ticket", seal13(t, s, d.appSc, uint64(base+3), backend.TypeHandshake, []byte{typeNewSessionTicket, 0, 0, 1, 0, typeKeyUpdate, 0, 0, 1, 1})},
			{"a message cut short", seal13(t, s, d.appSc, uint64(base+3), backend.TypeHandshake, []byte{typeNewSessionTicket, 0, 0, 9, 0})},
		} {
			if got := proofResult(t, dir13, s, d.hsSecret, d.appSc, append(log[:len(log):len(log)], tc.rec)); got != -1 {
				t.Errorf("%s, then a record under %s: count %d, want refused", d.who, tc.name, got)
			}
		}
		ticket := seal13(t, s, d.appSc, uint64(base+3), backend.TypeHandshake, []byte{typeNewSessionTicket, 0, 0, 1, 0, typeNewSessionTicket, 0, 0, 0})
		if got := proofResult(t, dir13, s, d.hsSecret, d.appSc, append(log[:len(log):len(log)], ticket)); got != base+4 {
			t.Errorf("%s, then two tickets in a record: count %d, want %d", d.who, got, base+4)
		}
	}
}

// TestHandoffStaysWhereProofRefuses: a whole handoff, on a real handshake
// whose key log the test spoils, keeps both directions on stdlib with the
// proof's reason, as it did with the full proof; with the log unspoiled the
// same handshake moves to the userspace engine.
func TestHandoffStaysWhereProofRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil string // the label whose secret is changed; "" for none
		moves bool
	}{
		{"unspoiled", "", true},
		{"client handshake secret", keyschedule.LabelClientHandshake, false},
		{"server handshake secret", keyschedule.LabelServerHandshake, false},
		// The server sent a ticket under its application key: that
		// record must open under SERVER_TRAFFIC_SECRET_0.
		{"server application secret", keyschedule.LabelServerTraffic0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			cli, srv := recordedPairConfigs(t, ccfg, scfg)
			for _, c := range []*Conn{cli, srv} {
				c.opts = userspaceOptions()
				if tc.spoil != "" {
					for i, l := range keyLabels {
						if l == tc.spoil {
							c.keyLog.entries[i].secret[0] ^= 1
						}
					}
				}
			}
			// The server's handoff: its TX log holds the ticket.
			if err := srv.handoff(); err != nil {
				t.Fatal(err)
			}
			srv.infoMu.Lock()
			b := srv.info
			srv.infoMu.Unlock()
			moved := b.TX == backend.Userspace && b.RX == backend.Userspace
			stayed := b.TX == backend.Stdlib && b.RX == backend.Stdlib
			if tc.moves && !moved || !tc.moves && (!stayed || !strings.Contains(b.String(), "not known")) {
				t.Errorf("server: %+v, %s; want moved %v", b, b.String(), tc.moves)
			}
		})
	}
}
