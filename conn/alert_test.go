package conn_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// The alert on the wire (RFC 8446 §5.2, §6; RFC 5246 §7.2.2): when ktls
// refuses a record, the peer must read the alert, whichever engine holds RX.
// The peer is stock crypto/tls over a transport that can break its next
// record or slip in one the test sealed; crypto/tls decrypts what ktls sends
// back, so the assertion is crypto/tls's own "remote error", not an EOF or a
// reset.

// alertTimeout bounds each read of these tests (the VMs emulate the CPU).
const alertTimeout = 10 * time.Second

// alertEngines are the engine choices of these tests: the userspace engine
// is the reference (and runs everywhere); the kernel ones need kTLS, and the
// last mixes a user-space sealer with the kernel's RX, whose failed
// decryption marks the socket for both directions.
var alertEngines = []struct {
	spec   string
	tx, rx string
}{
	{"userspace", backend.Userspace, backend.Userspace},
	{"kernel", backend.Kernel, backend.Kernel},
	{"tx=userspace,rx=kernel", backend.Userspace, backend.Kernel},
}

// alertMode is when the bad record comes and how ktls reads it.
type alertMode struct {
	name string
	// first: the bad record is the peer's first after the handshake, which
	// a TLS 1.3 ktls client looks at before RX leaves crypto/tls (the
	// ticket drain, docs/ARCHITECTURE.md step 7); otherwise the peer sent one good
	// record first, which ktls read.
	first bool
	// readLen is the size of ktls's Read buffer: from backend.MaxPlaintext
	// on, the engine reads into it (backend.IntoReader).
	readLen int
}

var alertModes = []alertMode{
	{"after-data", false, 1024},
	{"after-data/big-read", false, 64 << 10},
	{"first-record", true, 1024},
}

// alertModesFor leaves out the first-record mode where it is the same as
// after-data (no TLS 1.3 client drain).
func alertModesFor(version uint16, ktlsClient bool) []alertMode {
	if version == tls.VersionTLS13 && ktlsClient {
		return alertModes
	}
	return alertModes[:2]
}

// alertPair is a handshaken ktls Conn and a stock peer.
type alertPair struct {
	k      *ktls.Conn
	peer   *tls.Conn
	flip   *ktlstest.FlipConn
	secret []byte // the peer's TLS 1.3 sending secret, from its key log
	seq    uint64 // the peer's next TLS 1.3 sequence number
	mode   alertMode
	tx, rx string // the engines ktls must run
}

func newAlertPair(t *testing.T, ktlsClient bool, version, suite uint16, spec, tx, rx string, mode alertMode) *alertPair {
	t.Helper()
	if rx == backend.Kernel || tx == backend.Kernel {
		ktlstest.RequireKTLS(t, version, suite)
	}
	ccfg, scfg := testpki.Configs(version, suite)
	// No tickets: the stock server's first record after the handshake is
	// then the test's, at sequence number 0 (RFC 8446 §5.3).
	scfg.SessionTicketsDisabled = true
	var log keyLog
	rc, rs := testenv.TCPPair(t)
	p := &alertPair{mode: mode, tx: tx, rx: rx}
	opts := []ktls.Option{ktls.WithBackend(spec), ktls.WithStrict()}
	if ktlsClient {
		scfg.KeyLogWriter = &log
		p.flip = &ktlstest.FlipConn{Conn: rs}
		p.k, p.peer = ktls.Client(rc, ccfg, opts...), tls.Server(p.flip, scfg)
	} else {
		ccfg.KeyLogWriter = &log
		p.flip = &ktlstest.FlipConn{Conn: rc}
		p.k, p.peer = ktls.Server(rs, scfg, opts...), tls.Client(p.flip, ccfg)
	}
	t.Cleanup(func() { p.k.Close(); p.peer.Close() })
	testenv.HandshakeBoth(t, p.k, p.peer)
	if st := p.k.ConnectionState(); st.Version != version || suite != 0 && st.CipherSuite != suite {
		t.Fatalf("negotiated %s %s, want %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), ktlstest.SuiteCase{Version: version, Suite: suite})
	}
	if version == tls.VersionTLS13 {
		label := keyschedule.LabelServerTraffic0
		if !ktlsClient {
			label = keyschedule.LabelClientTraffic0
		}
		p.secret = log.secret(t, label)
	}
	if mode.first {
		return p
	}
	if _, err := p.peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	p.seq++
	p.k.SetReadDeadline(time.Now().Add(alertTimeout))
	buf := make([]byte, 5)
	if _, err := p.k.Read(buf); err != nil || string(buf) != "hello" {
		t.Fatalf("ktls Read = %q, %v", buf, err)
	}
	ktlstest.WantBackend(t, p.k, tx, rx)
	return p
}

// fails checks that ktls's Read fails with the local error that names alert
// want, and that the peer then reads that alert: crypto/tls's Read returns
// "remote error: tls: ...".
func (p *alertPair) fails(t *testing.T, want tls.AlertError) {
	t.Helper()
	p.k.SetReadDeadline(time.Now().Add(alertTimeout))
	n, err := p.k.Read(make([]byte, p.mode.readLen))
	var a tls.AlertError
	var oe *net.OpError
	if n != 0 || !errors.As(err, &a) || a != want || !errors.As(err, &oe) || oe.Op != "local error" {
		t.Fatalf("ktls Read = %d, %v; want a local error naming %v", n, err, want)
	}
	p.peer.SetReadDeadline(time.Now().Add(alertTimeout))
	n, err = p.peer.Read(make([]byte, 1024))
	if wantErr := "remote error: " + want.Error(); n != 0 || err == nil || err.Error() != wantErr {
		t.Fatalf("the peer's Read after ktls refused the record = %d, %v; want %q: ktls did not send the alert", n, err, wantErr)
	}
	// The record reached the engine (a TLS 1.3 client's drain leaves a
	// record it cannot open to the engine too).
	ktlstest.WantBackend(t, p.k, p.tx, p.rx)
}

// TestAlertBadRecordMAC flips a bit of a record's ciphertext on its way to
// ktls: ktls must answer bad_record_mac (RFC 8446 §5.2; RFC 5246 §7.2.2), as
// crypto/tls does. The kernel engine needs more than passing EBADMSG on: the
// failed decryption also marks the socket with an error that refuses every
// send (tls_err_abort sets sk_err; tls_sw_sendmsg_locked and
// tcp_sendmsg_locked check it), so the opener takes that error back
// (SO_ERROR) for the alert to go out.
func TestAlertBadRecordMAC(t *testing.T) {
	for _, sc := range []ktlstest.SuiteCase{
		{Version: tls.VersionTLS13, Suite: 0},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	} {
		t.Run(sc.String(), func(t *testing.T) {
			for _, e := range alertEngines {
				t.Run(e.spec, ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
					for _, mode := range alertModesFor(sc.Version, ktlsClient) {
						t.Run(mode.name, func(t *testing.T) {
							p := newAlertPair(t, ktlsClient, sc.Version, sc.Suite, e.spec, e.tx, e.rx, mode)
							p.flip.ArmFlip()
							if _, err := p.peer.Write([]byte("attack at dawn")); err != nil {
								t.Fatal(err)
							}
							p.fails(t, 20) // bad_record_mac
						})
					}
				}))
			}
		})
	}
}

// TestAlertKeyUpdateNotLast sends ktls one TLS 1.3 record that holds two
// KeyUpdates. RFC 8446 §5.1 requires a KeyUpdate to end its record (the next
// record is under the next key), so ktls must answer unexpected_message
// before it takes any key, on every kernel: one that rekeys (Linux 6.14)
// and pauses RX after the KeyUpdate it read, and one that does not.
// crypto/tls cannot send such a record; the test seals it under the peer's
// traffic key (from its key log) and writes it below the peer.
func TestAlertKeyUpdateNotLast(t *testing.T) {
	for _, e := range alertEngines {
		t.Run(e.spec, ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			for _, mode := range alertModesFor(tls.VersionTLS13, ktlsClient) {
				for _, request := range []byte{0, 1} {
					t.Run(fmt.Sprintf("%s/request_update=%d", mode.name, request), func(t *testing.T) {
						p := newAlertPair(t, ktlsClient, tls.VersionTLS13, 0, e.spec, e.tx, e.rx, mode)
						s, ok := keyschedule.Lookup(tls.VersionTLS13, p.k.ConnectionState().CipherSuite)
						if !ok {
							t.Fatalf("no key schedule for %s", tls.CipherSuiteName(p.k.ConnectionState().CipherSuite))
						}
						key, iv := keyschedule.TrafficKey(s, p.secret)
						prot, err := record.NewProtector(tls.VersionTLS13, s.ID, key, iv)
						if err != nil {
							t.Fatal(err)
						}
						ku := []byte{24, 0, 0, 1, request} // KeyUpdate (RFC 8446 §4.6.3)
						rec := prot.Seal(nil, p.seq, backend.TypeHandshake, append(bytes.Clone(ku), ku...))
						if _, err := p.flip.Conn.Write(rec); err != nil {
							t.Fatal(err)
						}
						p.fails(t, 10) // unexpected_message
					})
				}
			}
		}))
	}
}

// keyLog collects what crypto/tls writes to Config.KeyLogWriter.
type keyLog struct {
	mu    sync.Mutex
	lines [][]byte
}

func (l *keyLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, bytes.Clone(b))
	l.mu.Unlock()
	return len(b), nil
}

// secret returns the secret logged under label.
func (l *keyLog) secret(t *testing.T, label string) []byte {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		e, err := keyschedule.ParseKeyLogLine(line)
		if err != nil {
			t.Fatal(err)
		}
		if e.Label == label {
			return e.Secret
		}
	}
	t.Fatalf("no %s in the key log", label)
	return nil
}
