// Package netlink frames netlink messages and attributes
// (include/uapi/linux/netlink.h) by hand with golang.org/x/sys/unix rather
// than with a netlink library: ktls needs a handful of requests (ethtool's
// FEATURES_GET over generic netlink, the crypto API's GETALG dump, a route
// lookup, a sock_diag query), and a dependency for them would be more code
// than this package. Parsing is in this file, without a build tag, so that
// tests run on every platform against captured messages; the socket is in
// conn_linux.go.
//
// Netlink is in the host's byte order.
package netlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

const (
	HdrLen       = 16     // struct nlmsghdr
	AttrHdrLen   = 4      // struct nlattr
	attrTypeMask = 0x3fff // ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
	FNested      = 0x8000 // NLA_F_NESTED
	MsgError     = 2      // NLMSG_ERROR
	MsgDone      = 3      // NLMSG_DONE
	GenlHdrLen   = 4      // struct genlmsghdr {u8 cmd; u8 version; u16 reserved}
	FRequest     = 0x1    // NLM_F_REQUEST
	FDump        = 0x300  // NLM_F_DUMP (ROOT|MATCH)
	FMulti       = 0x2    // NLM_F_MULTI
	alignTo      = 4      // NLMSG_ALIGNTO
	maxReply     = 1 << 20
)

func Align(n int) int { return (n + alignTo - 1) &^ (alignTo - 1) }

// Msg is one netlink message: its header fields and its payload.
type Msg struct {
	Type, Flags uint16
	Seq         uint32
	Data        []byte
}

// ParseMessages splits a buffer read from a netlink socket into messages.
func ParseMessages(b []byte) ([]Msg, error) {
	var msgs []Msg
	for len(b) >= HdrLen {
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		if n < HdrLen || n > len(b) {
			return msgs, fmt.Errorf("netlink: message of %d bytes in a buffer of %d", n, len(b))
		}
		msgs = append(msgs, Msg{
			Type:  binary.NativeEndian.Uint16(b[4:6]),
			Flags: binary.NativeEndian.Uint16(b[6:8]),
			Seq:   binary.NativeEndian.Uint32(b[8:12]),
			Data:  b[HdrLen:n],
		})
		b = b[min(Align(n), len(b)):]
	}
	return msgs, nil
}

// ErrnoOf returns the error of an NLMSG_ERROR message: nil for an
// acknowledgement (error 0), else the errno (struct nlmsgerr starts with a
// negative errno).
func ErrnoOf(m Msg) (int, error) {
	if len(m.Data) < 4 {
		return 0, errors.New("netlink: short NLMSG_ERROR")
	}
	return -int(int32(binary.NativeEndian.Uint32(m.Data[0:4]))), nil
}

// Attr is one attribute: its type without the flag bits, whether it says it
// is nested, and its payload.
type Attr struct {
	Type   uint16
	Nested bool
	Data   []byte
}

// ParseAttrs splits a run of attributes.
func ParseAttrs(b []byte) ([]Attr, error) {
	var attrs []Attr
	for len(b) >= AttrHdrLen {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		if n < AttrHdrLen || n > len(b) {
			return attrs, fmt.Errorf("netlink: attribute of %d bytes in %d", n, len(b))
		}
		t := binary.NativeEndian.Uint16(b[2:4])
		attrs = append(attrs, Attr{Type: t & attrTypeMask, Nested: t&FNested != 0, Data: b[AttrHdrLen:n]})
		b = b[min(Align(n), len(b)):]
	}
	return attrs, nil
}

func (a Attr) U32() (uint32, bool) {
	if len(a.Data) < 4 {
		return 0, false
	}
	return binary.NativeEndian.Uint32(a.Data), true
}

func (a Attr) U16() (uint16, bool) {
	if len(a.Data) < 2 {
		return 0, false
	}
	return binary.NativeEndian.Uint16(a.Data), true
}

// str returns a NUL-terminated string attribute.
func (a Attr) Str() string { return CString(a.Data) }

// CString returns b up to its first NUL.
func CString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// AppendAttr appends one attribute, padded.
func AppendAttr(b []byte, typ uint16, data []byte) []byte {
	n := AttrHdrLen + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for range Align(n) - n {
		b = append(b, 0)
	}
	return b
}

// NewMessage returns a netlink message with a header for typ, flags and seq
// and the payload.
func NewMessage(typ, flags uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, 0, HdrLen+len(payload))
	b = binary.NativeEndian.AppendUint32(b, uint32(HdrLen+len(payload)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills it
	return append(b, payload...)
}

// AppendU32 appends a u32 attribute in the host's byte order.
func AppendU32(b []byte, typ uint16, v uint32) []byte {
	return AppendAttr(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}

// AppendString appends a NUL-terminated string attribute (NLA_NUL_STRING,
// and what the kernel accepts for NLA_STRING).
func AppendString(b []byte, typ uint16, s string) []byte {
	return AppendAttr(b, typ, append([]byte(s), 0))
}

// AppendNested appends attribute typ, flagged NLA_F_NESTED, holding the
// attributes in inner.
func AppendNested(b []byte, typ uint16, inner []byte) []byte {
	return AppendAttr(b, typ|FNested, inner)
}

// Find returns the first attribute of type typ.
func Find(attrs []Attr, typ uint16) (Attr, bool) {
	for _, a := range attrs {
		if a.Type == typ {
			return a, true
		}
	}
	return Attr{}, false
}

// Generic netlink controller attributes (include/uapi/linux/genetlink.h),
// spelled here so that parsing builds on every platform.
const (
	ctrlAttrFamilyID    = 1   // CTRL_ATTR_FAMILY_ID, u16
	ctrlAttrFamilyName  = 2   // CTRL_ATTR_FAMILY_NAME, string
	ctrlAttrVersion     = 3   // CTRL_ATTR_VERSION, u32
	ctrlAttrMaxAttr     = 5   // CTRL_ATTR_MAXATTR, u32
	ctrlAttrMcastGroups = 7   // CTRL_ATTR_MCAST_GROUPS, nest of nests
	ctrlAttrMcastName   = 1   // CTRL_ATTR_MCAST_GRP_NAME, string
	ctrlAttrMcastID     = 2   // CTRL_ATTR_MCAST_GRP_ID, u32
	FAck                = 0x4 // NLM_F_ACK
)

// Family is what CTRL_CMD_GETFAMILY says about a generic netlink family.
type Family struct {
	ID      uint16
	Name    string
	Version uint32
	// MaxAttr is the family's highest attribute type (CTRL_ATTR_MAXATTR).
	MaxAttr uint32
	// Groups maps each multicast group's name to its id.
	Groups map[string]uint32
}

// ParseFamily reads a CTRL_CMD_GETFAMILY reply's payload (after the
// generic netlink header). Attributes it does not know are skipped.
func ParseFamily(payload []byte) (Family, error) {
	attrs, err := ParseAttrs(payload)
	if err != nil {
		return Family{}, err
	}
	f := Family{Groups: map[string]uint32{}}
	for _, a := range attrs {
		switch a.Type {
		case ctrlAttrFamilyID:
			f.ID, _ = a.U16()
		case ctrlAttrFamilyName:
			f.Name = a.Str()
		case ctrlAttrVersion:
			f.Version, _ = a.U32()
		case ctrlAttrMaxAttr:
			f.MaxAttr, _ = a.U32()
		case ctrlAttrMcastGroups:
			groups, err := ParseAttrs(a.Data)
			if err != nil {
				return f, err
			}
			for _, g := range groups {
				fields, err := ParseAttrs(g.Data)
				if err != nil {
					return f, err
				}
				name, hasName := Find(fields, ctrlAttrMcastName)
				id, hasID := Find(fields, ctrlAttrMcastID)
				if v, ok := id.U32(); hasName && hasID && ok {
					f.Groups[name.Str()] = v
				}
			}
		}
	}
	if f.ID == 0 {
		return f, errors.New("netlink: no family id in the CTRL_CMD_GETFAMILY reply")
	}
	return f, nil
}

// The controller's policy dump (CTRL_CMD_GETPOLICY, Linux 5.8; per
// operation with CTRL_ATTR_OP from 5.12), from include/uapi/linux/genetlink.h.
const (
	ctrlCmdGetPolicy  = 10 // CTRL_CMD_GETPOLICY
	ctrlAttrPolicy    = 8  // CTRL_ATTR_POLICY: nest of policy index -> attribute -> description
	ctrlAttrOpPolicy  = 9  // CTRL_ATTR_OP_POLICY: nest of op -> {DO, DUMP}
	ctrlAttrOp        = 10 // CTRL_ATTR_OP, u32
	ctrlAttrPolicyDo  = 1  // CTRL_ATTR_POLICY_DO, u32 policy index
	maxPolicyMessages = 4096
)

// ParseOpPolicy reads the payloads (after the generic netlink header) of a
// CTRL_CMD_GETPOLICY dump and returns the attribute types that operation
// op's "do" policy accepts, sorted; false where the dump does not say.
func ParseOpPolicy(payloads [][]byte, op uint32) ([]uint16, bool) {
	doIdx, haveDo := uint32(0), false
	policies := map[uint32][]uint16{}
	for _, p := range payloads {
		attrs, err := ParseAttrs(p)
		if err != nil {
			return nil, false
		}
		for _, a := range attrs {
			switch a.Type {
			case ctrlAttrOpPolicy:
				ops, err := ParseAttrs(a.Data)
				if err != nil {
					return nil, false
				}
				for _, o := range ops {
					if uint32(o.Type) != op {
						continue
					}
					fields, err := ParseAttrs(o.Data)
					if err != nil {
						return nil, false
					}
					if d, ok := Find(fields, ctrlAttrPolicyDo); ok {
						doIdx, haveDo = 0, false
						if v, ok := d.U32(); ok {
							doIdx, haveDo = v, true
						}
					}
				}
			case ctrlAttrPolicy:
				idxs, err := ParseAttrs(a.Data)
				if err != nil {
					return nil, false
				}
				for _, idx := range idxs {
					types, err := ParseAttrs(idx.Data)
					if err != nil {
						return nil, false
					}
					for _, t := range types {
						policies[uint32(idx.Type)] = append(policies[uint32(idx.Type)], t.Type)
					}
				}
			}
		}
	}
	if !haveDo {
		return nil, false
	}
	types := policies[doIdx]
	slices.Sort(types)
	return slices.Compact(types), true
}
