package conn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
)

// The TLS protocol around the records, once for every engine (docs/ARCHITECTURE.md step
// 7). Engines seal and open; this file decides what records mean.

// Alert levels and descriptions, RFC 8446 §6 and RFC 5246 §7.2.
const (
	alertLevelWarning = 1
	alertLevelError   = 2

	alertCloseNotify       uint8 = 0
	alertUnexpectedMessage uint8 = 10
	alertRecordOverflow    uint8 = 22
	alertIllegalParameter  uint8 = 47
	alertDecodeError       uint8 = 50
	alertInternalError     uint8 = 80
	alertUserCanceled      uint8 = 90
	alertNoRenegotiation   uint8 = 100
)

const (
	// maxUselessRecords caps consecutive records that carry no application
	// data (empty records, warning alerts, post-handshake messages): the
	// same cap as crypto/tls (conn.go), against floods that would keep a
	// reader busy forever.
	maxUselessRecords = 16
	// maxKeyUpdates caps consecutive KeyUpdate messages without application
	// data. RFC 8446 §4.6.3 sets no limit, and a peer may update many times
	// before its next data, so KeyUpdates do not count against
	// maxUselessRecords; this cap is far above any conforming burst and
	// still bounds the key derivations (and answers) one peer can cause
	// without sending data.
	maxKeyUpdates = 1024
	// maxHandshake caps a post-handshake message, as crypto/tls does.
	maxHandshake = 65536
	// defaultKeyUpdateAfter is when ktls updates its TLS 1.3 sending key:
	// RFC 8446 §5.5 allows AES-GCM 2^24.5 full-size records under one key;
	// 2^24 keeps a margin. ChaCha20-Poly1305's limit is beyond 2^64, but one
	// KeyUpdate per 256 GiB costs nothing, so one rule serves all suites.
	defaultKeyUpdateAfter = 1 << 24
)

// ErrKeyUpdateUnsupported is returned when the peer updates its TLS 1.3 keys
// (RFC 8446 §4.6.3) and the engine that holds RX cannot follow, as kTLS
// before Linux 6.14 cannot. The connection cannot go on.
var ErrKeyUpdateUnsupported = errors.New("ktls: the peer sent a TLS 1.3 KeyUpdate, which this connection's engine cannot follow")

// readRecordLocked reads one record and acts on it; application data lands
// in c.in.input.
func (c *Conn) readRecordLocked() error {
	_, err := c.readLocked(nil)
	return err
}

// readLocked reads one record and acts on it. Where the engine can read into
// a buffer (backend.IntoReader) and into holds at least a record, the
// record is read into into, and application data stays there: n says how
// much. Otherwise application data lands in c.in.input and n is 0.
func (c *Conn) readLocked(into []byte) (n int, err error) {
	if c.in.draining {
		if err := c.finishDrainLocked(); err != nil {
			return 0, err
		}
	}
	var typ uint8
	var data []byte
	ir, direct := c.in.opener.(backend.IntoReader)
	if direct = direct && len(into) >= backend.MaxPlaintext; direct {
		var m int
		typ, m, err = ir.ReadRecordInto(into)
		data = into[:m]
	} else {
		typ, data, err = c.in.opener.ReadRecord()
	}
	if err != nil {
		return 0, c.rxFailLocked(err)
	}
	return c.recordLocked(typ, data, direct)
}

// recordLocked acts on one record that came in; direct says that data is
// the caller's buffer, which then keeps application data (n).
func (c *Conn) recordLocked(typ uint8, data []byte, direct bool) (n int, err error) {
	if len(data) > backend.MaxPlaintext && typ != backend.TypeApplicationData {
		// Application data may be several records (see backend.Opener);
		// anything else is one.
		return 0, c.rxFailLocked(alertf(alertRecordOverflow, "record of %d bytes", len(data)))
	}
	if typ != backend.TypeHandshake && len(c.in.hand) > 0 {
		// RFC 8446 §5.1: handshake messages must not be interleaved with
		// other record types.
		return 0, c.rxFailLocked(alertf(alertUnexpectedMessage, "record of type %d inside a fragmented handshake message", typ))
	}
	switch typ {
	case backend.TypeApplicationData:
		if len(data) == 0 {
			return 0, c.uselessLocked()
		}
		c.in.useless, c.in.keyUpdates = 0, 0
		if direct {
			return len(data), nil
		}
		c.in.input = data
		return 0, nil
	case backend.TypeAlert:
		return 0, c.alertLocked(data)
	case backend.TypeHandshake:
		if len(data) == 0 {
			// RFC 8446 §5.1: zero-length handshake fragments are not allowed.
			return 0, c.rxFailLocked(alertf(alertUnexpectedMessage, "empty handshake record"))
		}
		c.in.hand = append(c.in.hand, data...)
		keyUpdate := false
		for len(c.in.hand) >= 4 {
			size := 4 + (int(c.in.hand[1])<<16 | int(c.in.hand[2])<<8 | int(c.in.hand[3]))
			if size > maxHandshake {
				return 0, c.rxFailLocked(alertf(alertInternalError, "handshake message of %d bytes exceeds %d", size, maxHandshake))
			}
			if len(c.in.hand) < size {
				break
			}
			msg := c.in.hand[:size]
			c.in.hand = c.in.hand[size:]
			keyUpdate = keyUpdate || msg[0] == typeKeyUpdate
			if err := c.handshakeMessageLocked(msg); err != nil {
				return 0, err
			}
		}
		if len(c.in.hand) == 0 {
			c.in.hand = c.in.hand[:0:0]
		}
		if keyUpdate {
			return 0, c.keyUpdateSeenLocked()
		}
		return 0, c.uselessLocked()
	default:
		return 0, c.rxFailLocked(alertf(alertUnexpectedMessage, "record of type %d after the handshake", typ))
	}
}

// uselessLocked counts a record that gave no data.
func (c *Conn) uselessLocked() error {
	c.in.useless++
	if c.in.useless > maxUselessRecords {
		return c.rxFailLocked(alertf(alertUnexpectedMessage, "more than %d records in a row without application data", maxUselessRecords))
	}
	return nil
}

// keyUpdateSeenLocked counts a record that ended with a KeyUpdate.
func (c *Conn) keyUpdateSeenLocked() error {
	c.in.keyUpdates++
	if c.in.keyUpdates > maxKeyUpdates {
		return c.rxFailLocked(alertf(alertUnexpectedMessage, "more than %d KeyUpdates in a row without application data", maxKeyUpdates))
	}
	return nil
}

// alertLocked handles an alert from the peer, as crypto/tls does
// (conn.go, readRecordOrCCS).
func (c *Conn) alertLocked(data []byte) error {
	if len(data) != 2 {
		return c.rxFailLocked(alertf(alertUnexpectedMessage, "alert of %d bytes", len(data)))
	}
	if data[1] == alertCloseNotify {
		return c.in.setErrorLocked(io.EOF)
	}
	warning := data[0] == alertLevelWarning
	if c.version() == tls.VersionTLS13 {
		// RFC 8446 §6: every alert but close_notify and user_canceled is
		// an error, whatever its level says.
		warning = data[1] == alertUserCanceled
	}
	if warning {
		return c.uselessLocked()
	}
	return c.in.setErrorLocked(&net.OpError{Op: "remote error", Err: tls.AlertError(data[1])})
}

// handshakeMessageLocked handles one whole post-handshake message.
func (c *Conn) handshakeMessageLocked(msg []byte) error {
	body := msg[4:]
	if c.version() == tls.VersionTLS12 {
		if (c.isClient && msg[0] == typeHelloRequest) || (!c.isClient && msg[0] == typeClientHello) {
			// RFC 5746 §4.2, §4.4: refusing renegotiation is a
			// no_renegotiation warning; ktls cannot renegotiate (the new
			// keys would come from a handshake crypto/tls runs), and the
			// connection ends, as crypto/tls's does with RenegotiateNever.
			return c.rxFailLocked(alertf(alertNoRenegotiation, "the peer asked to renegotiate; ktls refuses renegotiation"))
		}
		return c.rxFailLocked(alertf(alertUnexpectedMessage, "handshake message of type %d after the handshake", msg[0]))
	}
	switch msg[0] {
	case typeNewSessionTicket:
		if !c.isClient {
			return c.rxFailLocked(alertf(alertUnexpectedMessage, "NewSessionTicket from a client"))
		}
		// RFC 8446 §4.6.1 lets a client ignore tickets. Those sent right
		// after the handshake went to crypto/tls (the drain); a later one
		// cannot, since crypto/tls no longer holds the resumption secret's
		// connection.
		return nil
	case typeKeyUpdate:
		if len(body) != 1 {
			return c.rxFailLocked(alertf(alertDecodeError, "KeyUpdate of %d bytes", len(body)))
		}
		if body[0] > 1 {
			return c.rxFailLocked(alertf(alertIllegalParameter, "KeyUpdate request_update %d", body[0]))
		}
		if len(c.in.hand) != 0 {
			// RFC 8446 §5.1: a KeyUpdate must end its record, since the
			// next record is under the new key.
			return c.rxFailLocked(alertf(alertUnexpectedMessage, "KeyUpdate not at the end of its record"))
		}
		if err := c.rekeyRXLocked(); err != nil {
			return err
		}
		if body[0] == 1 {
			// RFC 8446 §4.6.3: answer update_requested with our own
			// KeyUpdate before any more application data. ktls answers
			// at once, as crypto/tls does; a burst of requests gets one
			// answer each, bounded by maxKeyUpdates.
			c.out.mu.Lock()
			defer c.unlockOut()
			if c.out.err == nil && !c.out.closeNotifySent {
				return c.updateTXKeyLocked()
			}
		}
		return nil
	default:
		return c.rxFailLocked(alertf(alertUnexpectedMessage, "handshake message of type %d after the handshake", msg[0]))
	}
}

// rekeyRXLocked moves RX to the next traffic secret, RFC 8446 §7.2.
func (c *Conn) rekeyRXLocked() error {
	rk, ok := c.in.opener.(backend.Rekeyer)
	if !ok {
		return c.in.setErrorLocked(ErrKeyUpdateUnsupported)
	}
	if err := rekey(rk, c.in.keys); err != nil {
		if errors.Is(err, backend.ErrNotSupported) {
			// The engine refused the next key and did nothing (kTLS
			// before Linux 6.14): the peer now writes under a key this
			// connection cannot read with.
			err = fmt.Errorf("%w: %w", ErrKeyUpdateUnsupported, err)
		}
		return c.in.setErrorLocked(err)
	}
	c.ctr.KeyUpdatesReceived.Add(1)
	return nil
}

// rekey steps d to its next traffic secret and gives the new key to the half.
func rekey(rk backend.Rekeyer, d *dirKeys) error {
	next := keyschedule.NextTrafficSecret(d.suite, d.secret)
	clear(d.secret)
	d.secret = next
	p := backend.Params{Version: d.suite.Version, CipherSuite: d.suite.ID}
	p.Key, p.IV = keyschedule.TrafficKey(d.suite, next)
	err := rk.Rekey(p)
	clear(p.Key)
	clear(p.IV)
	if err != nil {
		return fmt.Errorf("ktls: updating keys: %w", err)
	}
	return nil
}

// updateTXKeyLocked sends a KeyUpdate (update_not_requested) under the
// current key and moves TX to the next one, RFC 8446 §4.6.3.
func (c *Conn) updateTXKeyLocked() error {
	rk, ok := c.out.sealer.(backend.Rekeyer)
	if !ok {
		return c.out.setErrorLocked(fmt.Errorf("ktls: the tx engine %s cannot update its TLS 1.3 key", c.Backend().TX))
	}
	msg := []byte{typeKeyUpdate, 0, 0, 1, 0}
	if _, err := c.out.sealer.WriteRecords(backend.TypeHandshake, msg); err != nil {
		return c.out.setErrorLocked(err)
	}
	if err := rekey(rk, c.out.keys); err != nil {
		return c.out.setErrorLocked(err)
	}
	c.out.records = 0
	c.ctr.KeyUpdatesSent.Add(1)
	return nil
}

// resetOr returns the error of the peer's reset that RX saw, if any, in
// place of err: a Write it woke (rxFailLocked) fails with a timeout that is
// not one.
func (c *Conn) resetOr(err error) error {
	if r := c.peerReset.Load(); r != nil {
		return *r
	}
	return err
}

// beforeDataLocked runs before every batch of application data records, on
// every path that sends them (Write, sendfile): it fails a connection the
// peer reset, and updates a TLS 1.3 key that wore out first (RFC 8446 §5.5).
// It returns how many records the key may still seal (outHalf.recordsLeftLocked).
func (c *Conn) beforeDataLocked() (left uint64, err error) {
	if err := c.peerReset.Load(); err != nil {
		// RX saw the peer reset the connection (rxFailLocked).
		return 0, c.out.setErrorLocked(*err)
	}
	if c.out.recordsLeftLocked() == 0 {
		if err := c.updateTXKeyLocked(); err != nil {
			return 0, err
		}
	}
	return c.out.recordsLeftLocked(), nil
}

// writeRecordsLocked writes b as application data records, updating the TLS
// 1.3 key before it wears out (RFC 8446 §5.5): no batch takes more records
// than the key has left. With lw, the sealer's LentWriter, not nil, b is
// ktls's own buffer with a byte of capacity past it, lent to the engine
// (copyLent, sendfile.go): the byte past a chunk cut short is b's next, and
// lent too.
func (c *Conn) writeRecordsLocked(b []byte, lw backend.LentWriter) (int, error) {
	n := 0
	for len(b) > 0 {
		left, err := c.beforeDataLocked()
		if err != nil {
			return n, err
		}
		chunk := b
		if need := (uint64(len(chunk)) + backend.MaxPlaintext - 1) / backend.MaxPlaintext; need > left {
			chunk = chunk[:left*backend.MaxPlaintext]
		}
		var m int
		if lw != nil {
			m, err = lw.WriteRecordsLent(chunk)
		} else {
			m, err = c.out.sealer.WriteRecords(backend.TypeApplicationData, chunk)
		}
		c.out.records += uint64((m + backend.MaxPlaintext - 1) / backend.MaxPlaintext)
		n += m
		b = b[m:]
		if err != nil {
			return n, c.out.setErrorLocked(c.resetOr(err))
		}
	}
	return n, nil
}

// sendAlertLocked sends an alert through the TX engine. Every alert but
// close_notify and no_renegotiation is fatal and ends the direction.
func (c *Conn) sendAlertLocked(desc uint8) error {
	level := byte(alertLevelError)
	if desc == alertCloseNotify || desc == alertNoRenegotiation {
		level = alertLevelWarning
	}
	_, err := c.out.sealer.WriteRecords(backend.TypeAlert, []byte{level, desc})
	if err != nil {
		return c.out.setErrorLocked(err)
	}
	if desc != alertCloseNotify {
		c.out.setErrorLocked(&net.OpError{Op: "local error", Err: tls.AlertError(desc)})
	}
	return nil
}

// rxFailLocked ends RX with err, sending the alert it names. A timeout is
// not an end: the engine resumes on the next call.
func (c *Conn) rxFailLocked(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	if err == io.EOF {
		// EOF at a record boundary without close_notify: crypto/tls
		// accepts it as EOF (conn.go, readRecordOrCCS); so does ktls.
		return c.in.setErrorLocked(io.EOF)
	}
	var a tls.AlertError
	if errors.As(err, &a) {
		c.out.mu.Lock()
		if c.out.err == nil {
			c.sendAlertLocked(uint8(a))
		}
		c.unlockOut()
		err = &net.OpError{Op: "local error", Err: err}
	}
	if errors.Is(err, syscall.ECONNRESET) {
		// The peer reset the TCP connection, and a socket error is
		// reported to one call only (sock_error): this read took it. A
		// plain TCP send would still fail (SEND_SHUTDOWN), but kTLS's TX
		// takes data into its open record before it pushes, and when
		// the push fails with EPIPE it returns what it copied, so Write
		// after Write would succeed into a connection that is gone
		// (tls_sw_sendmsg_locked, tls_push_sg; TestWriteAfterPeerReset).
		// TX fails from here on, on every engine.
		// A Write parked on the netpoller (kTLS answers EAGAIN while
		// its unsendable records fill the buffer, and no new event
		// comes) is woken now, and fails with this error (resetOr).
		if c.peerReset.CompareAndSwap(nil, &err) {
			c.raw.SetWriteDeadline(time.Now())
		}
	}
	return c.in.setErrorLocked(err)
}

func (c *Conn) version() uint16 { return c.out.keys.suite.Version }

// alertError is an error that names the alert the connection sends for it.
type alertError struct {
	alert tls.AlertError
	msg   string
}

func (e *alertError) Error() string { return "ktls: " + e.msg + " (" + e.alert.Error() + ")" }

func (e *alertError) Unwrap() error { return e.alert }

func alertf(a uint8, format string, args ...any) error {
	return &alertError{alert: tls.AlertError(a), msg: fmt.Sprintf(format, args...)}
}
