package netlink

import (
	"encoding/binary"
	"slices"
	"testing"
)

func TestParseMessages(t *testing.T) {
	ack := NewMessage(MsgError, 0, 7, make([]byte, 20))
	nack := NewMessage(MsgError, 0, 8, binary.NativeEndian.AppendUint32(make([]byte, 0, 20), uint32(0xfffffffe))) // -ENOENT
	msgs, err := ParseMessages(append(ack, nack...))
	if err != nil || len(msgs) != 2 || msgs[0].Seq != 7 || msgs[1].Seq != 8 {
		t.Fatalf("ParseMessages = %+v, %v", msgs, err)
	}
	if e, err := ErrnoOf(msgs[0]); e != 0 || err != nil {
		t.Errorf("ack: %d, %v", e, err)
	}
	if e, err := ErrnoOf(msgs[1]); e != 2 || err != nil {
		t.Errorf("ENOENT: %d, %v", e, err)
	}
	if _, err := ParseMessages(ack[:len(ack)-1]); err == nil {
		t.Error("a truncated message: no error")
	}
	if _, err := ParseAttrs([]byte{3, 0, 1, 0}); err == nil {
		t.Error("an attribute shorter than its header: no error")
	}
	if _, err := ParseAttrs([]byte{9, 0, 1, 0, 1}); err == nil {
		t.Error("an attribute longer than its buffer: no error")
	}
}

func TestAppendHelpers(t *testing.T) {
	var b []byte
	b = AppendU32(b, 4, 7)
	b = AppendString(b, 3, "lo")
	b = AppendNested(b, 18, AppendString(nil, 1, "veth"))
	attrs, err := ParseAttrs(b)
	if err != nil || len(attrs) != 3 {
		t.Fatalf("ParseAttrs = %+v, %v", attrs, err)
	}
	if a, ok := Find(attrs, 4); !ok {
		t.Error("no attribute 4")
	} else if v, ok := a.U32(); !ok || v != 7 {
		t.Errorf("u32 = %d, %v", v, ok)
	}
	if a, _ := Find(attrs, 3); a.Str() != "lo" {
		t.Errorf("string = %q", a.Str())
	}
	a, _ := Find(attrs, 18)
	inner, err := ParseAttrs(a.Data)
	if !a.Nested || err != nil || len(inner) != 1 || inner[0].Str() != "veth" {
		t.Errorf("nested = %+v, %+v, %v", a, inner, err)
	}
	if _, ok := Find(attrs, 99); ok {
		t.Error("found an attribute that is not there")
	}
}

// FuzzParse: whatever a socket returns, the parsers return and never panic.
func FuzzParse(f *testing.F) {
	f.Add(NewMessage(MsgError, 0, 1, make([]byte, 20)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, _ := ParseMessages(b)
		for _, m := range msgs {
			ErrnoOf(m)
			attrs, _ := ParseAttrs(m.Data)
			for _, a := range attrs {
				a.U16()
				a.U32()
				a.Str()
			}
		}
	})
}

// TestParseFamily reads a constructed CTRL_CMD_GETFAMILY reply with two
// multicast groups and an attribute it does not know.
func TestParseFamily(t *testing.T) {
	var groups []byte
	for i, g := range []struct {
		name string
		id   uint32
	}{{"none", 7}, {"tlshd", 8}} {
		var grp []byte
		grp = AppendU32(grp, ctrlAttrMcastID, g.id)
		grp = AppendString(grp, ctrlAttrMcastName, g.name)
		groups = AppendNested(groups, uint16(i+1), grp)
	}
	var p []byte
	p = AppendAttr(p, ctrlAttrFamilyID, []byte{0x22, 0x00, 0, 0}[:2])
	p = AppendString(p, ctrlAttrFamilyName, "handshake")
	p = AppendU32(p, ctrlAttrVersion, 1)
	p = AppendU32(p, ctrlAttrMaxAttr, 9)
	p = AppendU32(p, 99, 1)
	p = AppendNested(p, ctrlAttrMcastGroups, groups)
	f, err := ParseFamily(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "handshake" || f.Version != 1 || f.MaxAttr != 9 || f.Groups["tlshd"] != 8 || f.Groups["none"] != 7 || f.ID == 0 {
		t.Errorf("ParseFamily = %+v", f)
	}
	if _, err := ParseFamily(AppendString(nil, ctrlAttrFamilyName, "x")); err == nil {
		t.Error("ParseFamily without an id succeeded")
	}
}

// TestParseOpPolicy reads a constructed CTRL_CMD_GETPOLICY dump: op 3's do
// policy is index 1, whose attributes are 1, 2 and 3; index 0 is another
// op's.
func TestParseOpPolicy(t *testing.T) {
	nest := func(typ uint16, inner ...[]byte) []byte {
		var b []byte
		for _, i := range inner {
			b = append(b, i...)
		}
		return AppendNested(nil, typ, b)
	}
	ops := nest(ctrlAttrOpPolicy, nest(2, AppendU32(nil, ctrlAttrPolicyDo, 0)), nest(3, AppendU32(nil, ctrlAttrPolicyDo, 1)))
	pol0 := nest(ctrlAttrPolicy, nest(0, nest(1, AppendU32(nil, 1, 3))))
	pol1 := nest(ctrlAttrPolicy, nest(1, nest(3, AppendU32(nil, 1, 3)), nest(1, AppendU32(nil, 1, 3)), nest(2, AppendU32(nil, 1, 3))))
	got, ok := ParseOpPolicy([][]byte{ops, pol0, pol1}, 3)
	if !ok || !slices.Equal(got, []uint16{1, 2, 3}) {
		t.Errorf("ParseOpPolicy(3) = %v, %v", got, ok)
	}
	if _, ok := ParseOpPolicy([][]byte{pol0, pol1}, 3); ok {
		t.Error("a dump without the op's policy index told")
	}
	if _, ok := ParseOpPolicy([][]byte{{5, 0}}, 3); ok {
		t.Error("a malformed dump told")
	}
}
