package main

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Netlink message and attribute framing (include/uapi/linux/netlink.h), by
// hand with golang.org/x/sys/unix rather than with a netlink library: the
// doctor needs two requests (ethtool's FEATURES_GET over generic netlink and
// the crypto API's GETALG dump), and a dependency for them would be more
// code than this file. Parsing is here, without a build tag, so that the
// tests run on every platform against captured messages; the sockets are in
// netlink_linux.go.
//
// Netlink is in the host's byte order.

const (
	nlmsgHdrLen   = 16     // struct nlmsghdr
	nlaHdrLen     = 4      // struct nlattr
	nlaTypeMask   = 0x3fff // ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
	nlaFNested    = 0x8000 // NLA_F_NESTED
	nlmsgError    = 2      // NLMSG_ERROR
	nlmsgDone     = 3      // NLMSG_DONE
	genlHdrLen    = 4      // struct genlmsghdr {u8 cmd; u8 version; u16 reserved}
	nlmFRequest   = 0x1    // NLM_F_REQUEST
	nlmFDump      = 0x300  // NLM_F_DUMP (ROOT|MATCH)
	nlmFMulti     = 0x2    // NLM_F_MULTI
	nlmsgAlignTo  = 4      // NLMSG_ALIGNTO
	nlmsgMaxReply = 1 << 20
)

func nlAlign(n int) int { return (n + nlmsgAlignTo - 1) &^ (nlmsgAlignTo - 1) }

// nlMsg is one netlink message: its header fields and its payload.
type nlMsg struct {
	typ, flags uint16
	seq        uint32
	data       []byte
}

// parseMessages splits a buffer read from a netlink socket into messages.
func parseMessages(b []byte) ([]nlMsg, error) {
	var msgs []nlMsg
	for len(b) >= nlmsgHdrLen {
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		if n < nlmsgHdrLen || n > len(b) {
			return msgs, fmt.Errorf("netlink: message of %d bytes in a buffer of %d", n, len(b))
		}
		msgs = append(msgs, nlMsg{
			typ:   binary.NativeEndian.Uint16(b[4:6]),
			flags: binary.NativeEndian.Uint16(b[6:8]),
			seq:   binary.NativeEndian.Uint32(b[8:12]),
			data:  b[nlmsgHdrLen:n],
		})
		b = b[min(nlAlign(n), len(b)):]
	}
	return msgs, nil
}

// errnoOf returns the error of an NLMSG_ERROR message: nil for an
// acknowledgement (error 0), else the errno (struct nlmsgerr starts with a
// negative errno).
func errnoOf(m nlMsg) (int, error) {
	if len(m.data) < 4 {
		return 0, errors.New("netlink: short NLMSG_ERROR")
	}
	return -int(int32(binary.NativeEndian.Uint32(m.data[0:4]))), nil
}

// nlAttr is one attribute: its type without the flag bits, whether it says it
// is nested, and its payload.
type nlAttr struct {
	typ    uint16
	nested bool
	data   []byte
}

// parseAttrs splits a run of attributes.
func parseAttrs(b []byte) ([]nlAttr, error) {
	var attrs []nlAttr
	for len(b) >= nlaHdrLen {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		if n < nlaHdrLen || n > len(b) {
			return attrs, fmt.Errorf("netlink: attribute of %d bytes in %d", n, len(b))
		}
		t := binary.NativeEndian.Uint16(b[2:4])
		attrs = append(attrs, nlAttr{typ: t & nlaTypeMask, nested: t&nlaFNested != 0, data: b[nlaHdrLen:n]})
		b = b[min(nlAlign(n), len(b)):]
	}
	return attrs, nil
}

func (a nlAttr) u32() (uint32, bool) {
	if len(a.data) < 4 {
		return 0, false
	}
	return binary.NativeEndian.Uint32(a.data), true
}

func (a nlAttr) u16() (uint16, bool) {
	if len(a.data) < 2 {
		return 0, false
	}
	return binary.NativeEndian.Uint16(a.data), true
}

// str returns a NUL-terminated string attribute.
func (a nlAttr) str() string { return cString(a.data) }

// cString returns b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// appendAttr appends one attribute, padded.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	n := nlaHdrLen + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for range nlAlign(n) - n {
		b = append(b, 0)
	}
	return b
}

// newMessage returns a netlink message with a header for typ, flags and seq
// and the payload.
func newMessage(typ, flags uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, 0, nlmsgHdrLen+len(payload))
	b = binary.NativeEndian.AppendUint32(b, uint32(nlmsgHdrLen+len(payload)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills it
	return append(b, payload...)
}
