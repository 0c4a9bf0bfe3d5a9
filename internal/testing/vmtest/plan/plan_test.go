package plan

import "testing"

func TestMarkersRoundTrip(t *testing.T) {
	const nonce = "c0ffee42"
	for _, tc := range []struct {
		line string
		want Marker
	}{
		{BeginLine(nonce, "internal/testing/testenv"), Marker{Kind: Begin, Name: "internal/testing/testenv"}},
		{EndLine(nonce, ".", 1, 12.34), Marker{Kind: End, Name: ".", Exit: 1, Seconds: 12.3}},
		{EndLine(nonce, SelfCheck, -1, 0), Marker{Kind: End, Name: SelfCheck, Exit: -1}},
		{DoneLine(nonce), Marker{Kind: Done}},
		{InfoLine(nonce, "gcm(aes)", "generic-gcm-aesni (aesni_intel, priority 400)"),
			Marker{Kind: Info, Key: "gcm(aes)", Value: "generic-gcm-aesni (aesni_intel, priority 400)"}},
		// A kernel message without a newline ahead of the marker.
		{"[   12.5] tls: something" + DoneLine(nonce) + "\r", Marker{Kind: Done}},
	} {
		got, ok := Parse(tc.line, nonce)
		if !ok || got != tc.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tc.line, got, ok, tc.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	const nonce = "c0ffee42"
	for _, line := range []string{
		"",
		"--- PASS: TestX (0.00s)",
		DoneLine("otherboot"),
		BeginLine(nonce, "a") + " extra",
		"==vmtest== c0ffee42 end x exit=zero seconds=1",
		"==vmtest== c0ffee42 end x exit=0",
		"==vmtest== c0ffee42 bogus",
		"==vmtest== c0ffee42",
	} {
		if m, ok := Parse(line, nonce); ok {
			t.Errorf("Parse(%q) = %+v, want no marker", line, m)
		}
	}
	if _, ok := Parse(DoneLine(""), ""); ok {
		t.Errorf("an empty nonce matched")
	}
}
