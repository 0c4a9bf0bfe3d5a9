//go:build linux

package kernel

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/bufpool"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/rawio"
	"github.com/ktls-go/ktls/internal/record"
)

var (
	_ backend.Backend    = (*engine)(nil)
	_ backend.Checker    = (*engine)(nil)
	_ backend.Sealer     = (*sealer)(nil)
	_ backend.FileSender = (*sealer)(nil)
	_ backend.Sealer     = (*rekeyingSealer)(nil)
	_ backend.Rekeyer    = (*rekeyingSealer)(nil)
	_ backend.Opener     = (*opener)(nil)
	_ backend.Rekeyer    = (*opener)(nil)
	_ backend.IntoReader = (*opener)(nil)
)

const (
	// smallReadBuf holds the largest plaintext of one record (RFC 8446
	// §5.1: 2^14 bytes); the kernel never returns more than one control
	// record per read, so a control record always fits whole.
	smallReadBuf = backend.MaxPlaintext
	// readBufSize is what the read buffer grows to once a read filled it:
	// the kernel then decrypts several records per recvmsg.
	readBufSize = 64 << 10
)

type engine struct{ opts Options }

// New returns the kernel engine.
func New(opts Options) backend.Backend { return &engine{opts: opts} }

// Name returns backend.Kernel.
func (e *engine) Name() string { return backend.Kernel }

// Check reports, from the engine's suite table and the cached probes, whether
// the kernel serves a version and suite in one direction. The first call for
// a version and cipher probes the kernel (see [Probe]).
func (e *engine) Check(tx bool, version, suite uint16) error {
	return Probe(tx, version, suite)
}

// NewSealer attaches the "tls" ULP to l.Conn (a TCP socket: tcpSocket) and installs
// TLS_TX. Any failure leaves the socket as it was for the other engines (the
// ULP alone passes bytes through untouched, tls.rst "base" mode), so it
// wraps backend.ErrNotSupported.
func (e *engine) NewSealer(l backend.Link, p backend.Params) (backend.Sealer, error) {
	c, s, err := e.prepare(true, l, p)
	if err != nil {
		return nil, err
	}
	if err := s.install(optTX, c, p); err != nil {
		return nil, err
	}
	se := &sealer{sock: s, c: c}
	if p.Version == tls.VersionTLS13 && ProbeRekey() == nil {
		// Only a sealer that can take the next key may be asked to send a
		// KeyUpdate: the message goes out under the old key before the new
		// one is set, and a kernel that then refused the new key would leave
		// the peer reading under a key ktls cannot use.
		return &rekeyingSealer{se}, nil
	}
	return se, nil
}

// NewOpener attaches the "tls" ULP to l.Conn and installs TLS_RX. The kernel
// reads the records from the socket itself, so l.Buffered must be empty.
func (e *engine) NewOpener(l backend.Link, p backend.Params) (backend.Opener, error) {
	if len(l.Buffered) != 0 {
		return nil, backend.NotSupported(backend.Kernel, "%d bytes of the incoming stream were already read from the socket", len(l.Buffered))
	}
	c, s, err := e.prepare(false, l, p)
	if err != nil {
		return nil, err
	}
	if err := s.install(optRX, c, p); err != nil {
		return nil, err
	}
	if e.opts.RXExpectNoPad && p.Version == tls.VersionTLS13 {
		// Best effort: a kernel before 6.0 lacks the option (ENOPROTOOPT)
		// and decrypts as it always did.
		s.setsockopt(unix.SOL_TLS, optRXExpectNoPad, []byte{1, 0, 0, 0})
	}
	// The read buffer comes from readBufs at the first read that has
	// something to read (recv).
	return &opener{sock: s, c: c, version: p.Version, oob: make([]byte, unix.CmsgSpace(1))}, nil
}

func (e *engine) prepare(tx bool, l backend.Link, p backend.Params) (cipher, sock, error) {
	if err := Probe(tx, p.Version, p.CipherSuite); err != nil {
		return cipher{}, sock{}, err
	}
	c, err := lookup(p.Version, p.CipherSuite)
	if err != nil {
		return cipher{}, sock{}, err
	}
	rc, err := tcpSocket(l.Conn)
	if err != nil {
		return cipher{}, sock{}, err
	}
	tcp, _ := l.Conn.(*net.TCPConn)
	return c, sock{conn: tcp, link: l.Conn, rc: rc}, nil
}

// tcpSocket returns the RawConn of c's TCP socket. c is a *net.TCPConn, or
// any syscall.Conn whose descriptor is a TCP socket (SO_DOMAIN AF_INET or
// AF_INET6, SO_TYPE SOCK_STREAM, SO_PROTOCOL IPPROTO_TCP; socket(7)): what
// package conn passes for a wrapped conn once it proved that nothing is held
// above the socket (docs/ARCHITECTURE.md, "Conns that arrive wrapped").
func tcpSocket(c net.Conn) (syscall.RawConn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, backend.NotSupported(backend.Kernel, "kTLS needs a TCP socket (a *net.TCPConn or a syscall.Conn), not %T", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, backend.NotSupported(backend.Kernel, "%w", err)
	}
	if _, ok := c.(*net.TCPConn); ok {
		return rc, nil
	}
	var dom, typ, proto int
	var err1, err2, err3 error
	if err := rc.Control(func(fd uintptr) {
		dom, err1 = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		typ, err2 = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
		proto, err3 = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	}); err != nil {
		return nil, backend.NotSupported(backend.Kernel, "%T: %w", c, err)
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, backend.NotSupported(backend.Kernel, "%T: getsockopt: %w", c, err)
	}
	if (dom != unix.AF_INET && dom != unix.AF_INET6) || typ != unix.SOCK_STREAM || proto != unix.IPPROTO_TCP {
		return nil, backend.NotSupported(backend.Kernel, "kTLS needs a TCP socket; %T's is domain %d, type %d, protocol %d", c, dom, typ, proto)
	}
	return rc, nil
}

// sock is the socket both halves work on. link is the conn the halves got,
// a *net.TCPConn or a syscall.Conn of a TCP socket (tcpSocket); conn is the
// same when it is a *net.TCPConn (the probe's sockets set only conn); rc is
// its RawConn.
type sock struct {
	conn *net.TCPConn
	link net.Conn
	rc   syscall.RawConn
}

// netConn is the conn whose addresses errors name.
func (s sock) netConn() net.Conn {
	if s.link != nil {
		return s.link
	}
	return s.conn
}

// install attaches the ULP (once per socket; EEXIST says the other direction
// did it) and gives the kernel the direction's key. The crypto_info is
// zeroed before install returns. A refusal at either step leaves the socket
// passing bytes through as before, so it wraps backend.ErrNotSupported.
func (s sock) install(opt int, c cipher, p backend.Params) error {
	info, err := cryptoInfo(c, p)
	if err != nil {
		return err
	}
	defer clear(info)
	if err := s.setsockopt(unix.IPPROTO_TCP, unix.TCP_ULP, []byte("tls")); err != nil && !errors.Is(err, unix.EEXIST) {
		return backend.NotSupported(backend.Kernel, "setsockopt(TCP_ULP, \"tls\"): %w", err)
	}
	if err := s.setsockopt(unix.SOL_TLS, opt, info); err != nil {
		return backend.NotSupported(backend.Kernel, "setsockopt(SOL_TLS, %s) for %s %s: %w", optName(opt), tls.VersionName(p.Version), c.Name, err)
	}
	return nil
}

func optName(opt int) string {
	if opt == optTX {
		return "TLS_TX"
	}
	return "TLS_RX"
}

// setsockopt passes value by pointer: unix.SetsockoptString would copy a key
// into a string that nothing can zero.
func (s sock) setsockopt(level, opt int, value []byte) error {
	var errno syscall.Errno
	err := s.rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_SETSOCKOPT, fd, uintptr(level), uintptr(opt),
			uintptr(unsafe.Pointer(unsafe.SliceData(value))), uintptr(len(value)), 0)
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// getsockopt reads an option of at most len(value) bytes into value.
func (s sock) getsockopt(level, opt int, value []byte) (int, error) {
	var errno syscall.Errno
	n := uint32(len(value))
	err := s.rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(opt),
			uintptr(unsafe.Pointer(unsafe.SliceData(value))), uintptr(unsafe.Pointer(&n)), 0)
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// opError makes err look like what a *net.TCPConn returns for op: a
// *net.OpError whose Err is a timeout, net.ErrClosed or an *os.SyscallError,
// so that errors.Is(err, os.ErrDeadlineExceeded) and net.Error work as on the
// other engines.
func (s sock) opError(op, syscallName string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		// The RawConn's own error ("raw-read", "raw-write"): a deadline or
		// a closed connection.
		e := *oe
		e.Op = op
		return &e
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.netConn().LocalAddr(), Addr: s.netConn().RemoteAddr(), Err: os.NewSyscallError(syscallName, err)}
}

// closedError is what a call on a closed half returns for op: the
// net.ErrClosed a closed socket's RawConn gives, named as opError names it.
func (s sock) closedError(op string) error {
	return &net.OpError{Op: op, Net: "tcp", Source: s.netConn().LocalAddr(), Addr: s.netConn().RemoteAddr(), Err: net.ErrClosed}
}

// sealer is the TX half: the kernel seals what is written to the socket.
// Package conn serializes its calls; Close does not touch the socket.
type sealer struct {
	sock
	c   cipher
	oob []byte
	// held is application data SpliceFrom read from its source and the
	// socket did not take (a write timeout); it goes out first, before
	// whatever is written next (splicefrom_linux.go).
	held []byte
	pipe pipeSlot // SpliceFrom's pipe, kept between calls
}

// WriteRecords writes data; the kernel cuts it into records of at most 2^14
// bytes (tls.rst). Application data goes out with write(2); any other type
// with sendmsg(2) and a TLS_SET_RECORD_TYPE cmsg, which the kernel never
// merges with data (tls.rst, "Send TLS control messages").
func (s *sealer) WriteRecords(typ uint8, data []byte) (int, error) {
	if err := s.sendHeld(); err != nil {
		return 0, err
	}
	if typ != backend.TypeApplicationData && s.oob == nil {
		s.oob = make([]byte, unix.CmsgSpace(1))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&s.oob[0]))
		h.Level = unix.SOL_TLS
		h.Type = cmsgSetRecordType
		h.SetLen(unix.CmsgLen(1))
	}
	written := 0
	for written < len(data) {
		var n int
		err, serr := rawio.Write(s.rc, func(fd int) (err error) {
			if typ == backend.TypeApplicationData {
				n, err = unix.Write(fd, data[written:])
			} else {
				s.oob[unix.CmsgLen(0)] = typ
				n, err = unix.SendmsgN(fd, data[written:], s.oob, nil, 0)
			}
			return err
		})
		if err != nil {
			return written, s.opError("write", "", err)
		}
		if serr != nil {
			name := "write"
			if typ != backend.TypeApplicationData {
				name = "sendmsg"
			}
			return written, s.opError("write", name, serr)
		}
		written += n
	}
	return written, nil
}

// SendFile sends n bytes of f (all of it to EOF when n < 0) with sendfile(2):
// the kernel reads the page cache and seals the records itself; the bytes
// never enter the process (tls.rst; selftests "sendfile",
// "multi_chunk_sendfile"). Only regular files are sent this way.
func (s *sealer) SendFile(f backend.File, off, n int64) (written int64, records uint64, handled bool, err error) {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return 0, 0, false, nil
	}
	frc, err := f.SyscallConn()
	if err != nil {
		return 0, 0, false, nil
	}
	before, err := s.recSeq()
	if err != nil {
		return 0, 0, false, nil
	}
	// sendfile moves at most 0x7ffff000 bytes per call (sendfile(2)); a
	// chunk of 4 MiB keeps each wait for the socket short.
	const chunk = 4 << 20
	var offp *int64
	if off >= 0 {
		offp = &off
	}
	var serr error
	for n < 0 || written < n {
		want := int64(chunk)
		if n >= 0 {
			want = min(want, n-written)
		}
		var m int
		var werr error
		werr, serr = rawio.Write(s.rc, func(dst int) error {
			var err error
			if cerr := frc.Control(func(src uintptr) {
				m, err = unix.Sendfile(dst, int(src), offp, int(want))
			}); cerr != nil {
				return cerr
			}
			return err
		})
		if werr != nil {
			err = s.opError("write", "", werr)
			break
		}
		if serr != nil {
			err = s.opError("write", "sendfile", serr)
			break
		}
		if m == 0 {
			break // end of file
		}
		written += int64(m)
	}
	after, serr := s.recSeq()
	if serr != nil {
		if err == nil {
			err = fmt.Errorf("kernel: reading the record sequence after sendfile: %w", serr)
		}
		// Count the most records the bytes could have taken: the caller
		// updates keys by this count, so an overestimate is the safe side.
		return written, uint64(written), true, err
	}
	return written, after - before, true, err
}

// recSeq reads the TX record sequence number from the kernel
// (getsockopt(TLS_TX) returns the whole crypto_info, key included, tls.rst;
// the copy is zeroed at once).
func (s *sealer) recSeq() (uint64, error) {
	var buf [4 + 12 + 32 + 4 + keyschedule.KernelRecSeqLen]byte // the largest crypto_info ktls installs
	defer clear(buf[:])
	// The kernel wants the exact size of the cipher's struct, or EINVAL
	// (do_tls_getsockopt_conf).
	want := s.c.InfoLen()
	n, err := s.getsockopt(unix.SOL_TLS, optTX, buf[:want])
	if err != nil {
		return 0, err
	}
	if n != want {
		return 0, fmt.Errorf("kernel: getsockopt(TLS_TX) returned %d bytes, want %d", n, want)
	}
	seq := buf[n-keyschedule.KernelRecSeqLen : n]
	var v uint64
	for _, b := range seq {
		v = v<<8 | uint64(b)
	}
	return v, nil
}

// Close releases SpliceFrom's pipe, once no call uses it (pipeSlot); the
// socket belongs to the connection.
func (s *sealer) Close() error {
	s.pipe.close()
	return nil
}

// rekeyingSealer is a sealer on a kernel that takes a second TLS_TX (Linux
// 6.14, commit 47069594e67e), found by [ProbeRekey].
type rekeyingSealer struct{ *sealer }

// Rekey installs the next TLS 1.3 key, after the KeyUpdate went out under
// the old one (tls.rst, "TLS 1.3 Key Updates": no pause on TX).
func (s *rekeyingSealer) Rekey(p backend.Params) error {
	c, err := lookup(p.Version, p.CipherSuite)
	if err != nil {
		return err
	}
	info, err := cryptoInfo(c, p)
	if err != nil {
		return err
	}
	defer clear(info)
	if err := s.setsockopt(unix.SOL_TLS, optTX, info); err != nil {
		return fmt.Errorf("kernel: setsockopt(TLS_TX) with the next key: %w", err)
	}
	return nil
}

// opener is the RX half: the kernel opens the records; recvmsg tells the
// content type of what it returns.
type opener struct {
	sock
	c       cipher
	version uint16
	// bufp is ReadRecord's buffer, from readBufs, or nil: it goes back
	// while the socket has nothing to read, so that an idle connection
	// (a server's keep-alive one, with a small Read pending) holds none
	// (issue 18). used is how much of it a read wrote since it was taken,
	// what putBufLocked clears; big says that the peer streams, and the
	// next buffer is readBufSize.
	bufp    *[]byte
	used    int
	big     bool
	oob     []byte
	pending []byte   // application data SpliceTo took and its destination did not
	pipe    pipeSlot // SpliceTo's pipe, kept between calls
}

// ReadRecord reads what the kernel has opened: the plaintext of one control
// record, or of one or more application data records (the kernel never
// mixes types in one read, tls.rst). Records whose type the kernel cannot
// tell apart from data have no cmsg; data always has one when there is room.
func (o *opener) ReadRecord() (uint8, []byte, error) {
	if len(o.pending) > 0 {
		data := o.pending
		o.pending = nil
		return backend.TypeApplicationData, data, nil
	}
	if o.bufp != nil && o.big && len(*o.bufp) < readBufSize {
		// The last call's plaintext is no longer in use: the small
		// buffer goes for a big one.
		o.putBuf()
	}
	typ, n, err := o.recv(nil)
	if err != nil {
		return 0, nil, err
	}
	data := (*o.bufp)[:n]
	if typ == backend.TypeApplicationData && n == len(data) && n < readBufSize {
		// The peer streams: read more records per call from now on. The
		// returned data stays valid, as the contract asks, until the
		// next call, which takes a big buffer.
		o.big = true
	}
	return typ, data, nil
}

// ReadRecordInto is ReadRecord with the caller's buffer: the kernel decrypts
// into b itself, which saves the copy out of the engine's buffer.
func (o *opener) ReadRecordInto(b []byte) (uint8, int, error) {
	if len(o.pending) > 0 {
		n := copy(b, o.pending)
		if o.pending = o.pending[n:]; len(o.pending) == 0 {
			o.pending = nil
		}
		return backend.TypeApplicationData, n, nil
	}
	return o.recv(b)
}

// recv reads what the kernel has opened into b with recvmsg and tells its
// type from the cmsg. With b nil it reads into the opener's buffer, taken
// from readBufs once the socket has something to read: a recvmsg that
// finds nothing hands it back before the goroutine parks (putBuf).
func (o *opener) recv(b []byte) (uint8, int, error) {
	var n, oobn, flags int
	err, serr := rawio.Read(o.rc, func(fd int) (err error) {
		into := b
		if into == nil {
			if o.bufp == nil {
				o.bufp = readBufs[o.poolIndex()].Get()
			}
			into = *o.bufp
		}
		n, oobn, flags, _, err = unix.Recvmsg(fd, into, o.oob, 0)
		if b == nil && n > o.used {
			o.used = n
		}
		if err == unix.EAGAIN {
			// Also after a ReadRecordInto: the last ReadRecord's
			// plaintext is no longer in use.
			o.putBuf()
		}
		return err
	})
	if err != nil {
		return 0, 0, o.opError("read", "", err)
	}
	if serr != nil {
		return 0, 0, o.recvError(serr)
	}
	typ, ok := recordType(o.oob[:oobn])
	if !ok {
		if n == 0 {
			// TCP FIN. kTLS cannot say whether a partial record was
			// pending; at a record boundary crypto/tls takes an EOF
			// without close_notify as EOF too (conn.go, readRecordOrCCS).
			return 0, 0, io.EOF
		}
		typ = backend.TypeApplicationData
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return 0, 0, fmt.Errorf("kernel: recvmsg truncated the record type: %w", record.AlertInternalError)
	}
	return typ, n, nil
}

// poolIndex is the readBufs entry of the opener's next buffer.
func (o *opener) poolIndex() int {
	if o.big {
		return 1
	}
	return 0
}

// putBuf hands ReadRecord's buffer back to readBufs. It is cleared first,
// as far as reads wrote it: it holds this connection's plaintext, and the
// next connection to take it is another. Nothing may still refer to it: it
// runs within a call, once the last call's plaintext is no longer valid.
func (o *opener) putBuf() {
	if o.bufp == nil {
		return
	}
	clear((*o.bufp)[:o.used])
	p := readBufs[0]
	if len(*o.bufp) == readBufSize {
		p = readBufs[1]
	}
	p.Put(o.bufp)
	o.bufp, o.used = nil, 0
}

// readBufs hold the openers' read buffers, in their two sizes, while they
// wait for the kernel; each keeps one aside that no GC drops (bufpool.Pool).
var readBufs = [2]*bufpool.Pool{bufpool.New(smallReadBuf, 1), bufpool.New(readBufSize, 1)}

// recordType reads the TLS_GET_RECORD_TYPE cmsg, the only one the kernel
// puts in a kTLS recvmsg's control buffer (tls_record_content_type), parsed
// in place: unix.ParseSocketControlMessage would allocate on every read.
func recordType(oob []byte) (uint8, bool) {
	hdrLen := unix.CmsgLen(0)
	if len(oob) < hdrLen+1 {
		return 0, false
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if h.Level != unix.SOL_TLS || h.Type != cmsgGetRecordType || int(h.Len) < hdrLen+1 {
		return 0, false
	}
	return oob[hdrLen], true
}

// recvError maps what kTLS's recvmsg or splice reports (tls.rst,
// "Integrating in to userspace TLS library"; the selftests bad_rec,
// bad_auth) to the alert the connection sends, as OpenSSL's
// ktls_read_record does. It may run inside a RawConn callback (SpliceTo's).
func (o *opener) recvError(errno error) error {
	switch errno {
	case unix.EBADMSG:
		// Authentication failed. The kernel keeps the record and fails
		// it again on every read, so the failure is sticky without
		// sk_err; the socket error it also set would stop the alert.
		o.takeDecryptError()
		return fmt.Errorf("kernel: record authentication failed: %w", record.AlertBadRecordMAC)
	case unix.EMSGSIZE:
		return fmt.Errorf("kernel: record too long: %w", record.AlertRecordOverflow)
	case unix.EINVAL:
		return fmt.Errorf("kernel: record with the wrong protocol version: %w", record.AlertProtocolVersion)
	case unix.EKEYEXPIRED:
		// The kernel waits for the key that follows a KeyUpdate it read;
		// package conn sets it before reading again, so this is a bug.
		return fmt.Errorf("kernel: the kernel waits for the next key (EKEYEXPIRED): %w", record.AlertInternalError)
	case unix.EIO:
		return fmt.Errorf("kernel: control record read without a cmsg buffer (EIO): %w", record.AlertInternalError)
	}
	return o.opError("read", "recvmsg", errno)
}

// takeDecryptError clears the socket error kTLS sets when a record fails to
// decrypt, so that the alert RFC 8446 §5.2 and RFC 5246 §7.2.2 require
// (bad_record_mac) can still be sent, by the kernel's TX or by any other
// sealer writing to the socket.
//
// On every kernel of the matrix (net/tls/tls_sw.c of Linux 6.1.176, 6.12.107
// and 7.2.6, as Debian ships them) a failed decryption calls
// tls_err_abort(sk, -EBADMSG), which sets sk->sk_err = EBADMSG: from
// tls_sw_recvmsg and tls_sw_splice_read in 6.1 and 6.12, from
// tls_rx_one_record in 7.x; with an asynchronous AEAD, tls_decrypt_done does
// it and also sets the RX context's async_wait.err, before tls_sw_recvmsg
// returns. Nothing on the RX side takes it back: tls_rx_rec_wait reads
// sk_err with sock_error() only while no record is ready, and the refused
// record stays ready (it is not consumed, and the next read decrypts it
// again and fails again), or async_wait.err fails every later read.
// Meanwhile every send fails with it: tls_sw_sendmsg (6.1) and
// tls_sw_sendmsg_locked (6.12, 7.x) return -sk->sk_err before building a
// record, and sk_stream_error leaves it set since it is not EPIPE; a sealer
// that writes to the socket itself (the ULP's base TX, tcp_sendmsg_locked)
// gets it through sk_stream_error once. The TX key and sequence number are
// untouched (the RX failure touches only tls_sw_context_rx), so once sk_err
// is 0 the alert goes out as the next record under the current TX key.
//
// getsockopt(SO_ERROR) is the way to clear it: sk_getsockopt's SO_ERROR case
// (net/core/sock.c) is -sock_error(sk), an xchg of sk_err with 0, and
// SOL_SOCKET options never reach tls_getsockopt. Errors kTLS's framing
// reports (EMSGSIZE, EINVAL: tls_strp_abort_strp) need nothing here:
// tls_rx_rec_wait already returned them through sock_error(), since no
// record was ready. Should a TCP error (a reset) have landed in sk_err in
// the meantime, it is taken too; TCP's own state (sk_shutdown) still refuses
// the send with EPIPE then, and RX has failed anyway.
//
// One race is left that no process can win: a send whose asynchronous
// encryption completes between the failed read and this call finds sk_err
// set in tls_encrypt_done, which drops the record and stores the error in
// the TX context's async_wait.err for good. That send fails, the
// connection's TX fails with it, and no alert follows.
func (o *opener) takeDecryptError() {
	var v [4]byte
	o.getsockopt(unix.SOL_SOCKET, unix.SO_ERROR, v[:])
}

// Rekey installs the peer's next TLS 1.3 key after ReadRecord returned its
// KeyUpdate; until then the kernel answers every read with EKEYEXPIRED
// (tls.rst, "TLS 1.3 Key Updates"). A kernel before 6.14 refuses a second
// TLS_RX with EBUSY: that wraps backend.ErrNotSupported, nothing was done,
// and the connection ends with ErrKeyUpdateUnsupported.
func (o *opener) Rekey(p backend.Params) error {
	info, err := cryptoInfo(o.c, p)
	if err != nil {
		return err
	}
	defer clear(info)
	if err := o.setsockopt(unix.SOL_TLS, optRX, info); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return backend.NotSupported(backend.Kernel, "following a TLS 1.3 KeyUpdate needs Linux 6.14 or newer (commit 47069594e67e); this kernel refused the next TLS_RX key (%w)", err)
		}
		return fmt.Errorf("kernel: setsockopt(TLS_RX) with the next key: %w", err)
	}
	return nil
}

// Close releases SpliceTo's pipe, once no call uses it (pipeSlot); the
// socket belongs to the connection.
func (o *opener) Close() error {
	o.pipe.close()
	return nil
}
