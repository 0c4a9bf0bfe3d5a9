//go:build linux

package afalg

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/internal/rawio"

	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/netlink"
)

const (
	nonceLen = keyschedule.NonceLen // the IV of both algorithms: the whole nonce
	tagLen   = keyschedule.TagLen
	// maxAD is the longest additional data a TLS record has: TLS 1.2's
	// 13 bytes (RFC 5246 §6.2.3.3); TLS 1.3's is the 5-byte header.
	maxAD = 13
)

// The control messages of one operation (Documentation/crypto/
// userspace-if.rst; include/uapi/linux/if_alg.h): ALG_SET_OP (u32),
// ALG_SET_IV (struct af_alg_iv {u32 ivlen; u8 iv[]}) and
// ALG_SET_AEAD_ASSOCLEN (u32).
var (
	cmsgU32Space = unix.CmsgSpace(4)
	cmsgIVSpace  = unix.CmsgSpace(4 + nonceLen)
	oobLen       = 2*cmsgU32Space + cmsgIVSpace
)

// errAuth is what Open returns for a record that fails authentication
// (EBADMSG from the kernel); record.Protector turns it into bad_record_mac.
var errAuth = errors.New("afalg: message authentication failed")

var errClosed = fmt.Errorf("afalg: AEAD closed: %w", net.ErrClosed)

// opAEAD is a cipher.AEAD over one AF_ALG operation socket: the key was set
// on its transform when it was made. Seal and Open are one sendmsg and one
// readv each. Not safe for concurrent use: the kernel refuses a second
// writer on an operation socket (EBUSY), and the half's lock serializes.
type opAEAD struct {
	alg string
	f   *os.File // the operation socket, non-blocking, on the netpoller
	rc  syscall.RawConn
	err error // sticky: what broke the last Seal or Open

	oob []byte      // control messages, rebuilt for each operation
	ad  [maxAD]byte // the kernel's copy of the additional data lands here
	buf [2][]byte   // iovecs for sendmsg and readv
	iv  [nonceLen]byte
}

// errnoError shows an errno by name ("EINVAL (invalid argument)") and still
// wraps it.
type errnoError struct{ err error }

func (e errnoError) Error() string { return netlink.ErrnoText(e.err) }
func (e errnoError) Unwrap() error { return e.err }

// dialAEAD opens a transform socket for alg, binds it, sets key and the tag
// length, accepts the operation socket and closes the transform socket,
// which the operation socket keeps alive (crypto/af_alg.c, af_alg_accept
// holds the parent). Every fd is close-on-exec and non-blocking. A refusal
// of socket or bind is a *backend.NotSupportedError; the other errors are
// without the engine's name, which the caller adds as it classifies them
// (the probe: inconclusive; an install: a refusal, nothing was done). key is not
// copied: the kernel keeps it, and the caller zeroes its slice.
func dialAEAD(alg string, key []byte) (*opAEAD, error) {
	if len(key) == 0 {
		return nil, errors.New("empty key")
	}
	tfm, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, socketError(err)
	}
	defer unix.Close(tfm)
	if err := unix.Bind(tfm, &unix.SockaddrALG{Type: "aead", Name: alg}); err != nil {
		return nil, bindError(alg, err)
	}
	// ALG_SET_KEY through the raw system call with the caller's bytes:
	// unix.SetsockoptString would leave a copy of the key in an
	// immutable string.
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(tfm), unix.SOL_ALG, unix.ALG_SET_KEY,
		uintptr(unsafe.Pointer(&key[0])), uintptr(len(key)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("setsockopt(ALG_SET_KEY) for %s with a %d-byte key: %w", alg, len(key), errnoError{errno})
	}
	// ALG_SET_AEAD_AUTHSIZE takes the tag length as optlen, optval NULL
	// (crypto/algif_aead.c, aead_setauthsize; libkcapi does the same).
	// The default is the maximum, 16 for both; set anyway, to be sure.
	_, _, errno = unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(tfm), unix.SOL_ALG, unix.ALG_SET_AEAD_AUTHSIZE, 0, tagLen, 0)
	if errno != 0 {
		return nil, fmt.Errorf("setsockopt(ALG_SET_AEAD_AUTHSIZE, %d) for %s: %w", tagLen, alg, errnoError{errno})
	}
	// accept4 with a NULL address: the operation socket has no name, and
	// the kernel fails an accept that asks for one (which is why
	// unix.Accept4 cannot be used, x/sys's documentation says).
	opfd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(tfm), 0, 0, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0, 0)
	if errno != 0 {
		return nil, fmt.Errorf("accept on the %s transform: %w", alg, errnoError{errno})
	}
	// os.NewFile sees O_NONBLOCK and registers the fd with the netpoller
	// (AF_ALG sockets poll: af_alg_poll): EAGAIN parks the goroutine.
	f := os.NewFile(opfd, "afalg:"+alg)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s operation socket: %w", alg, err)
	}
	// A fresh slice, 8-byte aligned for the cmsghdrs put in it.
	return &opAEAD{alg: alg, f: f, rc: rc, oob: make([]byte, oobLen)}, nil
}

// NonceSize is 12: both algorithms take the whole TLS nonce as their IV.
func (a *opAEAD) NonceSize() int { return nonceLen }

// Overhead is the 16-byte tag.
func (a *opAEAD) Overhead() int { return tagLen }

// Err returns what broke the last Seal or Open; nil if nothing did. It is
// sticky: after it, every call fails.
func (a *opAEAD) Err() error { return a.err }

// Close closes the operation socket.
func (a *opAEAD) Close() error {
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f, a.rc = nil, nil
	if a.err == nil {
		a.err = errClosed
	}
	return err
}

// Seal appends the ciphertext and tag of plaintext to dst, as
// cipher.AEAD.Seal; plaintext may be dst's spare capacity (in place). If
// the kernel fails, the output is zeros and Err says why: the caller must
// not send it.
func (a *opAEAD) Seal(dst, nonce, plaintext, additionalData []byte) []byte {
	ret, out := sliceForAppend(dst, len(plaintext)+tagLen)
	if err := a.do(unix.ALG_OP_ENCRYPT, nonce, additionalData, plaintext, out); err != nil {
		a.err = err
		clear(out)
	}
	return ret
}

// Open authenticates and decrypts ciphertext and appends the plaintext to
// dst, as cipher.AEAD.Open; ciphertext may be dst's spare capacity (in
// place). A record that fails authentication gives errAuth and leaves the
// AEAD usable; any other failure is sticky (Err).
func (a *opAEAD) Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error) {
	if len(ciphertext) < tagLen {
		return nil, errAuth
	}
	ret, out := sliceForAppend(dst, len(ciphertext)-tagLen)
	err := a.do(unix.ALG_OP_DECRYPT, nonce, additionalData, ciphertext, out)
	if errors.Is(err, unix.EBADMSG) {
		// The kernel's output is undefined (userspace-if.rst).
		clear(out)
		return nil, errAuth
	}
	if err != nil {
		a.err = err
		clear(out)
		return nil, err
	}
	return ret, nil
}

// do runs one operation: sendmsg(ad ‖ in) with the control messages and no
// MSG_MORE, which closes the request, then readv(ad ‖ out). Since Linux 4.14
// (commit 72548b093ee3, "crypto: algif_aead - copy AAD from src to dst", and
// still after the 2026 out-of-place revert) the output starts with the
// additional data, so it is read into a scratch buffer. The output buffer
// must be whole: with a shorter one the kernel processes only a prefix.
func (a *opAEAD) do(op uint32, nonce, ad, in, out []byte) error {
	if a.err != nil {
		return a.err
	}
	if len(nonce) != nonceLen {
		return fmt.Errorf("afalg: %s nonce of %d bytes, want %d", a.alg, len(nonce), nonceLen)
	}
	if len(ad) == 0 || len(ad) > maxAD {
		return fmt.Errorf("afalg: %d bytes of additional data, want 1 to %d", len(ad), maxAD)
	}
	copy(a.iv[:], nonce)
	oob := a.control(op, len(ad))

	a.buf[0], a.buf[1] = ad, in
	var n int
	err := cmp.Or(rawio.Write(a.rc, func(fd int) (err error) {
		n, err = unix.SendmsgBuffers(fd, a.buf[:], oob, nil, 0)
		return err
	}))
	a.buf[0], a.buf[1] = nil, nil
	if err != nil {
		return fmt.Errorf("afalg: sendmsg to the %s operation socket: %w", a.alg, errnoError{err})
	}
	if n != len(ad)+len(in) {
		return fmt.Errorf("afalg: sendmsg to the %s operation socket took %d of %d bytes", a.alg, n, len(ad)+len(in))
	}

	a.buf[0], a.buf[1] = a.ad[:len(ad)], out
	err = cmp.Or(rawio.Read(a.rc, func(fd int) (err error) {
		n, err = unix.Readv(fd, a.buf[:])
		return err
	}))
	a.buf[0], a.buf[1] = nil, nil
	if errors.Is(err, unix.EBADMSG) {
		return err
	}
	if err != nil {
		return fmt.Errorf("afalg: reading the %s operation socket: %w", a.alg, errnoError{err})
	}
	if n != len(ad)+len(out) {
		return fmt.Errorf("afalg: the %s operation socket gave %d bytes, want %d", a.alg, n, len(ad)+len(out))
	}
	return nil
}

// control lays out the three control messages in a.oob as the kernel's
// CMSG_* macros do, and returns them.
func (a *opAEAD) control(op uint32, adLen int) []byte {
	b := a.oob
	clear(b)
	off := putCmsg(b, 0, unix.ALG_SET_OP, 4)
	binary.NativeEndian.PutUint32(b[off:], op)
	off = putCmsg(b, cmsgU32Space, unix.ALG_SET_IV, 4+nonceLen)
	binary.NativeEndian.PutUint32(b[off:], nonceLen)
	copy(b[off+4:], a.iv[:])
	off = putCmsg(b, cmsgU32Space+cmsgIVSpace, unix.ALG_SET_AEAD_ASSOCLEN, 4)
	binary.NativeEndian.PutUint32(b[off:], uint32(adLen))
	return b
}

// putCmsg writes a SOL_ALG cmsghdr of typ for dataLen bytes at b[start:]
// and returns the offset of its data.
func putCmsg(b []byte, start, typ, dataLen int) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level = unix.SOL_ALG
	h.Type = int32(typ)
	h.SetLen(unix.CmsgLen(dataLen))
	return start + unix.CmsgLen(0)
}

// sliceForAppend extends in by n bytes, reusing its capacity (as
// crypto/cipher does): head is the whole, tail the new part.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	return head, head[len(in):]
}
