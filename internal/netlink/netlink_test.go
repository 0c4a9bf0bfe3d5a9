package netlink

import (
	"encoding/binary"
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
