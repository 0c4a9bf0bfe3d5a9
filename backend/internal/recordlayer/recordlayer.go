// Package recordlayer is the record layer of the engines that frame records
// in user space: framing from internal/record, batching, read-ahead, sequence
// numbers and sticky errors, over an AEAD that the engine brings. The
// userspace engine runs it over Go's own AEADs (crypto/aes GCM, x/crypto
// ChaCha20-Poly1305); the afalg engine over the kernel crypto API's through
// AF_ALG. It lives here, below both, so that neither engine imports the other
// (docs/ARCHITECTURE.md, Rooms: imports never point sideways between
// engines).
//
// A Sealer batches several records into one Write (up to 64 KiB of
// plaintext) and an Opener reads ahead as far as its 64 KiB buffer allows;
// in the steady state neither allocates. Neither keeps a buffer while the
// connection is idle (issue 18; crypto/tls keeps none either, conn.go's
// outBufPool): the Sealer's comes from a pool for each call, and the
// Opener's goes back to one when it waits for the socket with nothing
// pending (rawread_unix.go).
//
// Its errors start with "userspace: ", as they did when the loop was that
// engine's own.
package recordlayer

import (
	"crypto/cipher"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/bufpool"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
)

var (
	_ backend.Backend    = engine{}
	_ backend.Checker    = engine{}
	_ backend.Sealer     = (*sealer)(nil)
	_ backend.Rekeyer    = (*sealer)(nil)
	_ backend.Opener     = (*opener)(nil)
	_ backend.IntoReader = (*opener)(nil)
	_ backend.Rekeyer    = (*opener)(nil)
)

const (
	// maxBatch is how many full records a Sealer puts in one Write: 4 ×
	// 2^14 bytes of plaintext, about 64 KiB on the wire.
	maxBatch = 4
	// readBufSize is the Opener's read-ahead buffer once the peer streams
	// (a Read filled the buffer). It starts at smallReadBuf, one record of
	// the largest size either version allows (RFC 5246 §6.2.3: 2^14+2048
	// bytes and the header), so that the many connections of a server that
	// are idle or send little keep 18 KiB, not 64 KiB.
	readBufSize  = 64 << 10
	smallReadBuf = record.HeaderLen + 16384 + 2048
	// tinyReadBuf is the first buffer of a half whose first record, as
	// the socket shows it (rawRead peeks its header), fits: a server's
	// request, which is often all that a connection of a file server
	// ever reads, so that it does not take (and, closing, drop) 18 KiB,
	// where crypto/tls's rawInput grows to the record (issue 18: bytes
	// allocated per MiB no more than crypto/tls's). The next record that
	// does not fit moves the half to smallReadBuf.
	tinyReadBuf = 4 << 10
	// minRead is the least free space worth a Read: with less at the end of
	// the buffer the pending bytes move to its front first.
	minRead = 16 << 10
	// sealBufSize holds one batch: maxBatch full records, each with its
	// header and the most either version adds (RFC 8446 §5.2: 256 bytes
	// of expansion at most; TLS 1.2 AES-GCM adds 24).
	sealBufSize = maxBatch * (record.HeaderLen + backend.MaxPlaintext + 256)
)

// The buffers of halves that are between calls or waiting for the peer, so
// that an idle connection holds none (issue 18). Each pool holds buffers of
// one size only; pointers, so that Get and Put do not allocate.
var (
	// sealPools hold the Sealer's buffers in three sizes, the smallest
	// that holds a call's first batch taken: a Write blocked on a slow
	// peer holds its buffer, and a small one should not hold 64 KiB.
	// Like the read buffers', they are bufpool.Pools, which keep a few
	// buffers that a sync.Pool alone would lose (measured on the
	// sendfile benchmark, where each connection sends one file: about
	// 30 KiB allocated per connection with a sync.Pool). Their mutex is
	// taken twice a call, uncontended next to the call's write(2).
	sealPools     = [...]*bufpool.Pool{bufpool.New(4<<10, keptBufs), bufpool.New(record.HeaderLen+backend.MaxPlaintext+256, keptBufs), bufpool.New(sealBufSize, keptBufs)}
	tinyReadBufs  = bufpool.New(tinyReadBuf, keptBufs)
	smallReadBufs = bufpool.New(smallReadBuf, keptBufs)
	bigReadBufs   = bufpool.New(readBufSize, keptBufs)
)

// getSealBuf returns a buffer of at least need bytes, at most sealBufSize.
func getSealBuf(need int) *[]byte {
	for i, p := range sealPools {
		if need > p.Size() && i < len(sealPools)-1 {
			continue
		}
		return p.Get()
	}
	panic("unreachable")
}

// putSealBuf takes back a buffer that getSealBuf returned; one of another
// capacity is left to the GC.
func putSealBuf(bp *[]byte) {
	*bp = (*bp)[:cap(*bp)]
	// The size is read once: once a pool has the buffer, another
	// goroutine may take it.
	size := len(*bp)
	for _, p := range sealPools {
		if p.Size() == size {
			p.Put(bp)
			return
		}
	}
}

// keptBufs is how many buffers of each size a pool keeps across
// garbage collections: a few, at most 4 × (4 + 18 + 64) KiB of read buffers
// and 4 × (4 + 16.3 + 65) KiB of seal buffers in the process.
const keptBufs = 4

// errSeqExhausted: RFC 8446 §5.3 and RFC 5246 §6.1 forbid wrapping the
// sequence number. ktls stops one short of 2^64-1 so that no counter ever
// has to represent "past the end". A TLS 1.3 connection updates its key long
// before (conn, RFC 8446 §5.5); a TLS 1.2 one cannot (ktls refuses
// renegotiation), so it ends here, as the kernel's TX does (send fails with
// EBADMSG; tools/testing/selftests/net/tls.c, recseq_wrap).
var errSeqExhausted = errors.New("userspace: sequence number exhausted (2^64-1 records under one key): a TLS 1.2 connection cannot rekey and must end here")

var errClosed = fmt.Errorf("userspace: half closed: %w", net.ErrClosed)

// engine is the record layer over the AEADs of newAEAD, or of Go when it is
// nil.
type engine struct {
	name    string
	newAEAD func(backend.Params) (AEAD, error)
}

// AEAD is an AEAD that an engine brings to this record layer: the afalg
// engine's, whose seal and open run in the kernel crypto API. Unlike
// crypto/cipher's, its Seal and Open can fail for a reason other than a
// forged record (a system call): Err then returns that failure, a Seal's
// output must not be sent, and the half stops with that error. Open failing
// with Err nil is an authentication failure (bad_record_mac).
type AEAD interface {
	cipher.AEAD
	// Err returns what broke the last Seal or Open; nil if nothing did.
	Err() error
	// Close releases what the AEAD holds. The half calls it once, when it
	// is closed or has switched to a new AEAD.
	Close() error
}

// New returns an engine called name that runs this record layer (framing,
// batching, read-ahead, sequence numbers, sticky errors) over the AEADs
// newAEAD makes: one per half and key, asked for by NewSealer, NewOpener and
// Rekey, after the version and suite were checked, and closed when the half
// closes or rekeys. An error from newAEAD is returned as it is (wrapping
// backend.ErrNotSupported from NewSealer or NewOpener means that nothing was
// done). With newAEAD nil, the AEADs are Go's (internal/record's).
func New(name string, newAEAD func(p backend.Params) (AEAD, error)) backend.Backend {
	return engine{name: name, newAEAD: newAEAD}
}

// Name returns New's name.
func (e engine) Name() string { return e.name }

// Check reports whether the engine serves a version and suite: every AEAD
// suite of TLS 1.2 and 1.3, in either direction. It has no side effects.
func (engine) Check(tx bool, version, suite uint16) error {
	return check(version, suite)
}

func check(version, suite uint16) error {
	if version != tls.VersionTLS12 && version != tls.VersionTLS13 {
		return backend.NotSupported(backend.Userspace, "protocol version %#04x", version)
	}
	if _, ok := keyschedule.Lookup(version, suite); !ok {
		return backend.NotSupported(backend.Userspace, "cipher suite %s under %s", tls.CipherSuiteName(suite), tls.VersionName(version))
	}
	return nil
}

// newProtector checks p and builds its Protector, or takes p.Protector when
// it was made for p. Unsupported parameters wrap backend.ErrNotSupported; a
// key or IV of the wrong length is a caller bug and a plain error.
func newProtector(p backend.Params) (*record.Protector, error) {
	if err := check(p.Version, p.CipherSuite); err != nil {
		return nil, err
	}
	if p.Protector != nil && p.Protector.Matches(p.Version, p.CipherSuite, p.IV) {
		// Built from p's key by package conn (backend.Params.Protector):
		// the AEAD need not be made twice.
		return p.Protector, nil
	}
	prot, err := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
	if errors.Is(err, record.ErrUnsupported) {
		return nil, backend.NotSupported(backend.Userspace, "%w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("userspace: %w", err)
	}
	return prot, nil
}

// newProtectorWith is newProtector with an AEAD from newAEAD, when it is not
// nil; the AEAD is returned too, for the half to check and close.
func newProtectorWith(p backend.Params, newAEAD func(backend.Params) (AEAD, error)) (*record.Protector, AEAD, error) {
	if newAEAD == nil {
		prot, err := newProtector(p)
		return prot, nil, err
	}
	if err := check(p.Version, p.CipherSuite); err != nil {
		return nil, nil, err
	}
	a, err := newAEAD(p)
	if err != nil {
		return nil, nil, err
	}
	prot, err := record.NewProtectorWithAEAD(p.Version, p.CipherSuite, a, p.IV)
	if err != nil {
		a.Close()
		return nil, nil, fmt.Errorf("userspace: %w", err)
	}
	return prot, a, nil
}

// NewSealer installs the engine on the TX direction of l. It does no I/O.
func (e engine) NewSealer(l backend.Link, p backend.Params) (backend.Sealer, error) {
	prot, aead, err := newProtectorWith(p, e.newAEAD)
	if err != nil {
		return nil, err
	}
	if l.Conn == nil {
		if aead != nil {
			aead.Close()
		}
		return nil, errors.New("userspace: NewSealer with a nil Link.Conn")
	}
	return &sealer{half: half{conn: l.Conn, version: p.Version, prot: prot, seq: p.Seq, newAEAD: e.newAEAD, aead: aead}}, nil
}

// NewOpener installs the engine on the RX direction of l. The bytes of
// l.Buffered are copied and read before anything from l.Conn. It does no I/O.
func (e engine) NewOpener(l backend.Link, p backend.Params) (backend.Opener, error) {
	prot, aead, err := newProtectorWith(p, e.newAEAD)
	if err != nil {
		return nil, err
	}
	if l.Conn == nil {
		if aead != nil {
			aead.Close()
		}
		return nil, errors.New("userspace: NewOpener with a nil Link.Conn")
	}
	o := &opener{half: half{conn: l.Conn, version: p.Version, prot: prot, seq: p.Seq, newAEAD: e.newAEAD, aead: aead}}
	o.raw = rawConnOf(l.Conn)
	if o.raw != nil {
		// Made once: a method value passed to RawConn.Read on each
		// fill would be allocated each time.
		o.rawFn = o.rawRead
	}
	if len(l.Buffered) > smallReadBuf {
		o.buf = make([]byte, len(l.Buffered))
	} else if len(l.Buffered) > 0 {
		o.getBufLocked()
	}
	// Otherwise the buffer waits for the first bytes: a TLS 1.3 client
	// or a server that only writes never reads a record.
	o.w = copy(o.buf, l.Buffered)
	o.dirty = o.w
	return o, nil
}

// half is what the two halves share: the key and sequence number of one
// direction, a sticky error, and the way Close hands the release of the key
// to whichever call holds the lock.
type half struct {
	conn    net.Conn
	version uint16
	closed  atomic.Bool

	// mu serializes every method of the half and guards the fields below
	// and those of the half that embeds it.
	mu   sync.Mutex
	prot *record.Protector
	seq  uint64 // of the next record
	err  error  // sticky: once set, every call returns it
	// newAEAD is New's, and aead is prot's AEAD when newAEAD
	// made it; both nil for the userspace engine.
	newAEAD func(backend.Params) (AEAD, error)
	aead    AEAD
}

// unlock ends every method. An AEAD from New may hold file
// descriptors, so a Close that found the half busy is finished here rather
// than at the next call, which may never come.
func (h *half) unlock(release func()) {
	if h.aead != nil && h.closed.Load() {
		release()
	}
	h.mu.Unlock()
}

// aeadErrLocked returns what broke the last Seal or Open of an AEAD from
// New, made sticky; nil for crypto/cipher's, which cannot fail so.
func (h *half) aeadErrLocked() error {
	if h.aead == nil {
		return nil
	}
	if err := h.aead.Err(); err != nil {
		h.err = err
		return err
	}
	return nil
}

// closeAEADLocked closes the AEAD from New, if any.
func (h *half) closeAEADLocked() {
	if h.aead != nil {
		h.aead.Close()
		h.aead = nil
	}
}

// beginLocked starts every method: a Close that found the half busy left the
// release to the next holder of mu. It returns the sticky error.
func (h *half) beginLocked(release func()) error {
	if h.closed.Load() {
		release()
	}
	return h.err
}

// rekeyLocked switches to a new key and IV at sequence number p.Seq, for
// TLS 1.3 KeyUpdate (RFC 8446 §4.6.3).
func (h *half) rekeyLocked(p backend.Params) error {
	if p.Version != h.version {
		return fmt.Errorf("userspace: Rekey from %s to %s", tls.VersionName(h.version), tls.VersionName(p.Version))
	}
	prot, aead, err := newProtectorWith(p, h.newAEAD)
	if err != nil {
		return err
	}
	h.closeAEADLocked()
	h.prot, h.seq, h.aead = prot, p.Seq, aead
	return nil
}

// close marks the half closed and releases it now if no call holds it. It
// does not close the link and does not wait for a call blocked on it: the
// connection closes or times out the link.
func (h *half) close(release func()) {
	h.closed.Store(true)
	if h.mu.TryLock() {
		release()
		h.mu.Unlock()
	}
}

// sealer is the TX half.
type sealer struct {
	half
	// buf holds the sealed records of one batch during a call: from
	// sealPools, and back there when the call ends.
	buf []byte
}

// WriteRecords seals data as records of type typ, at most 2^14 bytes each,
// and writes them to the link, several records per Write. It returns how
// many bytes of data went out in records that were written whole. An error
// from the link is returned as is and, like every error here, is permanent: a
// record may have been half written.
//
// Empty data writes one empty record if typ is application_data (a TLS 1.2
// peer or a probe may need one) and nothing otherwise (RFC 8446 §5.1 forbids
// empty handshake and alert records).
func (s *sealer) WriteRecords(typ uint8, data []byte) (int, error) {
	s.mu.Lock()
	defer s.unlock(s.releaseLocked)
	return s.writeLocked(typ, data, false)
}

// WriteRecordsLent is WriteRecords of application data from a buffer lent
// whole (backend.LentWriter): each record is sealed from data where it is,
// without the copy into the batch buffer that an in-place seal needs.
// TLS 1.2 records are sealed so from WriteRecords's data too; a TLS 1.3
// record's AEAD input is its plaintext followed by its content type (RFC 8446
// §5.2), so it needs the byte past each record's plaintext, which the lent
// byte past data provides for the last (record.Protector.SealFrom).
func (s *sealer) WriteRecordsLent(data []byte) (int, error) {
	s.mu.Lock()
	defer s.unlock(s.releaseLocked)
	if cap(data) == len(data) {
		panic("userspace: WriteRecordsLent without a byte of capacity past the data")
	}
	return s.writeLocked(backend.TypeApplicationData, data, true)
}

// writeLocked is WriteRecords; lent says that data and a byte past it are
// lent (WriteRecordsLent).
func (s *sealer) writeLocked(typ uint8, data []byte, lent bool) (int, error) {
	if err := s.beginLocked(s.releaseLocked); err != nil {
		return 0, err
	}
	// The first batch's size (an empty record's, for empty data).
	first := min(len(data), maxBatch*backend.MaxPlaintext)
	bp := getSealBuf(first + (first/backend.MaxPlaintext+1)*(record.HeaderLen+s.prot.Overhead()))
	s.buf = (*bp)[:0]
	defer func() {
		// The records are on the wire (or the half failed): nothing
		// refers to the buffer past this call.
		*bp, s.buf = s.buf, nil
		putSealBuf(bp)
	}()
	if len(data) == 0 {
		if typ != backend.TypeApplicationData {
			return 0, nil
		}
		if s.seq == math.MaxUint64 {
			s.err = errSeqExhausted
			return 0, s.err
		}
		s.buf = s.prot.Seal(s.buf[:0], s.seq, typ, nil)
		s.seq++
		if err := s.aeadErrLocked(); err != nil {
			return 0, err
		}
		if _, err := s.conn.Write(s.buf); err != nil {
			s.err = err
			return 0, err
		}
		return 0, nil
	}

	sent := 0
	for len(data) > 0 {
		// One batch: up to maxBatch records, sealed back to back.
		chunk := min(len(data), maxBatch*backend.MaxPlaintext)
		recs := (chunk + backend.MaxPlaintext - 1) / backend.MaxPlaintext
		if need := chunk + recs*(record.HeaderLen+s.prot.Overhead()); cap(s.buf) < need {
			s.buf = make([]byte, 0, need)
		}
		buf := s.buf[:0]
		sealed := 0
		exhausted := false
		for sealed < chunk {
			if s.seq == math.MaxUint64 {
				exhausted = true
				break
			}
			n := min(chunk-sealed, backend.MaxPlaintext)
			// The batch buffer is the pool's: data never overlaps it.
			buf = s.prot.SealFrom(buf, s.seq, typ, data[sealed:sealed+n], lent)
			s.seq++
			if err := s.aeadErrLocked(); err != nil {
				// Nothing of this batch goes out.
				return sent, err
			}
			sealed += n
		}
		s.buf = buf
		if len(buf) > 0 {
			w, err := s.conn.Write(buf)
			if err != nil {
				s.err = err
				return sent + s.wholeRecords(w, sealed), err
			}
		}
		sent += sealed
		data = data[sealed:]
		if exhausted {
			s.err = errSeqExhausted
			return sent, s.err
		}
	}
	return sent, nil
}

// wholeRecords returns how many of the first sealed plaintext bytes of a
// batch went out in records of which all w bytes were written.
func (s *sealer) wholeRecords(w, sealed int) int {
	done, off := 0, 0
	for done < sealed {
		n := min(sealed-done, backend.MaxPlaintext)
		off += s.prot.SealedLen(n)
		if off > w {
			break
		}
		done += n
	}
	return done
}

// Rekey switches to a new key and IV at sequence number p.Seq, for TLS 1.3
// KeyUpdate (RFC 8446 §4.6.3). Records already written stay as they were.
func (s *sealer) Rekey(p backend.Params) error {
	s.mu.Lock()
	defer s.unlock(s.releaseLocked)
	if err := s.beginLocked(s.releaseLocked); err != nil {
		return err
	}
	return s.rekeyLocked(p)
}

// Close releases the key and the buffer; later calls fail with an error that
// wraps net.ErrClosed. It does not close the link and does not wait for a
// WriteRecords blocked on it: the connection closes or times out the link.
func (s *sealer) Close() error {
	s.close(s.releaseLocked)
	return nil
}

func (s *sealer) releaseLocked() {
	s.closeAEADLocked()
	s.prot, s.buf = nil, nil
	s.err = errClosed
}

// opener is the RX half.
type opener struct {
	half
	// buf is the read-ahead, buf[r:w] not yet consumed; nil while the
	// half waits for the peer with nothing pending, when its link is a
	// socket (rawread_unix.go). bufp is the pool's pointer to it, nil if
	// it is not a pool's.
	buf  []byte
	bufp *[]byte
	r, w int
	// dirty is how much of buf, from its start, this connection may have
	// written since it took it: the high-water mark of w (a record is
	// opened in place within buf[r:w], and moving the pending bytes to the
	// front copies within it). A pooled buffer comes cleared, so
	// putBufLocked need clear only buf[:dirty].
	dirty int
	full  bool // the last Read filled buf: grow it to readBufSize
	big   bool // the peer streamed once: take readBufSize buffers

	// raw is the link's syscall.RawConn when the link is a socket that
	// holds nothing above it (rawConnOf), else nil; rawFn is rawRead, rn
	// and rerr are what its last call read, waited says that the current
	// RawConn.Read has parked once, peek is where rawRead peeks, and tiny says
	// that it saw a whole record header there of a record that fits
	// tinyReadBuf.
	raw    syscall.RawConn
	rawFn  func(fd uintptr) bool
	rn     int
	rerr   error
	waited bool
	peek   [record.HeaderLen]byte
	tiny   bool
}

// getBufLocked gives the half a buffer from the pool of its size.
func (o *opener) getBufLocked() {
	pool := smallReadBufs
	switch {
	case o.big:
		pool = bigReadBufs
	case o.tiny:
		pool = tinyReadBufs
	}
	o.tiny = false
	o.bufp = pool.Get()
	o.buf = *o.bufp
}

// putBufLocked hands the buffer back to its pool; nothing of it may be in
// use: no bytes pending, and the plaintext of the last record returned no
// longer valid (ReadRecord's contract: until the next call).
//
// The buffer is cleared first: records are opened in place, so it still
// holds this connection's plaintext, and a pooled buffer goes to another
// connection. Nothing reads a buffer before writing it, but a bug that did
// should find zeros, not a stranger's data. The cost is one memclr per wait
// for the peer, never per record, and only of what the connection wrote
// (dirty): a request/response connection reading 1 KiB records clears a few
// KiB, not the whole buffer.
func (o *opener) putBufLocked() {
	if o.bufp != nil {
		clear((*o.bufp)[:o.dirty])
		putReadBuf(o.bufp)
	}
	o.buf, o.bufp, o.r, o.w, o.dirty = nil, nil, 0, 0, 0
}

// ReadRecord reads, checks and opens the next record. The returned plaintext
// lives in the read buffer and stays valid until the next call.
//
// Header checks come first, as in crypto/tls (conn.go, readRecordOrCCS): a
// record version other than 0x0303 is protocol_version, a length beyond the
// version's maximum is record_overflow, and for TLS 1.3 an outer type other
// than application_data is unexpected_message; then record.Protector.Open
// decides (decode_error, bad_record_mac, record_overflow,
// unexpected_message). All of these are permanent.
//
// A timeout from the link is returned as is and is not permanent: the bytes
// read so far stay buffered and the next call resumes. io.EOF at a record
// boundary is io.EOF; EOF inside a record is io.ErrUnexpectedEOF. Both, and
// any other error from the link, are permanent.
func (o *opener) ReadRecord() (typ uint8, data []byte, err error) {
	o.mu.Lock()
	defer o.unlock(o.releaseLocked)
	rec, err := o.nextLocked()
	if err != nil {
		return 0, nil, err
	}
	typ, data, err = o.prot.Open(o.seq, rec)
	if err != nil {
		return 0, nil, o.openFailedLocked(err)
	}
	o.seq++
	o.r += len(rec)
	return typ, data, nil
}

// ReadRecordInto is ReadRecord with the plaintext in b, at least
// MaxPlaintext bytes (backend.IntoReader): the record is opened from the
// read-ahead buffer straight into b, which saves conn's copy out of it.
//
// That happens only with Go's AEADs and where b holds the AEAD's whole
// output, which for TLS 1.3 is the inner plaintext with its content type and
// any padding (RFC 8446 §5.2, §5.4) and so may be longer than the plaintext
// and than MaxPlaintext; otherwise the record is opened in place, as by
// ReadRecord, and copied into b.
//
// The AEAD writes b before the tag is known to be good: Go's AES-GCM
// decrypts while it authenticates where it has assembly (amd64, arm64:
// crypto/internal/fips140/aes/gcm, gcm_asm.go open) and so does x/crypto's
// ChaCha20-Poly1305 on amd64 (chacha20poly1305_amd64.go); both zero their
// output when the tag is wrong (gcm.go Open; the generic code checks the
// tag first). b is the caller's scratch space during the call (io.Reader's
// contract), so that is acceptable as long as nothing unauthenticated is
// left there when the call returns: b is zeroed here as well on every
// failed open, whatever the AEAD did, and the error is sticky, so no later
// call returns b's bytes as data. An engine's AEAD (afalg's: the kernel
// writes the output, undefined after a failed tag check, userspace-if.rst)
// always takes the in-place path, so that only Go's AEADs ever write the
// caller's buffer.
func (o *opener) ReadRecordInto(b []byte) (typ uint8, n int, err error) {
	o.mu.Lock()
	defer o.unlock(o.releaseLocked)
	rec, err := o.nextLocked()
	if err != nil {
		return 0, 0, err
	}
	var data []byte
	if out := o.prot.OpenedLen(len(rec)); o.aead == nil && out <= len(b) {
		typ, data, err = o.prot.OpenTo(b, o.seq, rec)
		if err != nil {
			clear(b[:max(out, 0)])
		}
	} else {
		typ, data, err = o.prot.Open(o.seq, rec)
		if err == nil {
			// Open's plaintext is at most MaxPlaintext bytes.
			data = b[:copy(b, data)]
		}
	}
	if err != nil {
		return 0, 0, o.openFailedLocked(err)
	}
	o.seq++
	o.r += len(rec)
	return typ, len(data), nil
}

// openFailedLocked returns what a failed Open means, made sticky: the AEAD's
// own failure where it broke (an engine's), else the record's alert.
func (o *opener) openFailedLocked(err error) error {
	if aerr := o.aeadErrLocked(); aerr != nil {
		// Not the record's fault: the AEAD broke.
		return aerr
	}
	o.err = err
	return err
}

// nextLocked begins ReadRecord and ReadRecordInto: it checks the sticky
// error and the sequence number, reads the next whole record into
// buf[r:] and returns it, header included, after the header checks.
func (o *opener) nextLocked() ([]byte, error) {
	if err := o.beginLocked(o.releaseLocked); err != nil {
		return nil, err
	}
	if o.seq == math.MaxUint64 {
		o.err = errSeqExhausted
		return nil, o.err
	}
	if o.r == o.w {
		// The previous record's plaintext may go: start over at the
		// front, where a Read has the whole buffer.
		o.r, o.w = 0, 0
	}
	if err := o.fillLocked(record.HeaderLen); err != nil {
		return nil, err
	}
	h, _ := record.ParseHeader(o.buf[o.r:o.w])
	if err := record.CheckHeader(o.version, h); err != nil {
		o.err = err
		return nil, err
	}
	n := record.HeaderLen + h.Length
	if err := o.fillLocked(n); err != nil {
		return nil, err
	}
	return o.buf[o.r : o.r+n], nil
}

// putReadBuf hands a read buffer back to the pool of its size.
func putReadBuf(bp *[]byte) {
	// The size is read once: once a pool has the buffer, another
	// goroutine may take it.
	switch len(*bp) {
	case tinyReadBuf:
		tinyReadBufs.Put(bp)
	case smallReadBuf:
		smallReadBufs.Put(bp)
	case readBufSize:
		bigReadBufs.Put(bp)
	}
}

// fillLocked reads until buf[r:w] holds at least n bytes, n ≤ smallReadBuf;
// a tiny buffer that cannot hold them grows first. It reads as much as the
// link has, up to the end of the buffer.
func (o *opener) fillLocked(n int) error {
	if o.w-o.r >= n {
		return nil
	}
	if o.buf != nil && (o.full && len(o.buf) < readBufSize || n > len(o.buf)) {
		// The peer sends more than the buffer holds: read further ahead,
		// for fewer system calls; or a tiny buffer (tinyReadBuf) does
		// not hold the next record. The last record's plaintext, in the
		// old buffer, is no longer in use once this call has begun.
		old, oldp, oldDirty := o.buf[o.r:o.w], o.bufp, o.dirty
		// A tiny buffer grows to a small one; only a small one that a
		// Read filled says that the peer streams.
		o.big = o.big || len(o.buf) >= smallReadBuf
		o.getBufLocked()
		o.w = copy(o.buf, old)
		o.r, o.dirty = 0, o.w
		if oldp != nil {
			clear((*oldp)[:oldDirty]) // as putBufLocked, for the same reason
			putReadBuf(oldp)
		}
	}
	o.full = false
	if o.buf == nil {
		if o.raw == nil {
			o.getBufLocked()
		}
		// else rawRead takes one once the socket has bytes.
	}
	if o.r > 0 && (o.r+n > len(o.buf) || len(o.buf)-o.w < minRead) {
		o.w = copy(o.buf, o.buf[o.r:o.w])
		o.r = 0
	}
	for empty := 0; o.w-o.r < n; {
		m, err := o.readLinkLocked()
		o.w += m
		o.dirty = max(o.dirty, o.w)
		o.full = o.w == len(o.buf)
		if o.w-o.r >= n {
			// Any error comes back on the next Read.
			return nil
		}
		switch {
		case err == nil && m == 0:
			if empty++; empty >= 100 {
				o.err = io.ErrNoProgress
				return o.err
			}
		case err == nil:
			empty = 0
		case isTimeout(err):
			return err
		case err == io.EOF && o.w == o.r:
			// RFC 8446 §6.1 wants close_notify first, but EOF at a
			// record boundary is the connection's to judge, as in
			// crypto/tls.
			o.err = io.EOF
			return o.err
		case err == io.EOF:
			o.err = io.ErrUnexpectedEOF
			return o.err
		default:
			o.err = err
			return err
		}
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Rekey switches to a new key and IV at sequence number p.Seq, for TLS 1.3
// KeyUpdate (RFC 8446 §4.6.3). Bytes already read ahead are opened under the
// new key: they were sent after the KeyUpdate.
func (o *opener) Rekey(p backend.Params) error {
	o.mu.Lock()
	defer o.unlock(o.releaseLocked)
	if err := o.beginLocked(o.releaseLocked); err != nil {
		return err
	}
	return o.rekeyLocked(p)
}

// Close releases the key and the buffer; later calls fail with an error that
// wraps net.ErrClosed. It does not close the link and does not wait for a
// ReadRecord blocked on it.
func (o *opener) Close() error {
	o.close(o.releaseLocked)
	return nil
}

func (o *opener) releaseLocked() {
	o.closeAEADLocked()
	// The buffer is dropped, not pooled: the connection may still hold
	// plaintext of the last record, and a pooled buffer would carry it
	// into another connection.
	o.prot, o.buf, o.bufp, o.r, o.w, o.dirty = nil, nil, nil, 0, 0, 0
	o.err = errClosed
}

// readLinkLocked reads from the link into buf[w:]: through the socket's
// RawConn where there is one, so that the buffer goes back to its pool
// while the socket has nothing to read (rawRead); as a plain Read
// otherwise.
func (o *opener) readLinkLocked() (int, error) {
	if o.raw == nil {
		return o.conn.Read(o.buf[o.w:])
	}
	o.rn, o.rerr, o.waited = 0, nil, false
	if err := o.raw.Read(o.rawFn); err != nil {
		// A deadline, or the conn closed: as its Read would say it.
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "raw-read" {
			oe.Op = "read"
		}
		return 0, err
	}
	return o.rn, o.rerr
}
