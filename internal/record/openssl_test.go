package record

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/keyschedule"
)

// TestOpenSSLTLS13 covers the TLS 1.3 suites crypto/tls never picks on its
// own as a client (AES-256-GCM with its SHA-384 key schedule, and ChaCha20
// where AES is in hardware): a crypto/tls server, which logs its secrets,
// against `openssl s_client` offering exactly one suite. OpenSSL derives
// its keys independently, so opening its records with our keys, and having
// it print what we seal, checks keyschedule and record against a second
// implementation. Skipped where openssl is not installed.
func TestOpenSSLTLS13(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: TLS 1.3 AES-256-GCM is then covered by the RFC-derived and round-trip tests only")
	}
	for _, s := range keyschedule.Suites() {
		if s.Version != tls.VersionTLS13 {
			continue
		}
		t.Run(s.Name(), func(t *testing.T) { testOpenSSL(t, openssl, s) })
	}
}

func testOpenSSL(t *testing.T, openssl string, s keyschedule.Suite) {
	ec, _ := testCerts()
	keyLog := &syncBuffer{}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ec}, KeyLogWriter: keyLog}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", ln.Addr().String(),
		"-tls1_3", "-ciphersuites", s.Name(), "-quiet", "-no_ign_eof")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
		if t.Failed() {
			t.Logf("openssl stderr:\n%s", stderr.String())
		}
	}()
	lines := bufio.NewReader(stdout)

	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tp := &tap{Conn: raw}
	server := tls.Server(tp, cfg)
	server.SetDeadline(time.Now().Add(20 * time.Second))
	if err := server.Handshake(); err != nil {
		t.Fatalf("handshake with openssl: %v", err)
	}
	if got := server.ConnectionState().CipherSuite; got != s.ID {
		t.Fatalf("negotiated %s", tls.CipherSuiteName(got))
	}

	// openssl -> crypto/tls, then crypto/tls -> openssl.
	if _, err := io.WriteString(stdin, "hello from openssl\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("hello from openssl\n"))
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(server, "hello from crypto/tls\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := lines.ReadString('\n'); err != nil || line != "hello from crypto/tls\n" {
		t.Fatalf("openssl printed %q, %v", line, err)
	}

	e := keyLog.entries(t)
	prot := func(label string) *Protector {
		key, iv := keyschedule.TrafficKey(s, e[label].Secret)
		if len(e[label].Secret) != s.Hash.Size() {
			t.Fatalf("%s: secret of %d bytes", label, len(e[label].Secret))
		}
		p, err := NewProtector(tls.VersionTLS13, s.ID, key, iv)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	// OpenSSL's records: Finished under its handshake key, then the line.
	hs, n, data := openTLS13(t, prot(keyschedule.LabelClientHandshake), prot(keyschedule.LabelClientTraffic0), splitRecords(t, tp.readStream()))
	if hs != 1 || n != 1 || string(data) != "hello from openssl\n" {
		t.Fatalf("openssl's records: %d handshake, %d application, %q", hs, n, data)
	}
	// crypto/tls's records, under the same suite.
	sApp := prot(keyschedule.LabelServerTraffic0)
	_, sSeq, data := openTLS13(t, prot(keyschedule.LabelServerHandshake), sApp, splitRecords(t, tp.stream()))
	if string(data) != "hello from crypto/tls\n" {
		t.Fatalf("crypto/tls's records: %q", data)
	}

	// A record we seal, openssl decrypts and prints.
	if _, err := raw.Write(sApp.Seal(nil, sSeq, TypeApplicationData, []byte("sealed by ktls for "+s.Name()+"\n"))); err != nil {
		t.Fatal(err)
	}
	if line, err := lines.ReadString('\n'); err != nil || strings.TrimSpace(line) != "sealed by ktls for "+s.Name() {
		t.Fatalf("openssl printed %q, %v", line, err)
	}
}
