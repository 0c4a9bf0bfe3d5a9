// Package conn is ktls's net.Conn: a TLS connection whose handshake runs in
// the standard library's crypto/tls and whose record layer then moves, per
// direction, into an engine (package backend).
//
// It holds everything that is the same for every engine: the record-boundary
// conn under crypto/tls, the capture of secrets through public API, the
// sequence numbers known by construction, the choice and installation of the
// engines, and the TLS protocol around the records (alerts, close_notify,
// KeyUpdate, NewSessionTicket, refused renegotiation, limits). It receives
// engines and never imports a concrete one; the root package ktls wires them.
package conn

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/bufpool"
	"github.com/ktls-go/ktls/internal/stats"
	"github.com/ktls-go/ktls/selector"
)

// Options are what the root package gives a connection.
type Options struct {
	// Backends are the engines to choose from; stdlib is always possible
	// and is not listed.
	Backends []backend.Backend
	// Policy is the resolved KTLS_BACKEND/KTLS_STRICT policy.
	Policy selector.Policy
	// PolicyErr, when set, is returned by the handshake: the policy could
	// not be resolved (a malformed KTLS_BACKEND, say).
	PolicyErr error
	// CPU is what the processor offers AES-GCM (selector.CPU).
	CPU selector.CPU
	// FIPS is crypto/fips140.Enabled() for this program (selector.Facts.FIPS).
	FIPS bool
}

// Conn is a TLS connection with crypto/tls's method set. Read and Write may
// be called concurrently; Close unblocks both.
type Conn struct {
	raw net.Conn
	rc  *recordConn
	// tls is crypto/tls's connection: it runs the handshake and keeps the
	// record layer where ktls does not take it. Once both directions have
	// moved for good (after the ticket drain, if any) crypto/tls can never
	// read or write again, and dropTLSLocked lets it go with its buffers,
	// AEADs and handshake state, keeping only its ConnectionState. Read,
	// Write, Close and CloseWrite use it only while moved is false, which
	// never changes once it is set; the drain uses it under in.mu; the
	// accessors (ConnectionState, VerifyHostname, OCSPResponse) under tlsMu.
	tls      *tls.Conn
	isClient bool
	opts     Options
	cfg      *tls.Config // the per-connection clone crypto/tls runs with
	keyLog   *keyLog
	sessions *sessions
	ctr      *stats.Shard // the process-wide counters this connection adds to (stats.go)

	// handshakeMu serializes the handshake and the handoff; handshakeDone
	// is set, after every field below that the handoff fills, once it ended
	// (with or without error).
	handshakeMu   sync.Mutex
	handshakeDone atomic.Bool
	handshakeErr  error
	moved         bool // the record layer left crypto/tls (both directions)

	// infoMu protects info: the TLS 1.3 client's RX engine is named at the
	// end of the ticket drain, under in.mu, while Backend may be reading.
	infoMu sync.Mutex
	info   BackendInfo

	// tlsMu protects tls and state once the handshake is done: tls is
	// dropped, and state set to what crypto/tls's ConnectionState returned
	// then, by dropTLSLocked.
	tlsMu sync.Mutex
	state *tls.ConnectionState

	// out and in are the two directions, each with its own lock
	// (half.go). The handoff fills them under handshakeMu before
	// handshakeDone is set; from then on each one's mu protects it.
	out outHalf
	in  inHalf

	// peerReset is the error a read saw when the peer reset the TCP
	// connection; TX fails with it from then on (beforeDataLocked).
	peerReset atomic.Pointer[error]

	// closed is set by the first Close. Close does not wait for a Read or
	// Write in flight: whoever holds in.mu or out.mu last once closed is set
	// ends that direction (unlockIn, unlockOut).
	closed atomic.Bool

	// closeMu protects halves: every engine half installed, so that each is
	// closed exactly once, by Close or by a handshake that failed, whichever
	// comes first; a half installed after that is closed at once.
	closeMu      sync.Mutex
	halves       []io.Closer
	halvesClosed bool
}

// Client returns a client-side connection over raw, which runs its handshake
// on first use, as crypto/tls.Client does. The config is used as crypto/tls
// would use it; it is cloned, never modified.
func Client(raw net.Conn, config *tls.Config, o Options) *Conn {
	return newConn(raw, config, o, true)
}

// Server returns a server-side connection over raw, as crypto/tls.Server.
func Server(raw net.Conn, config *tls.Config, o Options) *Conn {
	return newConn(raw, config, o, false)
}

func newConn(raw net.Conn, config *tls.Config, o Options, isClient bool) *Conn {
	c := &Conn{raw: raw, isClient: isClient, opts: o, keyLog: &keyLog{discard: o.FIPS}, sessions: &sessions{}, ctr: stats.Pick()}
	c.out.keyUpdateAfter = defaultKeyUpdateAfter
	c.rc = newRecordConn(raw)
	c.cfg = prepareConfig(config, isClient, c.keyLog, c.sessions)
	if isClient {
		c.tls = tls.Client(c.rc, c.cfg)
	} else {
		c.tls = tls.Server(c.rc, c.cfg)
	}
	return c
}

// Handshake runs the handshake if it has not run yet; see HandshakeContext.
func (c *Conn) Handshake() error { return c.HandshakeContext(context.Background()) }

// HandshakeContext runs the crypto/tls handshake, then moves the record layer
// to the engines the policy picks. Cancelling ctx before the handshake ends
// aborts it and closes the connection, as crypto/tls does. A handshake that
// a Close overtook fails with net.ErrClosed, even if crypto/tls's part of it
// succeeded.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if c.handshakeDone.Load() {
		return c.handshakeErr
	}
	c.handshakeMu.Lock()
	defer c.handshakeMu.Unlock()
	if c.handshakeDone.Load() {
		return c.handshakeErr
	}
	err := c.opts.PolicyErr
	if err == nil && c.closed.Load() {
		err = net.ErrClosed
	}
	if err == nil {
		err = c.tls.HandshakeContext(ctx)
		if err == nil {
			err = c.handoff()
		}
	}
	// The key log's copies of the secrets are parsed and used by now, or
	// never will be.
	c.keyLog.wipe()
	c.sessions.forget()
	if c.tls == nil {
		// Nothing logs to them nor reads them again (dropTLSLocked).
		c.keyLog, c.sessions = nil, nil
	}
	// Close reads handshakeDone after it sets closed, and this reads closed
	// before it sets handshakeDone: at least one of the two sees the other.
	// A Close that saw the handshake unfinished closed only the raw conn, so
	// the handshake must fail here and let nothing be written after it.
	if err == nil && c.closed.Load() {
		err = net.ErrClosed
	}
	// Like crypto/tls, a failed handshake stays failed.
	c.handshakeErr = err
	c.handshakeDone.Store(true)
	if err != nil {
		stats.HandshakeFailed()
		countStrict(err)
		// Read and Write wait on handshakeMu and then see handshakeErr, so
		// nothing else holds the directions' state now.
		c.closeHalves()
		c.out.keys.wipeIfSet()
		c.in.keys.wipeIfSet()
	}
	return err
}

// Read reads application data, as crypto/tls.Conn.Read.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(b) == 0 {
		return 0, nil
	}
	if !c.moved {
		n, err := c.tls.Read(b)
		c.ctr.Received[stats.Stdlib].Add(uint64(n))
		return n, err
	}
	c.in.mu.Lock()
	defer c.unlockIn()
	for len(c.in.input) == 0 {
		if c.in.err != nil {
			return 0, c.in.err
		}
		// A buffer that holds a record lets the engine read into it
		// (backend.IntoReader): one copy less.
		n, err := c.readLocked(b)
		if err != nil {
			return 0, err
		}
		if n > 0 {
			c.ctr.Received[c.in.eng].Add(uint64(n))
			return n, nil
		}
	}
	n := copy(b, c.in.input)
	c.in.input = c.in.input[n:]
	c.ctr.Received[c.in.eng].Add(uint64(n))
	return n, nil
}

// Write writes application data, as crypto/tls.Conn.Write. A failed write
// leaves the direction broken, as in crypto/tls.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if !c.moved {
		n, err := c.tls.Write(b)
		c.ctr.Sent[stats.Stdlib].Add(uint64(n))
		return n, err
	}
	return c.writeMoved(b, nil)
}

// writeMoved is Write once TX has moved to an engine, and copyLent's write
// (sendfile.go), with lw the sealer's LentWriter: the sticky error,
// close_notify already sent, then the records, counted.
func (c *Conn) writeMoved(b []byte, lw backend.LentWriter) (int, error) {
	c.out.mu.Lock()
	defer c.unlockOut()
	if c.out.err != nil {
		return 0, c.out.err
	}
	if c.out.closeNotifySent {
		return 0, errShutdown
	}
	n, err := c.writeRecordsLocked(b, lw)
	c.ctr.Sent[c.out.eng].Add(uint64(n))
	return n, err
}

// ReadFrom copies from r until EOF, as io.ReaderFrom; io.Copy uses it. When
// the TX engine can send files itself (kTLS: sendfile(2), the kernel seals
// the records) and r is a regular file, an *os.File or an
// *io.LimitedReader or *io.SectionReader of one, the file's bytes never enter
// the process. When it can splice (kTLS: splice(2) through a pipe) and r is
// a *net.TCPConn, a stream *net.UnixConn, an *io.LimitedReader of one, or
// the wrapper that io.Copy(conn, tcpConn) hands over (see spliceSourceOf),
// the socket's bytes never enter the process either; a write timeout there
// loses nothing and leaves the connection writable (see spliceFrom).
// Anything else is copied through Write.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	var n int64
	if c.moved {
		if fs, ok := c.out.sealer.(backend.FileSender); ok {
			var handled bool
			var err error
			n, handled, err = c.sendFile(fs, r)
			// out.eng is set once before the handshake ends.
			c.ctr.Sent[c.out.eng].Add(uint64(n))
			c.ctr.Sendfile.Add(uint64(n))
			if handled || err != nil {
				return n, err
			}
		}
		if ss, ok := c.out.sealer.(backend.SocketSender); ok {
			m, handled, err := c.spliceFrom(ss, r)
			c.ctr.Sent[c.out.eng].Add(uint64(m))
			c.ctr.SpliceFrom.Add(uint64(m))
			n += m
			if handled || err != nil {
				return n, err
			}
		}
	}
	// Big writes let the user-space engine batch records into fewer
	// syscalls; 64 KiB is four full records. The buffer is pooled: a file
	// server calls io.Copy once per response, and crypto/tls's io.Copy
	// allocates only its 32 KiB (issue 18: no more bytes allocated than
	// crypto/tls).
	bp := copyBufs.Get()
	defer copyBufs.Put(bp)
	if lw, ok := c.out.sealer.(backend.LentWriter); c.moved && ok && lendFor(r) {
		// The buffer is ours: lent to the engine, which seals from it
		// without copying it first (copyLent).
		m, err := c.copyLent(lw, r, *bp)
		return n + m, err
	}
	m, err := io.CopyBuffer(writerOnly{c}, r, (*bp)[:4*backend.MaxPlaintext])
	return n + m, err
}

// copyBufs are ReadFrom's copy buffers: four full records and the byte
// that backend.LentWriter takes past them. Write and WriteRecordsLent seal
// what they are given before they return, so nothing refers to one after
// the copy. One is kept aside from the GC (bufpool.Pool): a file server
// whose connections each send one file and close would otherwise allocate
// 64 KiB now and then (measured on the sendfile benchmark with a sync.Pool
// alone: about 16 KiB per connection, against crypto/tls's 32 KiB io.Copy
// buffer).
var copyBufs = bufpool.New(4*backend.MaxPlaintext+1, 1)

// writerOnly hides ReadFrom so that io.CopyBuffer does not call it again.
type writerOnly struct{ io.Writer }

// Close sends close_notify when it can and closes the connection, as
// crypto/tls.Conn.Close. It does not wait for a Read or Write in flight: it
// closes the raw connection under them, and they return with an error.
//
// During the handshake nothing is written: crypto/tls's records are being
// counted (or were), and a close_notify from crypto/tls would go out at the
// sequence number the engine installed next starts from, a nonce reuse
// (docs/ARCHITECTURE.md, invariants). The raw connection is closed, the handshake fails
// with net.ErrClosed, and it closes what it installed.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	if !c.handshakeDone.Load() || c.handshakeErr != nil {
		err := c.raw.Close()
		c.closeHalves()
		return err
	}
	if !c.moved {
		// crypto/tls still has the record layer: it sends close_notify
		// itself, and closes the raw conn through rc.
		return c.tls.Close()
	}
	var alertErr error
	// As crypto/tls: a Write in flight means Close is used to break it; do
	// not wait for it to send close_notify. The writer ends TX when it
	// lets go of out.mu.
	if c.out.mu.TryLock() {
		alertErr = c.closeNotifyLocked()
		c.out.endLocked()
		c.out.mu.Unlock()
	}
	err := c.raw.Close()
	c.closeHalves()
	if c.in.mu.TryLock() {
		c.endInLocked()
		c.in.mu.Unlock()
	}
	if err != nil {
		return err
	}
	return alertErr
}

// unlockOut releases out.mu. Once the connection is closed, whoever releases
// it last ends TX (Close's TryLock may have found it held): Close sets closed
// before its TryLock, so a holder that Close missed sees closed here.
func (c *Conn) unlockOut() {
	c.out.mu.Unlock()
	if c.closed.Load() && c.out.mu.TryLock() {
		c.out.endLocked()
		c.out.mu.Unlock()
	}
}

// unlockIn is unlockOut for RX.
func (c *Conn) unlockIn() {
	c.in.mu.Unlock()
	if c.closed.Load() && c.in.mu.TryLock() {
		c.endInLocked()
		c.in.mu.Unlock()
	}
}

// endInLocked ends RX after Close (inHalf.endLocked), and the ticket drain
// with it (endDrainLocked). It may run more than once.
func (c *Conn) endInLocked() {
	c.in.endLocked()
	c.endDrainLocked()
}

// track records an installed half, for closeHalves; after closeHalves it
// closes the half at once.
func (c *Conn) track(h io.Closer) {
	c.closeMu.Lock()
	if c.halvesClosed {
		c.closeMu.Unlock()
		h.Close()
		return
	}
	c.halves = append(c.halves, h)
	c.closeMu.Unlock()
}

// closeHalves closes every installed half, once. A half may be in use by a
// Read or Write: backend.Sealer and backend.Opener allow Close during a call.
func (c *Conn) closeHalves() {
	c.closeMu.Lock()
	hs := c.halves
	c.halves, c.halvesClosed = nil, true
	c.closeMu.Unlock()
	for _, h := range hs {
		h.Close()
	}
}

// CloseWrite sends close_notify; the connection can still read. As in
// crypto/tls, the raw connection is not half-closed.
func (c *Conn) CloseWrite() error {
	if !c.handshakeDone.Load() || c.handshakeErr != nil {
		return errEarlyCloseWrite
	}
	if !c.moved {
		return c.tls.CloseWrite()
	}
	c.out.mu.Lock()
	defer c.unlockOut()
	return c.closeNotifyLocked()
}

func (c *Conn) closeNotifyLocked() error {
	if c.out.closeNotifySent || c.out.err != nil {
		return c.out.err
	}
	// crypto/tls gives close_notify five seconds and then fails later
	// writes; so does ktls.
	c.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	err := c.sendAlertLocked(alertCloseNotify)
	c.out.closeNotifySent = true
	c.raw.SetWriteDeadline(time.Now())
	return err
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets the read and write deadlines, as crypto/tls: a Write that
// times out leaves the connection broken for writes.
func (c *Conn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// NetConn returns the raw connection. Reading from it or writing to it
// directly corrupts the TLS session.
func (c *Conn) NetConn() net.Conn { return c.raw }

// ConnectionState returns crypto/tls's connection state.
func (c *Conn) ConnectionState() tls.ConnectionState {
	c.tlsMu.Lock()
	defer c.tlsMu.Unlock()
	if c.state != nil {
		return *c.state
	}
	return c.tls.ConnectionState()
}

// VerifyHostname checks the peer's certificate chain for host, as
// crypto/tls.Conn.VerifyHostname.
func (c *Conn) VerifyHostname(host string) error {
	c.tlsMu.Lock()
	defer c.tlsMu.Unlock()
	if c.state == nil {
		return c.tls.VerifyHostname(host)
	}
	// crypto/tls's checks, in its order and with its texts, on the state
	// of a completed handshake (crypto/tls/conn.go, Conn.VerifyHostname).
	if !c.isClient {
		return errors.New("tls: VerifyHostname called on TLS server connection")
	}
	if len(c.state.VerifiedChains) == 0 {
		return errors.New("tls: handshake did not verify certificate chain")
	}
	return c.state.PeerCertificates[0].VerifyHostname(host)
}

// OCSPResponse returns the stapled OCSP response from a server, if any.
func (c *Conn) OCSPResponse() []byte {
	c.tlsMu.Lock()
	defer c.tlsMu.Unlock()
	if c.state != nil {
		// crypto/tls returns the same field (Conn.OCSPResponse).
		return c.state.OCSPResponse
	}
	return c.tls.OCSPResponse()
}

// dropTLSLocked lets crypto/tls's connection go once it can never read or
// write again: both directions are in engines, and a TLS 1.3 client's
// ticket drain is over. Its ConnectionState, st, is kept: nothing in it changes
// after the handshake (renegotiation, which would, keeps a connection on
// crypto/tls: handoff). The caller holds handshakeMu (the handoff) or in.mu
// (the end of the drain), the only places that use tls once moved is set.
//
// The state must not keep the tls.Conn alive, or nothing is gained:
// crypto/tls's TLSUnique is a slice of an array inside its Conn, so it is
// copied. Its ekm closure holds only the exporter secret, except for TLS
// 1.2 without Extended Master Secret with Go 1.26 (there it captures the
// Conn for GODEBUG=tlsunsafeekm=1): that rare connection keeps it, as the
// state must behave as crypto/tls's would.
func (c *Conn) dropTLSLocked(st tls.ConnectionState) {
	st.TLSUnique = bytes.Clone(st.TLSUnique)
	c.tlsMu.Lock()
	c.state = &st
	c.tls = nil
	c.cfg = nil
	c.tlsMu.Unlock()
	// What only the handoff used: crypto/tls's record-boundary conn (the
	// drain's state is gone with it, endDrainLocked) and the engines to
	// choose from (installHalf).
	c.rc = nil
	c.opts.Backends = nil
}

// Backend says which engine protects each direction and why. It is empty
// before the handshake.
func (c *Conn) Backend() BackendInfo {
	if !c.handshakeDone.Load() {
		return BackendInfo{}
	}
	c.infoMu.Lock()
	info := c.info
	c.infoMu.Unlock()
	info.Reason = info.String()
	return info
}

var (
	errShutdown        = errors.New("tls: protocol is shutdown")
	errEarlyCloseWrite = errors.New("tls: CloseWrite called before handshake complete")
)

// Static checks that Conn is what it claims to be.
var (
	_ net.Conn      = (*Conn)(nil)
	_ io.ReaderFrom = (*Conn)(nil)
)
