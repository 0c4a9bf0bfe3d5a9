package conn

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
)

// Secrets come from crypto/tls's public API only (docs/ARCHITECTURE.md step 3): the key
// log lines it writes to Config.KeyLogWriter, and, for a resumed TLS 1.2
// session (for which crypto/tls logs no line), the master secret of the
// session it resumed, from SessionState.Bytes. Every key found this way is
// then checked by opening records crypto/tls protected with it (those that
// fix the count: dir12, dir13), so a wrong key or a wrong count can only ever
// keep a connection on stdlib.

// keyLog is the per-connection KeyLogWriter. It keeps the lines of this
// connection that the handoff reads and still forwards every line to the
// user's own writer.
type keyLog struct {
	mu   sync.Mutex
	user io.Writer
	// entries holds the line of each of keyLabels, by index. It is
	// allocated at the first line kept and dropped by wipe: a connection
	// that stays on crypto/tls keeps the keyLog (its config's
	// KeyLogWriter) for life, not the entries.
	entries *[len(keyLabels)]keyEntry
	// discard keeps nothing, only forwards (FIPS 140-3 mode: see handoff).
	discard bool
}

// keyEntry is one line kept: the secrets live in the array, so that keeping
// a line allocates nothing (crypto/tls writes five per TLS 1.3 handshake).
type keyEntry struct {
	clientRandom [keyschedule.RandomLen]byte
	n            int // the secret's length; 0: not logged
	secret       [keyschedule.MaxSecretLen]byte
}

// keyLabels are the labels the handoff reads: the TLS 1.2 master secret and
// the TLS 1.3 handshake and first application traffic secrets (secrets.go,
// keys12 and keys13). crypto/tls logs others too (EXPORTER_SECRET, for one):
// they are only forwarded, not parsed nor kept.
var keyLabels = [...]string{
	keyschedule.LabelClientRandom,
	keyschedule.LabelClientHandshake,
	keyschedule.LabelServerHandshake,
	keyschedule.LabelClientTraffic0,
	keyschedule.LabelServerTraffic0,
}

// keyLabelIndex returns the index in keyLabels of the label that line starts
// with (followed by a space), or -1.
func keyLabelIndex(line []byte) int {
	for i, l := range keyLabels {
		if len(line) > len(l) && line[len(l)] == ' ' && string(line[:len(l)]) == l {
			return i
		}
	}
	return -1
}

func (k *keyLog) Write(p []byte) (int, error) {
	// discard is set before the handshake and never changed.
	if i := keyLabelIndex(p); i >= 0 && !k.discard {
		var random [keyschedule.RandomLen]byte
		var buf [keyschedule.MaxSecretLen]byte
		if _, secret, err := keyschedule.ParseKeyLogLineTo(&random, &buf, p); err == nil {
			k.mu.Lock()
			if k.entries == nil {
				k.entries = new([len(keyLabels)]keyEntry)
			}
			e := &k.entries[i]
			clear(e.secret[:])
			e.clientRandom, e.n = random, copy(e.secret[:], secret)
			k.mu.Unlock()
		}
		clear(buf[:])
	}
	k.mu.Lock()
	user := k.user
	k.mu.Unlock()
	if user != nil {
		// crypto/tls fails the handshake when the writer fails; so does
		// ktls, as the user's writer would have without it.
		return user.Write(p)
	}
	return len(p), nil
}

func (k *keyLog) setUser(w io.Writer) {
	k.mu.Lock()
	k.user = w
	k.mu.Unlock()
}

// secret returns the secret logged under label for clientRandom. It is the
// keyLog's own: valid, and zeroed, until wipe.
func (k *keyLog) secret(label string, clientRandom []byte) ([]byte, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.entries == nil {
		return nil, false
	}
	for i, l := range keyLabels {
		if l != label {
			continue
		}
		e := &k.entries[i]
		if e.n == 0 || !bytes.Equal(e.clientRandom[:], clientRandom) {
			return nil, false
		}
		return e.secret[:e.n], true
	}
	return nil, false
}

// wipe zeroes every secret kept.
func (k *keyLog) wipe() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.entries == nil {
		return
	}
	clear(k.entries[:])
	k.entries = nil
}

// sessions keeps the session crypto/tls resumed, on either side.
type sessions struct {
	mu     sync.Mutex
	client *tls.ClientSessionState
	server *tls.SessionState
}

// forget drops the resumed session once the handoff no longer needs it. The
// session objects are crypto/tls's (a client's is in the user's cache), so
// they are not zeroed, only no longer held by the connection.
func (s *sessions) forget() {
	s.mu.Lock()
	s.client, s.server = nil, nil
	s.mu.Unlock()
}

// cacheCapture wraps the user's ClientSessionCache to see which session the
// client offers; tickets still go to, and come from, the user's cache.
type cacheCapture struct {
	inner tls.ClientSessionCache
	s     *sessions
}

func (c cacheCapture) Get(key string) (*tls.ClientSessionState, bool) {
	cs, ok := c.inner.Get(key)
	if ok {
		c.s.mu.Lock()
		c.s.client = cs
		c.s.mu.Unlock()
	}
	return cs, ok
}

func (c cacheCapture) Put(key string, cs *tls.ClientSessionState) { c.inner.Put(key, cs) }

// prepareConfig returns the per-connection clone of the user's config with
// the captures in place. The user's config itself is never modified.
func prepareConfig(user *tls.Config, isClient bool, kl *keyLog, s *sessions) *tls.Config {
	if user == nil {
		user = &tls.Config{}
	}
	cfg := user.Clone()
	kl.setUser(user.KeyLogWriter)
	cfg.KeyLogWriter = kl
	if isClient {
		if cfg.ClientSessionCache != nil {
			cfg.ClientSessionCache = cacheCapture{inner: cfg.ClientSessionCache, s: s}
		}
		return cfg
	}
	serveTickets(cfg, user, s)
	if user.GetConfigForClient != nil {
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			uc, err := user.GetConfigForClient(hello)
			if err != nil || uc == nil {
				return uc, err
			}
			c := uc.Clone()
			kl.setUser(uc.KeyLogWriter)
			c.KeyLogWriter = kl
			serveTickets(c, uc, s)
			return c, nil
		}
	}
	return cfg
}

// serveTickets makes a server config seal and open tickets with the ticket
// keys of the config the user gave (owner), not with fresh keys of the
// per-connection clone: crypto/tls keeps its automatic ticket keys inside the
// Config they were made for (common.go, Config.ticketKeys), so a clone would
// make every connection's tickets unreadable to the next. EncryptTicket and
// DecryptTicket are documented as WrapSession/UnwrapSession implementations.
// The session crypto/tls resumes is kept, for the TLS 1.2 master secret.
func serveTickets(cfg, owner *tls.Config, s *sessions) {
	if cfg.WrapSession == nil {
		cfg.WrapSession = owner.EncryptTicket
	}
	unwrap := cfg.UnwrapSession
	if unwrap == nil {
		unwrap = owner.DecryptTicket
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := unwrap(identity, cs)
		if ss != nil {
			s.mu.Lock()
			s.server = ss
			s.mu.Unlock()
		}
		return ss, err
	}
}

// sessionSecret returns the master secret (TLS 1.2) of a session, from its
// encoding by SessionState.Bytes, whose layout crypto/tls documents in
// ticket.go: uint16 version, uint8 type, uint16 cipher_suite, uint64
// created_at, opaque secret<1..2^8-1>, ... crypto/tls calls the encoding
// opaque: a change would make this fail or return a wrong secret, and the
// record check after it would then keep the connection on stdlib.
func sessionSecret(ss *tls.SessionState, version, suite uint16) ([]byte, error) {
	b, err := ss.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encoding the resumed session: %w", err)
	}
	defer clear(b)
	const off = 2 + 1 + 2 + 8
	if len(b) < off+1 {
		return nil, errors.New("resumed session encoding too short")
	}
	if binary.BigEndian.Uint16(b) != version || binary.BigEndian.Uint16(b[3:]) != suite {
		return nil, errors.New("resumed session encoding does not match the connection")
	}
	n := int(b[off])
	if n == 0 || len(b) < off+1+n {
		return nil, errors.New("resumed session encoding malformed")
	}
	return bytes.Clone(b[off+1 : off+1+n]), nil
}

// dirKeys is one direction's traffic key, found and verified.
type dirKeys struct {
	suite  keyschedule.Suite
	params backend.Params    // Key, IV, and Seq: the next record's number
	secret []byte            // TLS 1.3: the application traffic secret, for KeyUpdate
	prot   *record.Protector // the same key, to open records crypto/tls sent under it
}

func (d *dirKeys) wipe() {
	clear(d.params.Key)
	clear(d.params.IV)
	clear(d.secret)
}

// wipeIfSet is wipe for a direction whose keys may never have been found.
func (d *dirKeys) wipeIfSet() {
	if d != nil {
		d.wipe()
	}
}

// helloRandom returns the random of the first handshake message of one
// direction, which must be of type want (ClientHello 1 or ServerHello 2):
// type(1) length(3) legacy_version(2) random(32), RFC 8446 §4.1.2-3 and RFC
// 5246 §7.4.1.2-3. The message may span records.
func helloRandom(log [][]byte, want uint8) ([]byte, bool) {
	// Nearly always the first record holds the whole random: no copy.
	if len(log) > 0 && log[0][0] == backend.TypeHandshake && len(log[0]) >= record.HeaderLen+38 {
		hs := log[0][record.HeaderLen:]
		if hs[0] != want {
			return nil, false
		}
		return hs[6:38], true
	}
	var hs []byte
	for _, rec := range log {
		if rec[0] != backend.TypeHandshake {
			if rec[0] == backend.TypeAlert {
				continue
			}
			break
		}
		hs = append(hs, rec[record.HeaderLen:]...)
		if len(hs) >= 38 {
			break
		}
	}
	if len(hs) < 38 || hs[0] != want {
		return nil, false
	}
	return hs[6:38], true
}

// handoffKeys finds both directions' keys and sequence numbers. A non-empty
// reason says why they cannot be known with certainty; the connection then
// stays on stdlib.
func (c *Conn) handoffKeys(st tls.ConnectionState) (tx, rx *dirKeys, reason string) {
	suite, ok := keyschedule.Lookup(st.Version, st.CipherSuite)
	if !ok {
		return nil, nil, fmt.Sprintf("%s is not an AEAD suite ktls can move", tls.CipherSuiteName(st.CipherSuite))
	}
	clientLog, serverLog := c.rc.txLog, c.rc.rxLog
	if !c.isClient {
		clientLog, serverLog = serverLog, clientLog
	}
	cr, ok := helloRandom(clientLog, typeClientHello)
	if !ok {
		return nil, nil, "ClientHello not seen on the wire"
	}
	var cli, srv *dirKeys
	var err error
	switch st.Version {
	case tls.VersionTLS13:
		cli, srv, err = c.keys13(suite, cr)
	case tls.VersionTLS12:
		sr, ok := helloRandom(serverLog, typeServerHello)
		if !ok {
			return nil, nil, "ServerHello not seen on the wire"
		}
		cli, srv, err = c.keys12(suite, st, cr, sr)
	default:
		return nil, nil, fmt.Sprintf("TLS version %#04x is not one ktls can move", st.Version)
	}
	if err == nil && c.drains(st) {
		// The ticket drain opens RX records with the key's Protector, and
		// reads what crypto/tls may try to write with TX's (install).
		if err = cli.buildProt(); err == nil {
			err = srv.buildProt()
		}
		if err != nil {
			cli.wipe()
			srv.wipe()
		}
	}
	if err != nil {
		return nil, nil, err.Error()
	}
	tx, rx = cli, srv
	if !c.isClient {
		tx, rx = srv, cli
	}
	return tx, rx, ""
}

// keys13 derives the TLS 1.3 application keys from the logged traffic
// secrets (RFC 8446 §7.3) and counts the records each side protected under
// them, telling them from handshake-key records by opening the records that
// fix the count (dir13).
func (c *Conn) keys13(suite keyschedule.Suite, cr []byte) (cli, srv *dirKeys, err error) {
	get := func(label string) ([]byte, error) {
		s, ok := c.keyLog.secret(label, cr)
		if !ok {
			return nil, fmt.Errorf("crypto/tls logged no %s for this connection", label)
		}
		return s, nil
	}
	var sec [4][]byte
	for i, l := range []string{keyschedule.LabelClientHandshake, keyschedule.LabelServerHandshake, keyschedule.LabelClientTraffic0, keyschedule.LabelServerTraffic0} {
		if sec[i], err = get(l); err != nil {
			return nil, nil, err
		}
	}
	clientLog, serverLog := c.rc.txLog, c.rc.rxLog
	if !c.isClient {
		clientLog, serverLog = serverLog, clientLog
	}
	if cli, err = dir13(suite, sec[0], sec[2], clientLog, "client"); err != nil {
		return nil, nil, err
	}
	if srv, err = dir13(suite, sec[1], sec[3], serverLog, "server"); err != nil {
		cli.wipe()
		return nil, nil, err
	}
	return cli, srv, nil
}

// dir13 finds one direction's TLS 1.3 application key and the number of
// records the sender protected under it (RFC 8446 §7.3), proving both by
// opening the records whose count is in question, and only those.
//
// Let r_1..r_n be the log's protected records (outer type application_data,
// RFC 8446 §5.2), in order. Three facts make two opens enough:
//
//   - The log holds every record of the direction, in order: TX, every record
//     crypto/tls wrote (recordConn logs each write; writes are refused from the
//     start of the handoff), RX, every record crypto/tls read and accepted,
//     and none past the last one it asked for (docs/ARCHITECTURE.md steps 2
//     and 4).
//   - A record that opens under key K at sequence number s was sealed under K
//     as its sender's record number s under K: the per-record nonce is the IV
//     XOR s (RFC 8446 §5.3), every key's numbers start at 0 and go up by one
//     per record, and only a holder of K can make a record that opens.
//   - A sender uses its keys in one order: none (ClientHello, ServerHello,
//     compatibility ChangeCipherSpec, §4.1, §D.4), the handshake key, then the
//     application key after its Finished (§4.4.4, §7.1); early data
//     (§4.2.10) or a KeyUpdate (§4.6.3) brings other keys: their records do
//     not open where the proof looks, and r_n, opened, must not be a
//     KeyUpdate (the key after it would be the next one).
//
// So if r_j opens under the handshake key at number j-1, its sender protected
// j-1 handshake records before it, all in the log before r_j, where there are
// exactly j-1 protected records: r_1..r_{j-1} are those, under no other key,
// and not one is missing. The proof takes h, the last such j (searched from
// the end: after it come only the few NewSessionTicket records of a server),
// and, if h < n, opens r_n under the application key at number n-h-1: by the
// same argument r_{h+1}..r_{n-1} are its n-h-1 application records before it,
// so the count is n-h, and nothing crypto/tls protected under the key can
// carry a number the engine uses again.
//
// The records left unopened cannot change the key or the count: r_h and r_n
// fix how many records come before them and under which key, whatever those
// records hold. The full proof, which opened every record, refused every log
// this one refuses, and refused beyond that only logs in which an unopened
// record does not open at its own place while the number of records is right
// (one replaced, or two swapped): by the first fact crypto/tls cannot have
// written or accepted such a log, and its count would be the same.
// conn/proof_test.go checks this against the full proof, on the logs of real
// handshakes and on every such change of them.
//
// With h = n, no record was protected under the application key (a client,
// and a server's RX: crypto/tls reads nothing past the peer's Finished); its
// key is then not proven, as it never was, and its Protector is made only
// when the handoff needs it (buildProt).
func dir13(suite keyschedule.Suite, hsSecret, appSecret []byte, log [][]byte, who string) (*dirKeys, error) {
	n := 0
	for _, rec := range log {
		if rec[0] == backend.TypeApplicationData {
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("no %s record under the handshake key was seen", who)
	}
	hk, hiv := keyschedule.TrafficKey(suite, hsSecret)
	hs, err := record.NewProtector(suite.Version, suite.ID, hk, hiv)
	clear(hk)
	clear(hiv)
	if err != nil {
		return nil, err
	}
	// One scratch for every open: Open decrypts in place, and a failed one
	// leaves its record unspecified, so the log's own copy is never opened.
	var scratch []byte
	open := func(p *record.Protector, seq uint64, rec []byte) (uint8, []byte, error) {
		scratch = append(scratch[:0], rec...)
		return p.Open(seq, scratch)
	}
	// From the end: r_j is log[i], and last is r_n.
	h, j := 0, n
	var last []byte
	for i := len(log) - 1; i >= 0 && h == 0; i-- {
		if log[i][0] != backend.TypeApplicationData {
			continue
		}
		if last == nil {
			last = log[i]
		}
		if _, _, err := open(hs, uint64(j-1), log[i]); err == nil {
			h = j
		}
		j--
	}
	if h == 0 {
		clear(scratch)
		return nil, fmt.Errorf("no %s record of the handshake opens under its handshake key at its place", who)
	}
	d := &dirKeys{suite: suite, secret: bytes.Clone(appSecret)}
	d.params = backend.Params{Version: suite.Version, CipherSuite: suite.ID}
	d.params.Key, d.params.IV = keyschedule.TrafficKey(suite, appSecret)
	if h < n {
		if err := d.buildProt(); err != nil {
			clear(scratch)
			d.wipe()
			return nil, err
		}
		typ, msg, err := open(d.prot, uint64(n-h-1), last)
		if err == nil && typ == backend.TypeHandshake && !noKeyUpdate(msg) {
			// After a KeyUpdate its sender protects under the next key
			// (RFC 8446 §4.6.3): this one would be stale. crypto/tls
			// sends none during the handshake; the full proof did not
			// look.
			err = errors.New("a KeyUpdate, or handshake messages not whole")
		}
		if err != nil {
			clear(scratch)
			d.wipe()
			return nil, fmt.Errorf("%s record %d of the handshake opens under neither of its keys at its place (%v)", who, n, err)
		}
	}
	clear(scratch)
	d.params.Seq = uint64(n - h)
	return d, nil
}

// noKeyUpdate reports whether msgs, the plaintext of a handshake record, is
// whole handshake messages (type(1) length(3) body, RFC 8446 §4) none of
// which is a KeyUpdate. crypto/tls puts each post-handshake message
// (NewSessionTicket) in a record of its own.
func noKeyUpdate(msgs []byte) bool {
	for len(msgs) > 0 {
		if len(msgs) < 4 || msgs[0] == typeKeyUpdate {
			return false
		}
		l := 4 + (int(msgs[1])<<16 | int(msgs[2])<<8 | int(msgs[3]))
		if l > len(msgs) {
			return false
		}
		msgs = msgs[l:]
	}
	return true
}

// buildProt makes d.prot from d's key, if it is not made yet: the proof of a
// TLS 1.3 direction makes it only where it opens a record under the key, and
// the TLS 1.3 client's ticket drain needs both directions' (drain.go, and
// recordConn.moveTX to read what crypto/tls tries to write).
func (d *dirKeys) buildProt() error {
	if d.prot != nil {
		return nil
	}
	p, err := record.NewProtector(d.suite.Version, d.suite.ID, d.params.Key, d.params.IV)
	if err != nil {
		return err
	}
	d.prot = p
	return nil
}

// keys12 derives the TLS 1.2 keys from the master secret and both randoms
// (RFC 5246 §6.3) and counts the records each side sent after its
// ChangeCipherSpec, opening every one.
func (c *Conn) keys12(suite keyschedule.Suite, st tls.ConnectionState, cr, sr []byte) (cli, srv *dirKeys, err error) {
	master, ok := c.keyLog.secret(keyschedule.LabelClientRandom, cr)
	if ok {
		master = bytes.Clone(master)
	} else {
		if !st.DidResume {
			return nil, nil, errors.New("crypto/tls logged no master secret for this connection")
		}
		c.sessions.mu.Lock()
		var ss *tls.SessionState
		if c.isClient && c.sessions.client != nil {
			_, ss, err = c.sessions.client.ResumptionState()
		} else if !c.isClient {
			ss = c.sessions.server
		}
		c.sessions.mu.Unlock()
		if ss == nil || err != nil {
			return nil, nil, errors.New("the resumed session's master secret is not known")
		}
		if master, err = sessionSecret(ss, st.Version, st.CipherSuite); err != nil {
			return nil, nil, err
		}
	}
	defer clear(master)
	ck, sk, civ, siv := keyschedule.KeyBlock12(suite, master, cr, sr)
	clientLog, serverLog := c.rc.txLog, c.rc.rxLog
	if !c.isClient {
		clientLog, serverLog = serverLog, clientLog
	}
	if cli, err = dir12(suite, ck, civ, clientLog, "client", c.isClient); err != nil {
		clear(sk)
		clear(siv)
		return nil, nil, err
	}
	if srv, err = dir12(suite, sk, siv, serverLog, "server", !c.isClient); err != nil {
		cli.wipe()
		return nil, nil, err
	}
	return cli, srv, nil
}

// dir12 counts one direction's protected records. ours says the direction is
// this side's TX, whose explicit nonces the engines continue.
func dir12(suite keyschedule.Suite, key, iv []byte, log [][]byte, who string, ours bool) (*dirKeys, error) {
	d := &dirKeys{suite: suite, params: backend.Params{Version: suite.Version, CipherSuite: suite.ID, Key: key, IV: iv}}
	var err error
	if d.prot, err = record.NewProtector(suite.Version, suite.ID, key, iv); err != nil {
		d.wipe()
		return nil, err
	}
	var n uint64
	ccs := false
	var scratch []byte
	for i, rec := range log {
		if !ccs {
			ccs = rec[0] == backend.TypeChangeCipherSpec
			continue
		}
		// With AES-GCM, crypto/tls puts the sequence number in the explicit
		// nonce (RFC 5288 §3 leaves the choice to the sender); engines go on
		// from there, so every explicit nonce ever sent stays unique only if
		// crypto/tls's were exactly 0..n-1. Check it. The peer's nonces are
		// its own business (OpenSSL, for one, does not use the sequence
		// number).
		if ours && suite.AES && (len(rec) < record.HeaderLen+8 || binary.BigEndian.Uint64(rec[record.HeaderLen:]) != n) {
			d.wipe()
			return nil, fmt.Errorf("%s record %d has an explicit nonce other than its sequence number", who, i)
		}
		scratch = append(scratch[:0], rec...)
		if _, _, err := d.prot.Open(n, scratch); err != nil {
			d.wipe()
			return nil, fmt.Errorf("%s record %d after ChangeCipherSpec does not open", who, i)
		}
		n++
	}
	if n == 0 {
		d.wipe()
		return nil, fmt.Errorf("no protected %s record (Finished) was seen", who)
	}
	d.params.Seq = n
	return d, nil
}

// Handshake message types, RFC 8446 §4 and RFC 5246 §7.4.
const (
	typeHelloRequest     uint8 = 0
	typeClientHello      uint8 = 1
	typeServerHello      uint8 = 2
	typeNewSessionTicket uint8 = 4
	typeKeyUpdate        uint8 = 24
)
