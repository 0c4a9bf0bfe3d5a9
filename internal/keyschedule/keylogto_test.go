package keyschedule

import (
	"bytes"
	"strings"
	"testing"
)

// TestParseKeyLogLineTo: the secret lands at the start of buf and the label
// is the line's own; a secret that is not hex leaves nothing of itself in
// buf.
func TestParseKeyLogLineTo(t *testing.T) {
	random := strings.Repeat("0a", RandomLen)
	line := []byte(LabelClientTraffic0 + " " + random + " " + strings.Repeat("5c", 48) + "\n")
	var r [RandomLen]byte
	var buf [MaxSecretLen]byte
	label, secret, err := ParseKeyLogLineTo(&r, &buf, line)
	if err != nil {
		t.Fatal(err)
	}
	if string(label) != LabelClientTraffic0 || !bytes.Equal(r[:], bytes.Repeat([]byte{0x0a}, RandomLen)) ||
		!bytes.Equal(secret, bytes.Repeat([]byte{0x5c}, 48)) || &secret[0] != &buf[0] {
		t.Fatalf("label %q, random %x, secret %x", label, r, secret)
	}
	clear(buf[:])
	bad := []byte(LabelClientTraffic0 + " " + random + " " + strings.Repeat("5c", 40) + "zz\n")
	if _, _, err := ParseKeyLogLineTo(&r, &buf, bad); err == nil {
		t.Fatal("a secret that is not hex parsed")
	}
	if buf != [MaxSecretLen]byte{} {
		t.Fatal("a failed parse left bytes of the secret")
	}
}
