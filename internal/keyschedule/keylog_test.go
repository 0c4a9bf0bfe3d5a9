package keyschedule

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

const (
	testRandomHex = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"
	// A recognisable "secret": no error message may contain it, nor any
	// piece of it.
	testSecretHex = "deadbeefcafebabe0123456789abcdeffedcba9876543210deadbeefcafebabe"
)

func TestParseKeyLogLine(t *testing.T) {
	for _, label := range []string{
		LabelClientRandom, LabelClientHandshake, LabelServerHandshake,
		LabelClientTraffic0, LabelServerTraffic0, "EXPORTER_SECRET",
	} {
		for _, nl := range []string{"\n", ""} {
			line := label + " " + testRandomHex + " " + testSecretHex + nl
			e, err := ParseKeyLogLine([]byte(line))
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			if e.Label != label {
				t.Errorf("label %q, want %q", e.Label, label)
			}
			if fmt.Sprintf("%x", e.ClientRandom) != testRandomHex {
				t.Errorf("random %x", e.ClientRandom)
			}
			if fmt.Sprintf("%x", e.Secret) != testSecretHex {
				t.Errorf("secret %x", e.Secret)
			}
		}
	}
	// Upper-case hex decodes too; a 48-byte master secret.
	master := strings.Repeat("AB", 48)
	e, err := ParseKeyLogLine([]byte("CLIENT_RANDOM " + strings.ToUpper(testRandomHex) + " " + master + "\n"))
	if err != nil || len(e.Secret) != 48 || e.Secret[0] != 0xab || e.ClientRandom[31] != 0x20 {
		t.Errorf("upper case: %+v, %v", e, err)
	}
	// The line must not alias the input.
	in := []byte("CLIENT_RANDOM " + testRandomHex + " " + testSecretHex)
	e, _ = ParseKeyLogLine(in)
	clear(in)
	if fmt.Sprintf("%x", e.Secret) != testSecretHex || e.Label != LabelClientRandom {
		t.Error("entry aliases its input")
	}
}

func TestParseKeyLogLineErrors(t *testing.T) {
	r, s := testRandomHex, testSecretHex
	bad := map[string]string{
		"empty":              "",
		"newline only":       "\n",
		"comment":            "# SSL/TLS secrets log file\n",
		"two fields":         "CLIENT_RANDOM " + r + "\n",
		"one field":          "CLIENT_RANDOM\n",
		"four fields":        "CLIENT_RANDOM " + r + " " + s + " extra\n",
		"double space":       "CLIENT_RANDOM  " + r + " " + s + "\n",
		"tab":                "CLIENT_RANDOM\t" + r + " " + s + "\n",
		"leading space":      " CLIENT_RANDOM " + r + " " + s + "\n",
		"trailing space":     "CLIENT_RANDOM " + r + " " + s + " \n",
		"CRLF":               "CLIENT_RANDOM " + r + " " + s + "\r\n",
		"two newlines":       "CLIENT_RANDOM " + r + " " + s + "\n\n",
		"lower label":        "client_random " + r + " " + s + "\n",
		"label punct":        "CLIENT-RANDOM " + r + " " + s + "\n",
		"long label":         strings.Repeat("A", 65) + " " + r + " " + s + "\n",
		"short random":       "CLIENT_RANDOM " + r[:62] + " " + s + "\n",
		"long random":        "CLIENT_RANDOM " + r + "00 " + s + "\n",
		"random not hex":     "CLIENT_RANDOM " + r[:63] + "g " + s + "\n",
		"secret not hex":     "CLIENT_RANDOM " + r + " " + s[:63] + "z\n",
		"secret odd":         "CLIENT_RANDOM " + r + " " + s[:63] + "\n",
		"secret empty":       "CLIENT_RANDOM " + r + " \n",
		"secret too long":    "CLIENT_RANDOM " + r + " " + strings.Repeat("ab", MaxSecretLen+1) + "\n",
		"secret 0x":          "CLIENT_RANDOM " + r + " 0x" + s[2:] + "\n",
		"secret with nul":    "CLIENT_RANDOM " + r + " " + s[:62] + "\x00\x00\n",
		"secret with utf-8":  "CLIENT_RANDOM " + r + " " + s[:60] + "é\n",
		"label only newline": "CLIENT_RANDOM\n\n",
	}
	for name, line := range bad {
		_, err := ParseKeyLogLine([]byte(line))
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !errors.Is(err, ErrKeyLogLine) {
			t.Errorf("%s: %v does not wrap ErrKeyLogLine", name, err)
		}
		checkNoSecret(t, name, err.Error())
	}
}

// checkNoSecret fails if msg contains any 8-hex-digit piece of testSecretHex.
func checkNoSecret(t *testing.T, name, msg string) {
	t.Helper()
	low := strings.ToLower(msg)
	for i := 0; i+8 <= len(testSecretHex); i++ {
		if strings.Contains(low, testSecretHex[i:i+8]) {
			t.Errorf("%s: error %q leaks secret bytes", name, msg)
			return
		}
	}
	if !strings.HasPrefix(msg, "keyschedule: ") {
		t.Errorf("%s: error %q lacks the package prefix", name, msg)
	}
}

func FuzzParseKeyLogLine(f *testing.F) {
	r, s := testRandomHex, testSecretHex
	for _, seed := range []string{
		"CLIENT_RANDOM " + r + " " + strings.Repeat("ab", 48) + "\n",
		LabelClientHandshake + " " + r + " " + s + "\n",
		LabelServerTraffic0 + " " + r + " " + s + strings.Repeat("00", 16),
		"CLIENT_RANDOM " + r + " " + s + " \n",
		"# comment\n",
		"",
		"A B C",
		"A " + r + " 0",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		orig := bytes.Clone(line)
		e, err := ParseKeyLogLine(line)
		if !bytes.Equal(orig, line) {
			t.Fatal("input modified")
		}
		if err != nil {
			if !errors.Is(err, ErrKeyLogLine) || !strings.HasPrefix(err.Error(), "keyschedule: ") {
				t.Fatalf("error %v", err)
			}
			// The error must not echo any run of the line's third field.
			if f := bytes.Fields(line); len(f) >= 3 && len(f[2]) >= 8 && strings.Contains(err.Error(), string(f[2][:8])) {
				t.Fatalf("error %q echoes the secret field", err)
			}
			return
		}
		// A parsed line formats back to itself, modulo case and the LF.
		back := fmt.Sprintf("%s %x %x", e.Label, e.ClientRandom, e.Secret)
		if got := strings.TrimSuffix(string(line), "\n"); !strings.EqualFold(got, back) {
			t.Fatalf("round trip: %q -> %q", line, back)
		}
	})
}
