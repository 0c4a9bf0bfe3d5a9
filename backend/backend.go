// Package backend is the contract between a ktls connection and the engines
// that protect its records.
//
// A connection's record layer is split by direction, as crypto/tls splits its
// halfConn and as quic-go splits sealers from openers: a [Sealer] protects and
// sends the records of one direction, an [Opener] receives and opens the
// records of the other. A connection may run, say, a kernel Sealer with a
// user-space Opener. Everything that is the same for every engine (alerts,
// close_notify, KeyUpdate, limits) lives in package conn, not here.
//
// Optional capabilities (rekeying for TLS 1.3 KeyUpdate, sendfile, splice in
// both directions, reading into the caller's buffer, sealing from a buffer
// the connection lends) are separate interfaces that a half may implement
// and that the connection finds by type assertion.
package backend

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"syscall"

	"github.com/ktls-go/ktls/internal/record"
)

// The names of the engines, as KTLS_BACKEND and BackendInfo spell them.
const (
	Kernel    = "kernel"    // Linux kTLS in software
	NIC       = "nic"       // Linux kTLS with device offload
	AFALG     = "afalg"     // the kernel crypto API through AF_ALG sockets
	Userspace = "userspace" // ktls's own pure-Go record layer
	Stdlib    = "stdlib"    // crypto/tls's own record layer, untouched
)

// Names lists every engine name in the order of preference of the automatic
// choice.
var Names = []string{Kernel, NIC, AFALG, Userspace, Stdlib}

// ErrNotSupported is wrapped by an engine that cannot serve a direction with
// the given parameters and did nothing: the connection tries its next
// candidate. Any other error from a constructor is a failure after something
// was done, and the connection fails.
var ErrNotSupported = errors.New("backend: not supported")

// NotSupportedError is an engine's refusal: it cannot serve what was asked
// and did nothing, so the connection tries its next candidate. It wraps
// ErrNotSupported, and Err where there is a cause (a syscall's errno, the
// refusal of the engine it decorates), so that errors.Is finds both; callers
// read Engine and Reason with errors.As instead of cutting a message apart
// (in the style of cilium/ebpf's UnsupportedFeatureError).
type NotSupportedError struct {
	// Engine is the engine or probe that refused ("kernel", "afalg").
	Engine string
	// Reason is why, without the engine's name: "no kTLS cipher for
	// TLS_RSA_WITH_AES_128_CBC_SHA". It never carries key material.
	Reason string
	// Err is the cause, or nil.
	Err error
}

// NotSupported returns a *NotSupportedError of engine whose Reason is
// formatted as by fmt.Errorf; a %w verb in format sets Err to what it wraps.
func NotSupported(engine, format string, args ...any) error {
	formatted := fmt.Errorf(format, args...)
	e := &NotSupportedError{Engine: engine, Reason: formatted.Error()}
	switch u := formatted.(type) {
	case interface{ Unwrap() error }:
		e.Err = u.Unwrap()
	case interface{ Unwrap() []error }:
		e.Err = formatted
	}
	return e
}

// Error is "engine: reason: backend: not supported", the text such a refusal
// had when it was a wrapped string.
func (e *NotSupportedError) Error() string {
	return e.Engine + ": " + e.Reason + ": " + ErrNotSupported.Error()
}

// Unwrap returns ErrNotSupported and, where set, Err.
func (e *NotSupportedError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrNotSupported}
	}
	return []error{ErrNotSupported, e.Err}
}

// Record content types, RFC 8446 §5.1 (the same numbers in RFC 5246 §6.2.1),
// and the largest plaintext one record may carry, 2^14 bytes: internal/record's,
// defined once there, below every engine.
const (
	TypeChangeCipherSpec = record.TypeChangeCipherSpec
	TypeAlert            = record.TypeAlert
	TypeHandshake        = record.TypeHandshake
	TypeApplicationData  = record.TypeApplicationData
	MaxPlaintext         = record.MaxPlaintext
)

// Params are what an engine needs to protect one direction of a connection.
//
// The caller owns the slices and zeroes them when the constructor or Rekey
// returns: an engine copies what it keeps (or hands it to the kernel) and never
// keeps a reference.
type Params struct {
	// Version is tls.VersionTLS12 or tls.VersionTLS13.
	Version uint16
	// CipherSuite is a crypto/tls cipher suite ID; always an AEAD suite.
	CipherSuite uint16
	// Key is the AEAD key of this direction.
	Key []byte
	// IV is, for TLS 1.3 and for TLS 1.2 ChaCha20-Poly1305, the 12-byte
	// per-record IV that is XORed with the sequence number (RFC 8446 §5.3,
	// RFC 7905 §2); for TLS 1.2 AES-GCM, the 4-byte implicit salt, the
	// explicit part of the nonce being the sequence number (RFC 5288 §3, as
	// crypto/tls does).
	IV []byte
	// Seq is the sequence number of the next record in this direction. It is
	// known by construction (package conn counts and verifies the records
	// crypto/tls protected under this key); an engine must use it as given.
	Seq uint64
	// Protector, when not nil, protects records under exactly Key and IV
	// for Version and CipherSuite: package conn built it for the handoff's
	// proof (docs/ARCHITECTURE.md step 4), and an engine that protects
	// records with Go's AEADs may take it rather than build the same AEAD
	// again. It holds no sequence number (the nonce comes from Seq, RFC 8446
	// §5.3), so nothing of the proof's use carries over. Once the
	// constructor is called it is the engine's: the caller never uses it
	// again, whether or not the engine took it. Engines that need the raw
	// key (kernel, nic, afalg) ignore it.
	Protector *record.Protector
}

// Link is the transport a half runs over.
type Link struct {
	// Conn is the raw connection under TLS. The kernel engines get the TCP
	// socket itself (a *net.TCPConn, or a syscall.Conn on a TCP socket that
	// package conn found under a wrapper holding nothing above it,
	// docs/ARCHITECTURE.md "Conns that arrive wrapped"); nic needs a
	// *net.TCPConn. Deadlines set on it apply to the half's I/O.
	Conn net.Conn
	// Buffered, for an Opener only, holds bytes of the incoming record stream
	// that were already read from Conn and come before anything still in it.
	// An engine that can only read from the socket itself (the kernel) must
	// report ErrNotSupported when Buffered is not empty.
	Buffered []byte
}

// Sealer is a connection's TX half.
type Sealer interface {
	// WriteRecords sends data as one or more records of content type typ,
	// each carrying at most MaxPlaintext bytes, and returns how many bytes of
	// data were sent. An error from WriteRecords is permanent for the
	// direction: a record may have been half written.
	WriteRecords(typ uint8, data []byte) (int, error)
	// Close releases what the half holds (not Link.Conn). The connection
	// calls it exactly once, possibly while another call of the half is
	// blocked on Link.Conn (Close of a connection does not wait for a Write
	// in flight): it must not wait for that call, and every later call
	// fails.
	Close() error
}

// Opener is a connection's RX half.
type Opener interface {
	// ReadRecord reads and opens the next record and returns its content type
	// (for TLS 1.3 the inner type, padding removed) and its plaintext, which
	// stays valid until the next call. Application data may come as the
	// plaintext of several consecutive records at once, or of part of one
	// (the kernel returns data so, never mixing types); every other type
	// comes one whole record at a time, at most MaxPlaintext bytes. A timeout from Link.Conn is returned as
	// is and is not permanent: the next call resumes where this one stopped.
	// A record that fails authentication or is malformed gives an error that
	// wraps the tls.AlertError the connection must send (bad_record_mac,
	// record_overflow, decode_error, unexpected_message).
	ReadRecord() (typ uint8, data []byte, err error)
	// Close releases what the half holds (not Link.Conn), under the same
	// rules as Sealer.Close.
	Close() error
}

// Rekeyer is implemented by a half that can switch to new keys in place, as
// TLS 1.3 KeyUpdate needs (RFC 8446 §4.6.3). p carries the new key and IV and
// Seq 0. For an Opener, Rekey is called after ReadRecord returned the
// KeyUpdate message and before the next ReadRecord; for a Sealer, after the
// KeyUpdate message was written under the old key.
type Rekeyer interface {
	Rekey(p Params) error
}

// File is a file that a FileSender can send from: an *os.File, or a value
// that wraps one without its WriteTo (as os.File.WriteTo's generic path
// hands io.Copy, and as net.TCPConn's own sendfile path accepts).
type File interface {
	io.Reader
	Stat() (fs.FileInfo, error)
	SyscallConn() (syscall.RawConn, error)
}

// FileSender is implemented by a Sealer that can send a file's bytes
// without them passing through user space: sendfile(2) into a kTLS socket,
// where the kernel reads the page cache and seals the records itself
// (docs/ARCHITECTURE.md step 8).
type FileSender interface {
	// SendFile sends up to n bytes of f (n < 0: up to end of file) as
	// application data records, starting at offset off, or, when off < 0,
	// at f's current offset, which then advances by what was sent. It
	// returns the bytes sent and the records they took. handled is false
	// when nothing was done and the caller must copy instead (f is not a
	// regular file, say); an error with handled true is permanent for the
	// direction, as from WriteRecords.
	SendFile(f File, off, n int64) (written int64, records uint64, handled bool, err error)
}

// LentWriter is implemented by a Sealer that seals faster from a buffer
// that the caller lends it whole than from WriteRecords's data, which it may
// only read: ktls's own copy buffer (conn's ReadFrom), not a user's Write.
type LentWriter interface {
	// WriteRecordsLent is WriteRecords(TypeApplicationData, data) where
	// data and one byte of capacity past it are lent to the Sealer for the
	// call: it may write them, and puts back what it wrote before it
	// returns, so nothing else may read them meanwhile. cap(data) must
	// exceed len(data). (A TLS 1.3 AEAD seals a record's plaintext and
	// content type in one piece, RFC 8446 §5.2: with the byte after each
	// record's plaintext to write, the user-space Sealer seals straight
	// from data instead of copying it into its own buffer first.)
	WriteRecordsLent(data []byte) (int, error)
}

// IntoReader is implemented by an Opener that can read application data
// straight into the caller's buffer (kTLS: recvmsg decrypts into it; the
// user-space engine: its AEAD opens the record from the read-ahead into
// it), which saves copying it out of the engine's own buffer.
type IntoReader interface {
	// ReadRecordInto is ReadRecord with b, at least MaxPlaintext bytes,
	// as the buffer: the plaintext of whatever comes next, of any type,
	// is b[:n], under the same rules as ReadRecord's data.
	ReadRecordInto(b []byte) (typ uint8, n int, err error)
}

// Splicer is implemented by an Opener that can move application data from
// the socket to another file descriptor without it entering the process:
// splice(2) out of a kTLS socket, where the kernel opens the records
// (tls.rst; selftests "splice_from_pipe", "splice_to_pipe").
type Splicer interface {
	// SpliceTo moves application data to dst (a stream socket, a regular
	// file or a pipe) until the next record is something else, and returns
	// the bytes moved. readErr is what ReadRecord would have returned at
	// the same place (a timeout, io.EOF, an error wrapping an alert);
	// writeErr is dst's. Both nil: the next record is not application data
	// and the caller reads it with ReadRecord. A writeErr that wraps
	// ErrNotSupported with n == 0 means dst cannot take splice and nothing
	// was done. Bytes taken from the socket that dst did not take are not
	// lost: ReadRecord returns them first, as application data.
	SpliceTo(dst syscall.RawConn) (n int64, readErr, writeErr error)
}

// SocketSender is implemented by a Sealer that can send the bytes a stream
// socket receives without them entering the process: splice(2) from the
// source socket into a pipe and from the pipe into a kTLS socket, where the
// kernel seals the records (tls.rst; selftests "splice_from_pipe";
// docs/ARCHITECTURE.md, "Socket to kTLS: splice").
type SocketSender interface {
	// SpliceFrom moves up to n bytes (n < 0: until the end of the stream)
	// from src, a stream socket, into application data records. It waits
	// for src only while it has moved nothing; once it has, it returns
	// when src has nothing more to read, as a Read would. sent is
	// what the TLS socket took, records what the kernel sealed in the call
	// (read back from it, never estimated from sent). readErr is src's
	// (io.EOF at the end of the stream, a timeout under src's read
	// deadline), after everything read before it was sent; writeErr is the
	// TLS socket's. A writeErr that wraps ErrNotSupported with sent and held
	// 0 means src cannot be spliced from and nothing was done.
	//
	// held is what the call read from src and the TLS socket did not take
	// when writeErr came: the half keeps those bytes and sends them, as
	// application data, before anything else on its next WriteRecords or
	// SpliceFrom, so that a write timeout loses nothing. They were read
	// from src: the caller accounts for them (as taken from src, and as
	// records still to seal), or counts them lost once the direction is
	// broken and nothing can be sent anyway.
	SpliceFrom(src syscall.RawConn, n int64) (sent int64, held int, records uint64, readErr, writeErr error)
}

// Checker is implemented by an engine that can tell, without side effects
// (from its suite table and cached feature probes), whether it can serve a
// direction. The selector uses the answer to order candidates; a nil error is
// not a promise, the constructor still decides.
type Checker interface {
	Check(tx bool, version, suite uint16) error
}

// Reporter is implemented by a half whose engine can turn out to be another
// than the one that installed it: the nic engine installs kTLS and then asks
// the kernel whether the device took the socket; when it did not, the half
// is plain kernel kTLS and says so (docs/ARCHITECTURE.md, the engine table: "verified
// per socket, else it is plain kernel"). The connection reports Engine's
// name, and its reason after the candidate's.
type Reporter interface {
	Engine() (name, reason string)
}

// Accelerator is implemented by an engine that is worth choosing only where
// a hardware engine does its crypto (afalg: docs/ARCHITECTURE.md, "only where a
// hardware crypto engine serves gcm(aes) and kTLS is missing"). Hardware
// says, from cached facts and without side effects, whether one serves the
// suite, and names it ("gcm-aes-caam") or says why not.
type Accelerator interface {
	Hardware(version, suite uint16) (ok bool, what string)
}

// Backend is one engine.
type Backend interface {
	// Name is one of the names above.
	Name() string
	// NewSealer installs the engine on the TX direction of l. An error that
	// wraps ErrNotSupported means nothing was done.
	NewSealer(l Link, p Params) (Sealer, error)
	// NewOpener installs the engine on the RX direction of l. An error that
	// wraps ErrNotSupported means nothing was done.
	NewOpener(l Link, p Params) (Opener, error)
}
