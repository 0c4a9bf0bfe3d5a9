// Package kernel is the Linux kernel TLS engine (kTLS): after the handshake,
// the socket gets the "tls" upper-layer protocol (TCP_ULP) and one key per
// direction (setsockopt SOL_TLS TLS_TX / TLS_RX), and from then on the kernel
// seals what the process writes and opens what it reads
// (Documentation/networking/tls.rst).
//
// What the kernel brings: records never cross into user space on the way
// out, so a file sent with sendfile(2) is encrypted in the kernel and never
// copied through the process (its Sealer is a backend.FileSender); the crypto uses the
// kernel's AES-GCM and ChaCha20-Poly1305, accelerated where the CPU allows.
//
// Everything goes through the Go netpoller (syscall.RawConn): writes with
// write(2) and sendmsg(2), control records (alerts, TLS 1.3 handshake
// messages) with a TLS_SET_RECORD_TYPE cmsg, and every read with recvmsg(2)
// and room for the TLS_GET_RECORD_TYPE cmsg, so the kernel never answers EIO
// for a control record read without one (the trap rustls/ktls#24 fell into).
// Deadlines set on the connection apply as to any socket.
//
// Which versions, suites, directions and whether the kernel can take a new
// key (TLS 1.3 KeyUpdate, Linux 6.14, commit 47069594e67e) are found by
// probing: the real setsockopt on a connected loopback pair, cached when the
// answer is conclusive ([Probe]).
//
// Package backend/nicoffload decorates this engine (kTLS with TLS_HW is kTLS
// whose device the kernel picks): it uses New and Probe, and this package
// imports no other engine. That one-way import is the only one between
// engines (docs/ARCHITECTURE.md, Rooms); keep what nic needs to those two.
//
// The engine exists on Linux only; elsewhere New returns an engine whose
// every answer is a *backend.NotSupportedError that names the platform.
package kernel

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
)

// Options change how the engine installs a connection.
type Options struct {
	// RXExpectNoPad sets TLS_RX_EXPECT_NO_PAD on TLS 1.3 receiving sockets
	// (Linux 6.0, commit 88527790c079): the kernel decrypts straight into
	// the reader's buffer on the bet that the peer does not pad its records.
	// A padding peer makes every such record cost two decryptions; the
	// kernel's documentation calls it "safe to enable only if the remote
	// end is trusted, otherwise it is an attack vector to doubling the TLS
	// processing cost". Off unless a program asks for it; a kernel without
	// the option ignores the request.
	RXExpectNoPad bool
}

// From include/uapi/linux/tls.h. golang.org/x/sys/unix has SOL_TLS and
// TCP_ULP but none of these; the cipher types are in package keyschedule's
// suite table, with the other facts of each suite.
const (
	optTX             = 1 // TLS_TX
	optRX             = 2 // TLS_RX
	optRXExpectNoPad  = 4 // TLS_RX_EXPECT_NO_PAD
	cmsgSetRecordType = 1 // TLS_SET_RECORD_TYPE
	cmsgGetRecordType = 2 // TLS_GET_RECORD_TYPE
)

// cipher is a kernel cipher type and the layout of its crypto_info.
type cipher = keyschedule.KernelCipher

// lookup returns the kernel cipher that serves version and suite: the one
// of the suite table (the same cipher type serves TLS 1.2 and TLS 1.3).
func lookup(version, suite uint16) (cipher, error) {
	if version != tls.VersionTLS12 && version != tls.VersionTLS13 {
		return cipher{}, backend.NotSupported(backend.Kernel, "protocol version %#04x", version)
	}
	s, ok := keyschedule.Lookup(version, suite)
	if !ok {
		return cipher{}, backend.NotSupported(backend.Kernel, "no kTLS cipher for %s", tls.CipherSuiteName(suite))
	}
	return s.Kernel, nil
}

// cryptoInfo builds the crypto_info of p for setsockopt(TLS_TX/TLS_RX). The
// caller zeroes it once the kernel has it (docs/ARCHITECTURE.md, invariants).
//
// How the fields are filled (include/uapi/linux/tls.h; the kernel's
// tls_set_sw_offload and tls_advance_record_sn):
//
//   - rec_seq is the sequence number of the next record, big-endian: the
//     kernel increments it per record and uses it in the nonce and the AAD;
//   - TLS 1.3 AES-GCM: the 12-byte IV splits into salt = iv[0:4] and
//     iv = iv[4:12], and the kernel XORs the sequence number in (RFC 8446
//     §5.3);
//   - TLS 1.2 AES-GCM: salt is the 4-byte implicit part (RFC 5288 §3), and
//     iv is the explicit nonce of the next record, which the kernel writes
//     into each record and increments per record on its own counter. crypto/tls
//     uses the sequence number as the explicit nonce and has sent its Finished
//     with nonce 0 already, so iv must be the next sequence number, never a
//     fresh 0: a 0 would reuse the Finished's nonce under the same key
//     (docs/ARCHITECTURE.md step 4; the bug of secure-for-ai/goktls);
//   - ChaCha20-Poly1305, both versions: iv is the whole 12-byte IV, there is
//     no salt (RFC 7905 §2, RFC 8446 §5.3).
func cryptoInfo(c cipher, p backend.Params) ([]byte, error) {
	if len(p.Key) != c.KeyLen {
		return nil, fmt.Errorf("kernel: %s key of %d bytes, want %d", c.Name, len(p.Key), c.KeyLen)
	}
	b := make([]byte, c.InfoLen())
	// The u16 fields of struct tls_crypto_info are in the machine's byte
	// order; rec_seq and the explicit nonce are big-endian counters.
	binary.NativeEndian.PutUint16(b[0:], p.Version)
	binary.NativeEndian.PutUint16(b[2:], c.Type)
	iv := b[4 : 4+c.IVLen]
	key := b[4+c.IVLen : 4+c.IVLen+c.KeyLen]
	salt := b[4+c.IVLen+c.KeyLen : 4+c.IVLen+c.KeyLen+c.SaltLen]
	recSeq := b[4+c.IVLen+c.KeyLen+c.SaltLen:]
	copy(key, p.Key)
	binary.BigEndian.PutUint64(recSeq, p.Seq)
	switch {
	case c.SaltLen == 0: // ChaCha20-Poly1305
		if len(p.IV) != c.IVLen {
			clear(b)
			return nil, fmt.Errorf("kernel: %s IV of %d bytes, want %d", c.Name, len(p.IV), c.IVLen)
		}
		copy(iv, p.IV)
	case p.Version == tls.VersionTLS13:
		if len(p.IV) != c.SaltLen+c.IVLen {
			clear(b)
			return nil, fmt.Errorf("kernel: TLS 1.3 %s IV of %d bytes, want %d", c.Name, len(p.IV), c.SaltLen+c.IVLen)
		}
		copy(salt, p.IV[:c.SaltLen])
		copy(iv, p.IV[c.SaltLen:])
	default: // TLS 1.2 AES-GCM
		if len(p.IV) != c.SaltLen {
			clear(b)
			return nil, fmt.Errorf("kernel: TLS 1.2 %s salt of %d bytes, want %d", c.Name, len(p.IV), c.SaltLen)
		}
		copy(salt, p.IV)
		binary.BigEndian.PutUint64(iv, p.Seq)
	}
	return b, nil
}
