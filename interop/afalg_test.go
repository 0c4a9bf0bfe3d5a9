package interop_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// The afalg tests force the AF_ALG engine on both directions, strictly, by
// the environment (KTLS_BACKEND=afalg, KTLS_STRICT=1), as an operator would,
// so that no test can pass on a fallback; they run where AF_ALG serves the
// suite (the VMs up to Linux 7.2, and 7.3+ with af_alg_restrict=0) and fail
// in a VM that should have it.

// TestAFALGOpenSSL covers what Go cannot negotiate: TLS 1.3 with
// AES-256-GCM and ChaCha20-Poly1305, against openssl s_server -rev.
func TestAFALGOpenSSL(t *testing.T) {
	for _, oc := range opensslCases {
		t.Run(oc.name, func(t *testing.T) {
			ktlstest.RequireAFALG(t, oc.version, oc.suite)
			ktlstest.ForceAFALG(t)
			srv, addr := startSServer(t, false, append([]string{"-naccept", "1", "-rev"}, oc.args...)...)
			ccfg, _ := testpki.Configs(oc.version, 0)
			c, err := ktls.Dial("tcp", addr, ccfg)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if st := c.ConnectionState(); st.Version != oc.version || st.CipherSuite != oc.suite {
				t.Fatalf("negotiated %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
			}
			ktlstest.WantBackend(t, c, "afalg", "afalg")
			revExchange(t, c, []string{"one line", strings.Repeat("abc", 5000)})
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			srv.wait(t)
		})
	}
}

// TestAFALGKeyUpdate follows TLS 1.3 KeyUpdates in both directions with
// the afalg engine on both: OpenSSL's K (update_requested: ktls opens the
// next records under the peer's new key, and answers with its own
// KeyUpdate, sealing under its new key) and k, as server and as client.
// Each rekey opens a fresh transform and operation socket.
func TestAFALGKeyUpdate(t *testing.T) {
	ktlstest.RequireAFALG(t, tls.VersionTLS13, 0)
	ktlstest.ForceAFALG(t)
	t.Run("from-server", func(t *testing.T) {
		srv, addr := startSServer(t, true, "-naccept", "1", "-tls1_3")
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// The afalg engine runs on any net.Conn: a counting tap tells
		// when s_server's KeyUpdate arrived and when ktls answered it.
		cc := &countConn{TapConn: &testenv.TapConn{Conn: raw}}
		ccfg, _ := testpki.Configs(tls.VersionTLS13, 0)
		c := ktls.Client(cc, ccfg)
		defer c.Close()
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		ktlstest.WantBackend(t, c, "afalg", "afalg")
		if _, err := c.Write([]byte("hello from ktls\n")); err != nil {
			t.Fatal(err)
		}
		srv.out.waitCount(t, "s_server stdout", "hello from ktls\n", 1)
		for i, cmd := range []string{"K", "k", "K"} {
			line := fmt.Sprintf("ping %d after %s\n", i, cmd)
			before, read := cc.recordsWritten(t), cc.read.Load()
			errc := readLine(c, line)
			// s_server acts on a command alone in one read of its
			// stdin: the next line waits for the KeyUpdate to arrive.
			srv.send(t, cmd+"\n")
			cc.waitRead(t, read)
			if cmd == "K" {
				cc.waitRecords(t, before+1) // ktls's own KeyUpdate
			}
			srv.send(t, line)
			if err := <-errc; err != nil {
				t.Fatalf("reading after the server's KeyUpdate (%s): %v", cmd, err)
			}
			pong := fmt.Sprintf("pong %d from ktls\n", i)
			if _, err := c.Write([]byte(pong)); err != nil {
				t.Fatal(err)
			}
			// After a K, s_server reads this under ktls's new key.
			srv.out.waitCount(t, "s_server stdout", pong, 1)
		}
		ktlstest.WantBackend(t, c, "afalg", "afalg")
	})
	t.Run("from-client", func(t *testing.T) {
		raw, cli := acceptSClient(t)
		_, scfg := testpki.Configs(tls.VersionTLS13, 0)
		c := ktls.Server(raw, scfg)
		defer c.Close()
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		ktlstest.WantBackend(t, c, "afalg", "afalg")
		errc := readLine(c, "hello from s_client\n")
		cli.send(t, "hello from s_client\n")
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		for i, cmd := range []string{"K", "k", "K"} {
			cli.send(t, cmd+"\n")
			cli.err.waitCount(t, "s_client stderr", "KEYUPDATE", i+1)
			line := fmt.Sprintf("line %d after %s\n", i, cmd)
			errc := readLine(c, line)
			cli.send(t, line)
			if err := <-errc; err != nil {
				t.Fatalf("reading after the client's KeyUpdate (%s): %v", cmd, err)
			}
			pong := fmt.Sprintf("pong %d from ktls\n", i)
			if _, err := c.Write([]byte(pong)); err != nil {
				t.Fatal(err)
			}
			cli.out.waitCount(t, "s_client stdout", pong, 1)
		}
	})
}
