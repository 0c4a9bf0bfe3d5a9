package testenv

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
)

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// From include/uapi/linux/tls.h; golang.org/x/sys/unix has SOL_TLS and
// TCP_ULP but not these.
const (
	tlsTX = 1 // TLS_TX
	tlsRX = 2 // TLS_RX

	tlsCipherAESGCM128        = 51 // TLS_CIPHER_AES_GCM_128
	tlsCipherAESGCM256        = 52 // TLS_CIPHER_AES_GCM_256
	tlsCipherChaCha20Poly1305 = 54 // TLS_CIPHER_CHACHA20_POLY1305
)

// kernelCipher describes the crypto_info struct of one kernel cipher type:
// struct tls_crypto_info {u16 version; u16 cipher_type}, then iv, key, salt
// and rec_seq[8] (include/uapi/linux/tls.h).
type kernelCipher struct {
	typ                    uint16
	ivLen, keyLen, saltLen int
}

func (c kernelCipher) cryptoInfo(version uint16, keyByte byte) []byte {
	b := make([]byte, 4+c.ivLen+c.keyLen+c.saltLen+8)
	binary.NativeEndian.PutUint16(b[0:], version)
	binary.NativeEndian.PutUint16(b[2:], c.typ)
	copy(b[4+c.ivLen:], bytes.Repeat([]byte{keyByte}, c.keyLen))
	return b
}

// kernelCipherOf maps a crypto/tls AEAD cipher suite to the kernel's cipher
// type; the same cipher serves TLS 1.2 and TLS 1.3.
func kernelCipherOf(suite uint16) (kernelCipher, bool) {
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_GCM_SHA256:
		return kernelCipher{tlsCipherAESGCM128, 8, 16, 4}, true
	case tls.TLS_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_RSA_WITH_AES_256_GCM_SHA384:
		return kernelCipher{tlsCipherAESGCM256, 8, 32, 4}, true
	case tls.TLS_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256:
		return kernelCipher{tlsCipherChaCha20Poly1305, 12, 32, 0}, true
	}
	return kernelCipher{}, false
}

// ProbeKTLS checks that kernel TLS works for TLS 1.2 with AES-128-GCM, the
// oldest and most common case: it is ProbeKTLSWith for that suite.
func ProbeKTLS() error {
	return ProbeKTLSWith(tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
}

// ProbeKTLSWith checks that kernel TLS works on this kernel for a TLS version
// and an AEAD cipher suite (crypto/tls's constants) by doing it: on a
// connected loopback TCP pair it attaches the "tls" ULP to both ends, installs
// keys with TLS_TX and TLS_RX on both, and sends a message each way through
// the kernel's record layer. It returns nil when all of that works; an error
// wrapping [backend.ErrNotSupported] when the kernel has no tls ULP (ENOENT
// from TCP_ULP, Documentation/networking/tls.rst) or cannot allocate the
// cipher (ENOENT from TLS_TX or TLS_RX: a crypto module is missing); any
// other error when something else broke.
//
// It is the harness's own check of the VM, independent of the project's
// feature probes, so that a bug there cannot hide a missing module.
func ProbeKTLSWith(version, suite uint16) error {
	kc, ok := kernelCipherOf(suite)
	if !ok {
		return fmt.Errorf("testenv: no kernel cipher for suite %s", tls.CipherSuiteName(suite))
	}
	if version != tls.VersionTLS12 && version != tls.VersionTLS13 {
		return fmt.Errorf("testenv: kTLS has no TLS version %#04x", version)
	}
	client, server, err := loopbackPair()
	if err != nil {
		return fmt.Errorf("testenv: kTLS probe: %w", err)
	}
	defer client.Close()
	defer server.Close()

	for _, c := range []*net.TCPConn{client, server} {
		err := setsockopt(c, unix.IPPROTO_TCP, unix.TCP_ULP, []byte("tls"))
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("testenv: setsockopt(TCP_ULP, \"tls\"): %w (%w)", backend.ErrNotSupported, err)
		}
		if err != nil {
			return fmt.Errorf("testenv: setsockopt(TCP_ULP, \"tls\"): %w", err)
		}
	}
	// One key per direction; the values do not matter, both ends agree.
	c2s, s2c := kc.cryptoInfo(version, 1), kc.cryptoInfo(version, 2)
	steps := []struct {
		conn *net.TCPConn
		opt  int
		info []byte
		name string
	}{
		{client, tlsTX, c2s, "client TLS_TX"},
		{server, tlsRX, c2s, "server TLS_RX"},
		{server, tlsTX, s2c, "server TLS_TX"},
		{client, tlsRX, s2c, "client TLS_RX"},
	}
	what := fmt.Sprintf("%s %s", tls.VersionName(version), tls.CipherSuiteName(suite))
	for _, s := range steps {
		err := setsockopt(s.conn, unix.SOL_TLS, s.opt, s.info)
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("testenv: setsockopt(SOL_TLS, %s) for %s: %w (%w)", s.name, what, backend.ErrNotSupported, err)
		}
		if err != nil {
			return fmt.Errorf("testenv: setsockopt(SOL_TLS, %s) for %s: %w", s.name, what, err)
		}
	}
	if err := exchange(client, server, "ping through kTLS"); err != nil {
		return fmt.Errorf("testenv: kTLS %s, client to server: %w", what, err)
	}
	if err := exchange(server, client, "pong through kTLS"); err != nil {
		return fmt.Errorf("testenv: kTLS %s, server to client: %w", what, err)
	}
	return nil
}

func loopbackPair() (client, server *net.TCPConn, err error) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return nil, nil, err
	}
	if err := ln.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		client.Close()
		return nil, nil, err
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return client, server, nil
}

func setsockopt(c *net.TCPConn, level, opt int, value []byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), level, opt, string(value))
	}); err != nil {
		return err
	}
	return serr
}

// exchange writes msg on from and reads it back on to, within a deadline:
// with kTLS on both ends the bytes on the wire are a TLS record, so getting
// msg back means the kernel sealed and opened it.
func exchange(from, to *net.TCPConn, msg string) error {
	deadline := time.Now().Add(10 * time.Second)
	if err := from.SetDeadline(deadline); err != nil {
		return err
	}
	if err := to.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := from.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(to, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("read %q, want %q", got, msg)
	}
	return nil
}

// afalgRestrictFile is the sysctl with which Linux 7.3 limits AF_ALG (Eric
// Biggers, "crypto: af_alg - Add af_alg_restrict sysctl, defaulting to 1";
// Documentation/admin-guide/sysctl/crypto.rst): 0 unrestricted; 1, the
// default, an allowlist, whose only AEAD is ccm(aes), so that binding
// gcm(aes) fails with ENOENT; 2, AF_ALG disabled (EAFNOSUPPORT). The af_alg
// module registers it when it loads.
const afalgRestrictFile = "/proc/sys/crypto/af_alg_restrict"

// AFALGRestriction returns the value of /proc/sys/crypto/af_alg_restrict, 0
// where the kernel has no such sysctl (before 7.3, or af_alg not loaded):
// AF_ALG unrestricted.
func AFALGRestriction() int {
	b, err := os.ReadFile(afalgRestrictFile)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// ProbeAFALG checks that the kernel crypto API serves gcm(aes) to user space
// through an AF_ALG "aead" socket: socket, bind, setkey, then one encryption
// whose output is compared with crypto/cipher's AES-GCM
// (Documentation/crypto/userspace-if.rst; the buffer layout is in
// docs/ARCHITECTURE.md, AF_ALG). It returns an error
// wrapping [backend.ErrNotSupported] when the kernel has no AF_ALG
// (EAFNOSUPPORT) or refuses gcm(aes) (ENOENT from bind: no aead type, no
// gcm(aes), or the af_alg_restrict allowlist of Linux 7.3+).
func ProbeAFALG() error {
	tfm, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		return fmt.Errorf("testenv: socket(AF_ALG)%s: %w (%w)", restrictNote(), backend.ErrNotSupported, err)
	}
	if err != nil {
		return fmt.Errorf("testenv: socket(AF_ALG): %w", err)
	}
	defer unix.Close(tfm)
	err = unix.Bind(tfm, &unix.SockaddrALG{Type: "aead", Name: "gcm(aes)"})
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("testenv: bind(AF_ALG aead gcm(aes))%s: %w (%w)", restrictNote(), backend.ErrNotSupported, err)
	}
	if err != nil {
		return fmt.Errorf("testenv: bind(AF_ALG aead gcm(aes)): %w", err)
	}
	key := bytes.Repeat([]byte{0x42}, 16)
	if err := unix.SetsockoptString(tfm, unix.SOL_ALG, unix.ALG_SET_KEY, string(key)); err != nil {
		return fmt.Errorf("testenv: setsockopt(ALG_SET_KEY): %w", err)
	}
	if err := afalgSealMatches(tfm, key); err != nil {
		return fmt.Errorf("testenv: AF_ALG gcm(aes) encryption: %w", err)
	}
	return nil
}

// restrictNote explains a refusal by af_alg_restrict.
func restrictNote() string {
	if r := AFALGRestriction(); r != 0 {
		return fmt.Sprintf(" (%s is %d)", afalgRestrictFile, r)
	}
	return ""
}

// afalgSealMatches encrypts one record-sized message through an op socket of
// tfm and compares it with crypto/cipher's result.
func afalgSealMatches(tfm int, key []byte) error {
	// unix.Accept cannot be used: it passes an address buffer, and AF_ALG op
	// sockets have no name, so the kernel fails the accept (x/sys docs).
	opfd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(tfm), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return fmt.Errorf("accept: %w", errno)
	}
	op := int(opfd)
	defer unix.Close(op)

	nonce := []byte("twelve bytes")
	aad := []byte("thirteen byte") // the size of a TLS 1.2 additional data
	plaintext := []byte("a record's worth of plaintext, sealed by the kernel")

	var oob []byte
	oob = appendCmsg(oob, unix.ALG_SET_OP, binary.NativeEndian.AppendUint32(nil, unix.ALG_OP_ENCRYPT))
	// struct af_alg_iv { __u32 ivlen; __u8 iv[]; }
	oob = appendCmsg(oob, unix.ALG_SET_IV, append(binary.NativeEndian.AppendUint32(nil, uint32(len(nonce))), nonce...))
	oob = appendCmsg(oob, unix.ALG_SET_AEAD_ASSOCLEN, binary.NativeEndian.AppendUint32(nil, uint32(len(aad))))
	in := append(append([]byte{}, aad...), plaintext...)
	if err := unix.Sendmsg(op, in, oob, nil, 0); err != nil {
		return fmt.Errorf("sendmsg: %w", err)
	}
	// The output is AAD ‖ ciphertext ‖ tag; a shorter buffer would make the
	// kernel process only a prefix.
	out := make([]byte, len(in)+16)
	n, err := unix.Read(op, out)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	want := gcm.Seal(append([]byte{}, aad...), nonce, plaintext, aad)
	if !bytes.Equal(out[:n], want) {
		return fmt.Errorf("kernel output %x differs from crypto/cipher's %x", out[:n], want)
	}
	return nil
}

// appendCmsg appends one SOL_ALG control message, laid out as the kernel's
// CMSG_* macros do.
func appendCmsg(b []byte, typ int, data []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(len(data)))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level = unix.SOL_ALG
	h.Type = int32(typ)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[start+unix.CmsgLen(0):], data)
	return b
}

// KTLSRecSeq returns the kernel's record sequence number of one direction of
// a kTLS socket: getsockopt(SOL_TLS, TLS_TX or TLS_RX) returns the whole
// crypto_info, whose last 8 bytes are rec_seq, big-endian (tls.rst; the
// selftest "getsockopt"). The key it also returns is zeroed at once.
func KTLSRecSeq(c net.Conn, tx bool) (uint64, error) {
	sc, ok := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return 0, fmt.Errorf("testenv: %T has no socket", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	opt := tlsRX
	if tx {
		opt = tlsTX
	}
	var buf [64]byte
	defer clear(buf[:])
	get := func(size int) error {
		n := uint32(size)
		var errno syscall.Errno
		if err := rc.Control(func(fd uintptr) {
			_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_TLS, uintptr(opt),
				uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		}); err != nil {
			return err
		}
		if errno != 0 {
			return fmt.Errorf("testenv: getsockopt(SOL_TLS, %d): %w", opt, errno)
		}
		if int(n) != size {
			return fmt.Errorf("testenv: getsockopt(SOL_TLS, %d) returned %d bytes, want %d", opt, n, size)
		}
		return nil
	}
	// The kernel takes either the 4-byte header or the exact size of the
	// cipher's struct (do_tls_getsockopt_conf), so: the header first.
	if err := get(4); err != nil {
		return 0, err
	}
	var size int
	switch binary.NativeEndian.Uint16(buf[2:]) {
	case tlsCipherAESGCM128:
		size = 4 + 8 + 16 + 4 + 8
	case tlsCipherAESGCM256:
		size = 4 + 8 + 32 + 4 + 8
	case tlsCipherChaCha20Poly1305:
		size = 4 + 12 + 32 + 8
	default:
		return 0, fmt.Errorf("testenv: getsockopt(SOL_TLS, %d): cipher type %d", opt, binary.NativeEndian.Uint16(buf[2:]))
	}
	if err := get(size); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(buf[size-8 : size]), nil
}

// TLSStat reads /proc/net/tls_stat, the kernel's kTLS counters for this
// network namespace (TlsTxSw, TlsRxSw, TlsCurrTxSw, TlsDecryptError, ...).
func TLSStat() (map[string]int64, error) { return TLSStatFile("/proc/net/tls_stat") }

// TLSStatFile reads a tls_stat file: /proc/<pid>/net/tls_stat holds the
// counters of that process's network namespace.
func TLSStatFile(file string) (map[string]int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := make(map[string]int64)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("testenv: /proc/net/tls_stat: %q", line)
		}
		m[f[0]] = v
	}
	return m, nil
}
