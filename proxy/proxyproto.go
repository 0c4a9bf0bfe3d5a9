package proxy

import (
	"encoding/binary"
	"net"
)

// The PROXY protocol, version 2 (haproxy's "proxy-protocol.txt", section
// 2.2, "Binary header format (version 2)"): a 16-byte header, then the
// addresses. Only what a TCP proxy sends is written here: PROXY over TCP
// for an IPv4 or IPv6 client, LOCAL otherwise; no TLVs.
var proxyV2Signature = [12]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}

const (
	// proxyV2Proxy is version 2 (high nibble) and the PROXY command (low
	// nibble): the connection was relayed on behalf of another node.
	proxyV2Proxy = 0x21
	// proxyV2Local is version 2 and the LOCAL command: the receiver uses
	// the connection's own addresses.
	proxyV2Local = 0x20
	// proxyV2TCP4 and proxyV2TCP6 are AF_INET and AF_INET6 (high nibble)
	// with STREAM (low nibble); proxyV2Unspec is AF_UNSPEC, UNSPEC.
	proxyV2TCP4   = 0x11
	proxyV2TCP6   = 0x21
	proxyV2Unspec = 0x00
)

// ProxyHeader returns the PROXY protocol v2 header that tells a backend
// that the connection from src arrived at dst. Two TCP addresses of the
// same family give a PROXY header (family TCP4: 12 address bytes; TCP6:
// 36); anything else (a unix socket, mixed families) gives a LOCAL header
// with no addresses, which the spec tells the receiver to treat as a
// connection with its own addresses.
func ProxyHeader(src, dst net.Addr) []byte {
	s, sok := src.(*net.TCPAddr)
	d, dok := dst.(*net.TCPAddr)
	h := append([]byte(nil), proxyV2Signature[:]...)
	if sok && dok {
		if s4, d4 := s.IP.To4(), d.IP.To4(); s4 != nil && d4 != nil {
			h = append(h, proxyV2Proxy, proxyV2TCP4, 0, 12)
			h = append(h, s4...)
			h = append(h, d4...)
			return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(h, uint16(s.Port)), uint16(d.Port))
		}
		if s16, d16 := s.IP.To16(), d.IP.To16(); s16 != nil && d16 != nil && s.IP.To4() == nil && d.IP.To4() == nil {
			h = append(h, proxyV2Proxy, proxyV2TCP6, 0, 36)
			h = append(h, s16...)
			h = append(h, d16...)
			return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(h, uint16(s.Port)), uint16(d.Port))
		}
	}
	return append(h, proxyV2Local, proxyV2Unspec, 0, 0)
}
