package conn

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// The races of Close against the handshake and the handoff
// (docs/ARCHITECTURE.md, Close). An engine whose Check blocks holds the handoff at the point where
// crypto/tls's records are counted and no engine is installed yet; a raw conn
// that holds its Close lets what Close wrote (or did not) reach the wire
// before the connection goes on.

// gateEngine is the userspace engine with a Check that blocks, the first
// time, until release is closed. It counts the halves it made and closed.
type gateEngine struct {
	backend.Backend
	entered, release chan struct{}
	once             sync.Once

	mu             sync.Mutex
	opened, closed int
}

func newGateEngine() *gateEngine {
	return &gateEngine{Backend: userspace.New(), entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateEngine) Check(tx bool, version, suite uint16) error {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	return g.Backend.(backend.Checker).Check(tx, version, suite)
}

func (g *gateEngine) NewSealer(l backend.Link, p backend.Params) (backend.Sealer, error) {
	s, err := g.Backend.NewSealer(l, p)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.opened++
	g.mu.Unlock()
	return &countedSealer{Sealer: s, g: g}, nil
}

func (g *gateEngine) NewOpener(l backend.Link, p backend.Params) (backend.Opener, error) {
	o, err := g.Backend.NewOpener(l, p)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.opened++
	g.mu.Unlock()
	return &countedOpener{Opener: o, g: g}, nil
}

func (g *gateEngine) counts() (opened, closed int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.opened, g.closed
}

func (g *gateEngine) noteClose() {
	g.mu.Lock()
	g.closed++
	g.mu.Unlock()
}

type countedSealer struct {
	backend.Sealer
	g *gateEngine
}

func (s *countedSealer) Close() error { s.g.noteClose(); return s.Sealer.Close() }

type countedOpener struct {
	backend.Opener
	g *gateEngine
}

func (o *countedOpener) Close() error { o.g.noteClose(); return o.Opener.Close() }

// wireConn keeps what goes through it each way, and holds its Close until
// hold is closed, telling closing when Close was called.
type wireConn struct {
	net.Conn
	closing, hold chan struct{}
	closeOnce     sync.Once

	mu      sync.Mutex
	out, in []byte
}

func (w *wireConn) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.out = append(w.out, p...)
	w.mu.Unlock()
	return w.Conn.Write(p)
}

func (w *wireConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	w.mu.Lock()
	w.in = append(w.in, p[:n]...)
	w.mu.Unlock()
	return n, err
}

func (w *wireConn) Close() error {
	w.closeOnce.Do(func() { close(w.closing) })
	<-w.hold
	return w.Conn.Close()
}

// records splits a byte stream into whole records.
func records(b []byte) [][]byte {
	var rs [][]byte
	for len(b) >= record.HeaderLen {
		n := record.HeaderLen + recordLen(b)
		if n > len(b) {
			break
		}
		rs = append(rs, b[:n])
		b = b[n:]
	}
	return rs
}

// checkSequence opens every record the ktls side sent under its traffic key
// with the key log of its config: each must open at the next sequence number
// (dir12 and dir13 count so), so a record sealed twice at one number, which
// can only open at that number, fails. It returns how many there were.
func checkSequence(t *testing.T, isClient bool, version uint16, suiteID uint16, keyLog *bytes.Buffer, out, in []byte) uint64 {
	t.Helper()
	suite, ok := keyschedule.Lookup(version, suiteID)
	if !ok {
		t.Fatalf("suite %#04x", suiteID)
	}
	secrets := map[string][]byte{}
	for _, line := range bytes.Split(keyLog.Bytes(), []byte("\n")) {
		if e, err := keyschedule.ParseKeyLogLine(line); err == nil {
			secrets[e.Label] = e.Secret
		}
	}
	sent, got := records(out), records(in)
	clientLog, serverLog := sent, got
	if !isClient {
		clientLog, serverLog = got, sent
	}
	var d *dirKeys
	var err error
	switch version {
	case tls.VersionTLS13:
		hs, app := keyschedule.LabelServerHandshake, keyschedule.LabelServerTraffic0
		if isClient {
			hs, app = keyschedule.LabelClientHandshake, keyschedule.LabelClientTraffic0
		}
		d, err = dir13Full(suite, secrets[hs], secrets[app], sent, "ktls")
	default:
		cr, ok1 := helloRandom(clientLog, typeClientHello)
		sr, ok2 := helloRandom(serverLog, typeServerHello)
		if !ok1 || !ok2 {
			t.Fatal("hellos not on the wire")
		}
		ck, sk, civ, siv := keyschedule.KeyBlock12(suite, secrets[keyschedule.LabelClientRandom], cr, sr)
		key, iv := sk, siv
		if isClient {
			key, iv = ck, civ
		}
		d, err = dir12(suite, key, iv, sent, "ktls", true)
	}
	if err != nil {
		t.Fatalf("the records ktls sent: %v (a sequence number used twice opens only once)", err)
	}
	return d.params.Seq
}

// TestCloseDuringHandoff: Close while the handoff holds
// crypto/tls's counted records. Before the fix crypto/tls wrote close_notify
// at sequence number N under the traffic key, the engine then sealed its
// first record at N too, and the handshake succeeded on a closed connection.
// Now nothing is written, the handshake fails with net.ErrClosed, and every
// half it installed is closed exactly once, also by a second Close.
func TestCloseDuringHandoff(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, ktlsClient := range []bool{true, false} {
			name := tls.VersionName(v) + "/server"
			if ktlsClient {
				name = tls.VersionName(v) + "/client"
			}
			t.Run(name, func(t *testing.T) { closeDuringHandoff(t, v, ktlsClient) })
		}
	}
}

func closeDuringHandoff(t *testing.T, version uint16, ktlsClient bool) {
	ccfg, scfg := testConfigs(version)
	var keyLog bytes.Buffer
	rc, rs := testenv.TCPPair(t)
	g := newGateEngine()
	opts := Options{Backends: []backend.Backend{g}}
	var w *wireConn
	var k *Conn
	var peer *tls.Conn
	if ktlsClient {
		ccfg.KeyLogWriter = &keyLog
		w = &wireConn{Conn: rc, closing: make(chan struct{}), hold: make(chan struct{})}
		k, peer = Client(w, ccfg, opts), tls.Server(rs, scfg)
	} else {
		scfg.KeyLogWriter = &keyLog
		w = &wireConn{Conn: rs, closing: make(chan struct{}), hold: make(chan struct{})}
		k, peer = Server(w, scfg, opts), tls.Client(rc, ccfg)
	}
	defer peer.Close()
	go func() {
		// The peer reads whatever comes, until the connection ends.
		if peer.Handshake() == nil {
			io.Copy(io.Discard, peer)
		}
	}()
	hsErr := make(chan error, 1)
	go func() { hsErr <- k.Handshake() }()
	select {
	case <-g.entered:
	case err := <-hsErr:
		t.Fatalf("handshake ended (%v) before the handoff asked the engine", err)
	case <-time.After(advTimeout):
		t.Fatal("the handoff never asked the engine")
	}
	closeErr := make(chan error, 1)
	go func() { closeErr <- k.Close() }()
	select {
	case <-w.closing:
	case <-time.After(advTimeout):
		t.Fatal("Close never closed the raw conn")
	}
	close(g.release)
	var err error
	select {
	case err = <-hsErr:
	case <-time.After(advTimeout):
		t.Fatal("the handshake did not end after Close")
	}
	// Whatever the handshake said, a Write now must not seal anything that
	// reuses a sequence number; with the fix it fails.
	_, werr := k.Write([]byte("after close"))
	close(w.hold)
	if cerr := <-closeErr; cerr != nil {
		t.Errorf("Close: %v", cerr)
	}
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("handshake overtaken by Close returned %v; want net.ErrClosed", err)
	}
	if werr == nil {
		t.Error("Write after Close succeeded")
	}
	if err := k.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v; want net.ErrClosed", err)
	}
	w.mu.Lock()
	out, in := append([]byte(nil), w.out...), append([]byte(nil), w.in...)
	w.mu.Unlock()
	st := k.ConnectionState()
	n := checkSequence(t, ktlsClient, version, st.CipherSuite, &keyLog, out, in)
	// TLS 1.3 server: its tickets; TLS 1.2: its Finished. Nothing after.
	var want uint64
	if version == tls.VersionTLS12 {
		want = 1
	} else if !ktlsClient {
		want = n // the tickets crypto/tls sent before the handoff
	}
	if n != want {
		t.Errorf("%d records under the traffic key on the wire; want %d (nothing after Close)", n, want)
	}
	opened, closed := g.counts()
	if opened != closed {
		t.Errorf("the handshake installed %d halves and %d were closed", opened, closed)
	}
	if b := k.Backend(); b.TX == "" && err == nil {
		t.Errorf("Backend() = %+v", b)
	}
}

// TestCloseDuringRead: Close while a Read is blocked closes the
// opener, whoever still holds the read lock when Close runs.
// The TLS 1.3 client that still drains tickets holds RX's key and IV for
// the install after the drain: they are zeroed too.
func TestCloseDuringRead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint16
		drain   bool
	}{
		{"TLS13", tls.VersionTLS13, false},
		{"TLS13-drain", tls.VersionTLS13, true},
		{"TLS12", tls.VersionTLS12, false},
	} {
		v := tc.version
		t.Run(tc.name, func(t *testing.T) {
			for range 20 {
				ccfg, scfg := testConfigs(v)
				if tc.drain {
					ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				}
				rc, rs := testenv.TCPPair(t)
				g := newGateEngine()
				close(g.release)
				k, peer := Client(rc, ccfg, Options{Backends: []backend.Backend{g}}), tls.Server(rs, scfg)
				errc := make(chan error, 1)
				go func() { errc <- peer.Handshake() }()
				if err := k.Handshake(); err != nil {
					t.Fatal(err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				if k.in.draining != tc.drain {
					t.Fatalf("in.draining = %v, want %v", k.in.draining, tc.drain)
				}
				rerr := make(chan error, 1)
				go func() {
					_, err := k.Read(make([]byte, 10))
					rerr <- err
				}()
				time.Sleep(time.Millisecond)
				k.Close()
				select {
				case <-rerr:
				case <-time.After(advTimeout):
					t.Fatal("Close did not end the Read")
				}
				peer.Close()
				want := 2
				if tc.drain {
					want = 1 // RX was to be installed after the drain
				}
				if opened, closed := g.counts(); opened != want || closed != want {
					t.Fatalf("%d halves installed, %d closed; want %d and %d", opened, closed, want, want)
				}
				k.in.mu.Lock()
				if k.in.keys != nil && !allZero(k.in.keys.secret) {
					t.Error("the RX traffic secret outlived Close")
				}
				if k.in.keys != nil && (!allZero(k.in.keys.params.Key) || !allZero(k.in.keys.params.IV)) {
					t.Error("the pending RX key or IV outlived Close")
				}
				k.in.mu.Unlock()
				k.out.mu.Lock()
				if k.out.keys != nil && !allZero(k.out.keys.secret) {
					t.Error("the TX traffic secret outlived Close")
				}
				k.out.mu.Unlock()
			}
		})
	}
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// TestBackendDuringDrain: a TLS 1.3 client names its RX engine at
// the end of the ticket drain, under the read lock, while Backend may be
// called from anywhere (a data race the race detector reported).
func TestBackendDuringDrain(t *testing.T) {
	ccfg, scfg := testConfigs(tls.VersionTLS13)
	ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	rc, rs := testenv.TCPPair(t)
	k, peer := Client(rc, ccfg, userspaceOptions()), tls.Server(rs, scfg)
	defer peer.Close()
	defer k.Close()
	errc := handshakeThenWrite(peer, "x")
	if err := k.Handshake(); err != nil {
		t.Fatal(err)
	}
	if !k.in.draining {
		t.Fatal("no ticket drain: the test needs one")
	}
	stop := make(chan struct{})
	done := make(chan string)
	go func() {
		var last string
		for {
			select {
			case <-stop:
				done <- last
				return
			default:
				last = k.Backend().Reason
			}
		}
	}()
	if _, err := io.ReadFull(k, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if b := k.Backend(); b.RX != backend.Userspace {
		t.Fatalf("Backend() = %+v", b)
	}
	// The install after the drain found the engine the drain's reason
	// named, so the reason names RX once (it used to be repeated).
	b := k.Backend()
	if d := b.RXDetail; !d.AfterTickets || d.Engine != backend.Userspace || d.Drained.Engine != backend.Userspace {
		t.Errorf("Backend().RXDetail = %+v; want userspace named at the handshake and installed after the drain", d)
	}
	want := "tx: userspace (" + b.TXDetail.Reason + "); rx: userspace (" + b.RXDetail.Reason + "), after crypto/tls has read the session tickets"
	if b.Reason != want || b.String() != want {
		t.Errorf("Backend().Reason = %q, String() = %q; want %q", b.Reason, b.String(), want)
	}
}

// brokenRX is the userspace engine whose openers fail after doing something,
// as an engine that changed the socket and then failed would.
type brokenRX struct{ *gateEngine }

func (b brokenRX) NewOpener(backend.Link, backend.Params) (backend.Opener, error) {
	return nil, errors.New("brokenRX: the socket is in a state nothing can use")
}

// TestFailedRXInstallClosesTX: a handshake that fails after TX
// moved (the RX install failed) closes the sealer it installed, and Close
// afterwards does not close it again.
func TestFailedRXInstallClosesTX(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			ccfg, scfg := testConfigs(v)
			rc, rs := testenv.TCPPair(t)
			g := newGateEngine()
			close(g.release)
			k, peer := Server(rs, scfg, Options{Backends: []backend.Backend{brokenRX{g}}}), tls.Client(rc, ccfg)
			defer peer.Close()
			go peer.Handshake()
			if err := k.Handshake(); err == nil {
				t.Fatal("handshake succeeded with an RX engine that fails")
			}
			if opened, closed := g.counts(); opened != 1 || closed != 1 {
				t.Fatalf("%d halves installed, %d closed; want 1 and 1", opened, closed)
			}
			k.Close()
			if _, closed := g.counts(); closed != 1 {
				t.Fatalf("Close closed the sealer again (%d closes)", closed)
			}
		})
	}
}
