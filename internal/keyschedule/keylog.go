package keyschedule

import (
	"bytes"
	"errors"
	"fmt"
)

// The labels of the NSS key log format that crypto/tls writes to
// Config.KeyLogWriter (crypto/tls common.go; the format is described in
// draft-ietf-tls-keylogfile §3).
const (
	// LabelClientRandom carries the TLS 1.2 master secret (48 bytes).
	LabelClientRandom = "CLIENT_RANDOM"
	// LabelClientHandshake and LabelServerHandshake carry the TLS 1.3
	// handshake traffic secrets (RFC 8446 §7.1).
	LabelClientHandshake = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
	LabelServerHandshake = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
	// LabelClientTraffic0 and LabelServerTraffic0 carry the first TLS 1.3
	// application traffic secrets (RFC 8446 §7.1).
	LabelClientTraffic0 = "CLIENT_TRAFFIC_SECRET_0"
	LabelServerTraffic0 = "SERVER_TRAFFIC_SECRET_0"
)

// Other labels of the format (for example EXPORTER_SECRET or
// CLIENT_EARLY_TRAFFIC_SECRET) parse as well and are the caller's to ignore.

// ErrKeyLogLine is wrapped by every error of ParseKeyLogLine.
var ErrKeyLogLine = errors.New("keyschedule: malformed key log line")

// RandomLen is the length of a ClientHello.random (RFC 8446 §4.1.2).
const RandomLen = 32

// MaxSecretLen bounds the secrets ParseKeyLogLine accepts: the largest hash
// any TLS suite uses is SHA-384 (48 bytes); 64 leaves room for SHA-512.
const MaxSecretLen = 64

// maxLabelLen bounds a label; the longest known one is 31 characters.
const maxLabelLen = 64

// KeyLogEntry is one parsed key log line.
type KeyLogEntry struct {
	Label        string
	ClientRandom [RandomLen]byte
	Secret       []byte
}

// ParseKeyLogLine parses one line as crypto/tls writes it:
//
//	LABEL SP client_random_hex SP secret_hex LF
//
// The final LF is optional. It is strict: exactly three fields separated by
// single spaces, a label of upper-case letters, digits and underscores, a
// 32-byte client random, and a secret of 1 to MaxSecretLen bytes, both in hex.
// Secret is a new slice that the caller may zero. Errors wrap ErrKeyLogLine
// and never contain the bytes of the line.
func ParseKeyLogLine(line []byte) (KeyLogEntry, error) {
	var e KeyLogEntry
	var buf [MaxSecretLen]byte
	label, secret, err := ParseKeyLogLineTo(&e.ClientRandom, &buf, line)
	if err != nil {
		return KeyLogEntry{}, err
	}
	e.Secret = bytes.Clone(secret)
	clear(buf[:])
	e.Label = string(label)
	return e, nil
}

// ParseKeyLogLineTo is ParseKeyLogLine without allocating: the client
// random goes to random, the secret to the start of buf (secret is that
// part of it), and label is the line's own. On an error buf holds nothing
// of the line. The connection's key log parses every line crypto/tls
// writes with it (conn/secrets.go).
func ParseKeyLogLineTo(random *[RandomLen]byte, buf *[MaxSecretLen]byte, line []byte) (label, secret []byte, err error) {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	// Fields, by hand: strings.Fields would accept runs of blanks and tabs.
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return nil, nil, keyLogError("not three space-separated fields")
	}
	label, rest := line[:sp1], line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return nil, nil, keyLogError("not three space-separated fields")
	}
	randomHex, secretHex := rest[:sp2], rest[sp2+1:]
	if bytes.IndexByte(secretHex, ' ') >= 0 {
		return nil, nil, keyLogError("more than three fields")
	}

	if len(label) == 0 || len(label) > maxLabelLen {
		return nil, nil, keyLogError(fmt.Sprintf("label of %d bytes", len(label)))
	}
	for _, c := range label {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return nil, nil, keyLogError("label is not upper-case letters, digits and underscores")
		}
	}

	if len(randomHex) != 2*RandomLen {
		return nil, nil, keyLogError(fmt.Sprintf("client random of %d hex digits, want %d", len(randomHex), 2*RandomLen))
	}
	if !decodeHex(random[:], randomHex) {
		return nil, nil, keyLogError("client random is not hex")
	}

	if len(secretHex) == 0 || len(secretHex)%2 != 0 || len(secretHex) > 2*MaxSecretLen {
		return nil, nil, keyLogError(fmt.Sprintf("secret of %d hex digits", len(secretHex)))
	}
	secret = buf[:len(secretHex)/2]
	if !decodeHex(secret, secretHex) {
		clear(secret)
		return nil, nil, keyLogError("secret is not hex")
	}
	return label, secret, nil
}

func keyLogError(reason string) error {
	return fmt.Errorf("%w: %s", ErrKeyLogLine, reason)
}

// decodeHex decodes src (of length 2*len(dst)) into dst. Unlike encoding/hex
// its failure says nothing about the offending byte, which may be secret.
func decodeHex(dst, src []byte) bool {
	ok := true
	for i := range dst {
		hi, ok1 := fromHex(src[2*i])
		lo, ok2 := fromHex(src[2*i+1])
		ok = ok && ok1 && ok2
		dst[i] = hi<<4 | lo
	}
	return ok
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
