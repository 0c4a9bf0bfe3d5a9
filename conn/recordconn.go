package conn

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/record"
)

// recordConn is the net.Conn that crypto/tls runs over. It exists so that the
// record layer can leave crypto/tls with nothing lost and nothing guessed
// (docs/ARCHITECTURE.md step 2):
//
//   - On read it never takes a byte from the socket past the end of the record
//     crypto/tls is reading (header first, then exactly the body; or, on a TCP
//     socket during the handshake, whole records that a peek showed, each
//     taken once crypto/tls has had it), so when the handshake ends everything
//     the peer sent later is still in the socket (or, in drain mode, in rbuf)
//     and nowhere else.
//   - While recording, it keeps a copy of every record in both directions, so
//     the handoff can count and verify, by opening them, the records
//     crypto/tls protected under each key.
//   - Once TX has moved to an engine, crypto/tls must never write again: its
//     sequence number is stale and a write would reuse a nonce. Writes are
//     refused, and a refused alert is decoded so the connection can send it
//     through the engine instead.
//
// crypto/tls serializes its own reads (under its input lock or the handshake
// lock) and its own writes (under its output lock); mode changes happen under
// Conn.handshakeMu or Conn.in.mu while crypto/tls is not reading.
type recordConn struct {
	net.Conn // the raw transport, through counts

	// Read side, used by crypto/tls's reading goroutine only.
	mode   readMode
	rbuf   []byte // the current record: header and as much of the body as was read
	rOff   int    // bytes of rbuf already handed to crypto/tls
	rxLog  [][]byte
	drain  *drainState
	record bool // keep copies of records (the handshake)

	// During the handshake, where the raw conn is a TCP socket, peek
	// (newHandshakePeeker) shows what the socket holds without taking it:
	// ahead is what it showed, from the first byte still in the socket on,
	// and the first taken bytes of it are whole records already given to
	// crypto/tls (rbuf is the last of them), which settle then reads from
	// the socket in one read. So a flight of records costs a peek and a
	// read, not a read for each header and each body, and the socket still
	// gives up nothing crypto/tls has not had. ahead comes from aheadPool
	// and goes back at the handoff (endHandshake).
	peek     func(b []byte) (n, first int, err error)
	aheadBuf []byte // from aheadPool, or nil
	ahead    []byte // in aheadBuf
	taken    int

	// Write side. wmu is held by Write from its check of txMoved to the end
	// of the write, so that once refuseWrites returned no write of crypto/tls
	// is in flight or still to come: the records the handoff counts are all
	// that crypto/tls ever sent. It protects wpartial and txLog.
	wmu      sync.Mutex
	wpartial []byte
	txLog    [][]byte

	// wrap is what the handoff learned of a raw conn that wraps a TCP
	// socket (wrapped.go), or nil; set by the handoff, read by it and by
	// the end of the ticket drain.
	wrap *wrapState
	// counts is Conn: the raw conn, with what crypto/tls's side read from
	// it and wrote to it counted, for the proof that a wrapper holds
	// nothing (wrapped.go).
	counts *countingConn

	txMoved atomic.Bool
	refused struct {
		sync.Mutex
		prot  *record.Protector // crypto/tls's TX key at the handoff
		seq   uint64            // crypto/tls's TX sequence number at the handoff
		alert int               // the alert crypto/tls tried to send, or -1
	}
}

type readMode int

const (
	modeHandshake   readMode = iota // record boundaries kept, records logged
	modePassthrough                 // crypto/tls keeps RX: out of the way
	modeDrain                       // TLS 1.3 client: only NewSessionTicket records pass
)

// errTXMoved is what crypto/tls gets when it tries to write after TX moved.
var errTXMoved = errors.New("ktls: crypto/tls may not write after the record layer moved")

func newRecordConn(raw net.Conn) *recordConn {
	cc := &countingConn{Conn: raw}
	r := &recordConn{Conn: cc, counts: cc, record: true, peek: newHandshakePeeker(raw)}
	r.refused.alert = -1
	return r
}

// maxRecord is the largest legal record, header included: 2^14+2048 bytes of
// ciphertext (RFC 5246 §6.2.3). A longer length is crypto/tls's to reject,
// and it rejects it from the header alone, before asking for the body.
var maxRecord = record.HeaderLen + record.MaxCiphertext(tls.VersionTLS12)

// aheadPool holds the buffers that handshakes peek into (recordConn.ahead):
// one is needed for a handshake only, not for the connection's life.
var aheadPool = sync.Pool{New: func() any {
	b := make([]byte, maxRecord)
	return &b
}}

func (r *recordConn) Read(p []byte) (int, error) {
	if r.mode == modePassthrough {
		return r.Conn.Read(p)
	}
	if r.drain != nil && r.drain.stopped {
		return 0, errHandoff
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.rOff == len(r.rbuf) && r.recordComplete() {
		r.rbuf, r.rOff = r.rbuf[:0], 0
		if r.drain != nil {
			r.drain.passed = false
		}
	}
	switch {
	case r.mode == modeDrain && !r.drain.passed:
		if err := r.fillDrain(); err != nil {
			return 0, err
		}
	case r.mode == modeHandshake && r.rOff == len(r.rbuf):
		if err := r.fillSome(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.rbuf[r.rOff:])
	r.rOff += n
	return n, nil
}

// recordComplete reports whether rbuf holds a whole record.
func (r *recordConn) recordComplete() bool {
	return len(r.rbuf) >= record.HeaderLen && len(r.rbuf) == r.want()
}

// want is the length of the current record as far as it is known: the header
// until the header is complete, then header and body.
func (r *recordConn) want() int {
	if len(r.rbuf) < record.HeaderLen {
		return record.HeaderLen
	}
	return record.HeaderLen + recordLen(r.rbuf)
}

func recordLen(hdr []byte) int { return int(hdr[3])<<8 | int(hdr[4]) }

// fillSome reads at least one byte from the socket, never past the end of the
// current record: at most the rest of the header, then at most the rest of
// the body. What was read stays in rbuf across an error (a timeout), so the
// next call resumes.
func (r *recordConn) fillSome() error {
	if r.mode == modeHandshake && r.peek != nil && len(r.rbuf) == 0 {
		if handled, err := r.fillAhead(); handled {
			return err
		}
	}
	for {
		want := r.want()
		if cap(r.rbuf) < want {
			// Sized for the largest legal record (maxRecord).
			nb := make([]byte, len(r.rbuf), max(want, maxRecord))
			copy(nb, r.rbuf)
			r.rbuf = nb
		}
		n, err := r.Conn.Read(r.rbuf[len(r.rbuf):want])
		r.rbuf = r.rbuf[:len(r.rbuf)+n]
		if n > 0 && r.record && r.recordComplete() {
			r.rxLog = append(r.rxLog, append([]byte(nil), r.rbuf...))
		}
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
}

// fillAhead makes the next whole record that the socket holds rbuf, from
// what a peek showed, without reading it from the socket yet (settle does,
// before the next peek and at the handoff). It reports false, having done
// nothing but settle, where the peek cannot tell: a record longer than any
// legal one, or an error (a deadline, the end of the stream, part of a
// record before it). fillSome then reads as it does without a peek, so that
// crypto/tls sees what it would see without one.
func (r *recordConn) fillAhead() (handled bool, err error) {
	for {
		if rest := r.ahead[r.taken:]; len(rest) >= record.HeaderLen {
			if n := record.HeaderLen + recordLen(rest); n <= len(rest) {
				// Capped, so that nothing appended to rbuf lands in ahead.
				r.rbuf, r.rOff = rest[:n:n], 0
				r.taken += n
				if r.record {
					r.rxLog = append(r.rxLog, append([]byte(nil), r.rbuf...))
				}
				if !wholeRecord(rest[n:]) {
					// The last whole record the peek showed: read what
					// crypto/tls was given now, while it reads anyway,
					// so that the handoff seldom has to. An error
					// leaves rbuf to crypto/tls's next Read.
					return true, r.settle()
				}
				return true, nil
			}
		}
		if err := r.settle(); err != nil {
			return true, err
		}
		if r.aheadBuf == nil {
			r.aheadBuf = *aheadPool.Get().(*[]byte)
		}
		n, first, err := r.peek(r.aheadBuf[:cap(r.aheadBuf)])
		if err != nil || first > n {
			// rbuf may still be part of aheadBuf: the read below gets
			// its own.
			r.ahead, r.rbuf, r.rOff = nil, nil, 0
			return false, nil
		}
		r.ahead = r.aheadBuf[:n]
	}
}

// wholeRecord reports whether b starts with a whole record.
func wholeRecord(b []byte) bool {
	return len(b) >= record.HeaderLen && len(b) >= record.HeaderLen+recordLen(b)
}

// settle reads from the socket the records crypto/tls was given out of ahead:
// they are there (a peek showed them), so this returns at once, and it goes
// through counts as every read of crypto/tls's side does.
func (r *recordConn) settle() error {
	if r.taken == 0 {
		return nil
	}
	// rbuf, the last of them, is crypto/tls's already: reading the same
	// bytes over it changes nothing.
	n, err := io.ReadFull(r.Conn, r.ahead[:r.taken])
	// What was read is gone from the socket. After an error (a read
	// deadline already past, say) the rest is read at the next call, and
	// what follows it in ahead can still be given to crypto/tls.
	r.ahead, r.taken = r.ahead[n:], r.taken-n
	if err != nil {
		return err
	}
	r.ahead = nil
	return nil
}

// endHandshake reads from the socket what crypto/tls was given and not yet
// read from it (settle), so that the socket holds exactly what crypto/tls
// has not had, and gives the peek buffer back. The handoff calls it first,
// before it looks at what is buffered; crypto/tls does not read then.
func (r *recordConn) endHandshake() error {
	if err := r.settle(); err != nil {
		// Nothing changed but what was read: the handoff fails, or a
		// later call reads the rest.
		return err
	}
	if r.aheadBuf != nil && r.rOff == len(r.rbuf) {
		// rbuf, which may be part of aheadBuf, holds nothing more for
		// crypto/tls. (It always has all of it: crypto/tls reads a whole
		// record before it acts on it. Otherwise the buffer is left to
		// the collector, rbuf in it, for the handoff to see.)
		r.rbuf, r.rOff = nil, 0
		b := r.aheadBuf[:cap(r.aheadBuf)]
		aheadPool.Put(&b)
	}
	r.aheadBuf, r.ahead, r.peek = nil, nil, nil
	return nil
}

// buffered returns the bytes of the incoming stream that were read from the
// socket but not consumed by crypto/tls.
func (r *recordConn) buffered() []byte { return r.rbuf[r.rOff:] }

func (r *recordConn) Write(p []byte) (int, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.txMoved.Load() {
		r.noteRefused(p)
		return 0, errTXMoved
	}
	if r.record {
		r.logWrite(p)
	}
	return r.Conn.Write(p)
}

// readBytes is how many bytes crypto/tls's side read from the raw conn.
// Called while crypto/tls does not read (the handoff, the end of the drain).
func (r *recordConn) readBytes() uint64 { return r.counts.rn }

// writtenBytes is how many bytes crypto/tls wrote to the raw conn.
func (r *recordConn) writtenBytes() uint64 {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.counts.wn
}

// refuseWrites makes every later crypto/tls write fail, once a write in
// flight has ended. The handoff calls it before it counts crypto/tls's
// records: a close_notify written after the count would go out at the
// sequence number the engine then starts from (docs/ARCHITECTURE.md, step 4).
func (r *recordConn) refuseWrites() {
	r.wmu.Lock()
	r.txMoved.Store(true)
	r.wmu.Unlock()
}

// allowWrites undoes refuseWrites when crypto/tls keeps the record layer.
func (r *recordConn) allowWrites() {
	r.wmu.Lock()
	r.txMoved.Store(false)
	r.wmu.Unlock()
}

// logWrite splits what crypto/tls writes into records and keeps a copy of
// each. crypto/tls writes whole records, a flight at a time, but a record
// split across writes is handled all the same. The write is copied once and
// the records logged are slices of the copy, capped so that nothing is ever
// appended into them; the tail that is not yet a whole record is wpartial,
// and the next write appends to it (past every record logged).
func (r *recordConn) logWrite(p []byte) {
	var b []byte
	if len(r.wpartial) == 0 {
		b = append([]byte(nil), p...)
	} else {
		b = append(r.wpartial, p...)
	}
	for len(b) >= record.HeaderLen {
		n := record.HeaderLen + recordLen(b)
		if len(b) < n {
			break
		}
		r.txLog = append(r.txLog, b[:n:n])
		b = b[n:]
	}
	r.wpartial = nil
	if len(b) != 0 {
		r.wpartial = b
	}
}

// moveTX makes every later crypto/tls write fail. prot and seq are
// crypto/tls's TX state at that moment, kept to read what it tried to send.
func (r *recordConn) moveTX(prot *record.Protector, seq uint64) {
	r.refused.Lock()
	r.refused.prot, r.refused.seq = prot, seq
	r.refused.Unlock()
	r.txMoved.Store(true)
}

// noteRefused decodes a refused write. crypto/tls protects it with its stale
// key and sequence number (it has written nothing since the handoff), so it
// opens; an alert is kept for the connection to send through its engine.
func (r *recordConn) noteRefused(p []byte) {
	r.refused.Lock()
	defer r.refused.Unlock()
	if r.refused.prot == nil || r.refused.alert >= 0 || len(p) < record.HeaderLen {
		return
	}
	n := record.HeaderLen + recordLen(p)
	if n > len(p) {
		return
	}
	typ, msg, err := r.refused.prot.Open(r.refused.seq, append([]byte(nil), p[:n]...))
	if err == nil && typ == backend.TypeAlert && len(msg) == 2 {
		r.refused.alert = int(msg[1])
	}
}

// refusedAlert returns the alert crypto/tls tried to send after TX moved.
func (r *recordConn) refusedAlert() (uint8, bool) {
	r.refused.Lock()
	defer r.refused.Unlock()
	return uint8(r.refused.alert), r.refused.alert >= 0
}

// release drops the read buffer once nothing will be read through it again:
// crypto/tls reads straight from the socket (passthrough) or not at all.
func (r *recordConn) release() {
	r.rbuf, r.rOff = nil, 0
}

// stopRecording drops the logs: they are only needed until the handoff.
func (r *recordConn) stopRecording() {
	r.wmu.Lock()
	r.record = false
	r.txLog, r.wpartial = nil, nil
	r.wmu.Unlock()
	r.rxLog = nil
}

// countingConn counts the bytes read from and written to the conn under it.
// Reads come from crypto/tls's reading goroutine only (recordConn, the
// drain); writes are made under recordConn.wmu.
type countingConn struct {
	net.Conn
	rn, wn uint64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rn += uint64(n)
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.wn += uint64(n)
	return n, err
}
