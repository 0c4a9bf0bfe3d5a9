package ktls_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/afalg"
	"github.com/ktls-go/ktls/internal/ktlstest"
	"github.com/ktls-go/ktls/internal/testenv"
	"github.com/ktls-go/ktls/internal/testpki"
)

// The afalg tests force the AF_ALG engine on both directions, strictly, by
// the environment (KTLS_BACKEND=afalg, KTLS_STRICT=1), as an operator would,
// so that no test can pass on a fallback; they run where AF_ALG serves the
// suite (the VMs up to Linux 7.2, and 7.3+ with af_alg_restrict=0) and fail
// in a VM that should have it.

// forceAFALG sets the environment that forces the afalg engine strictly.
func forceAFALG(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "afalg")
	t.Setenv("KTLS_STRICT", "1")
}

// afalgCheck is what the afalg engine says about a version and suite.
func afalgCheck(version, suite uint16) error {
	return afalg.New().(backend.Checker).Check(true, version, suite)
}

// requireAFALG makes the test depend on AF_ALG serving version and suite
// (0: TLS 1.3's AES-128-GCM, crypto/tls's choice on AES hardware).
func requireAFALG(t *testing.T, version, suite uint16) {
	t.Helper()
	if suite == 0 {
		suite = tls.TLS_AES_128_GCM_SHA256
	}
	testenv.RequireKernelFeature(t, testenv.FeatureAFALG, afalgCheck(version, suite))
}

// TestAFALGInteropStock runs every suite Go negotiates, in both roles,
// against stock crypto/tls with the afalg engine forced: both directions
// on afalg, data both ways at once, a clean close.
func TestAFALGInteropStock(t *testing.T) {
	for _, sc := range ktlstest.InteropSuites {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			requireAFALG(t, sc.Version, sc.Suite)
			forceAFALG(t)
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			st := k.ConnectionState()
			if st.Version != sc.Version || (sc.Suite != 0 && st.CipherSuite != sc.Suite) {
				t.Fatalf("negotiated %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
			}
			ktlstest.WantBackend(t, k, "afalg", "afalg")
			// Modest sizes: AES runs emulated in the VMs.
			testenv.Exchange(t, k, s, 200<<10)
			testenv.Exchange(t, k, s, 1)
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// TestAFALGOpenSSL covers what Go cannot negotiate: TLS 1.3 with
// AES-256-GCM and ChaCha20-Poly1305, against openssl s_server -rev.
func TestAFALGOpenSSL(t *testing.T) {
	for _, oc := range opensslCases {
		t.Run(oc.name, func(t *testing.T) {
			requireAFALG(t, oc.version, oc.suite)
			forceAFALG(t)
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
	requireAFALG(t, tls.VersionTLS13, 0)
	forceAFALG(t)
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

// TestAFALGStrict: where AF_ALG cannot serve (every OS but Linux, a Linux
// kernel without AF_ALG such as the development host's, Linux 7.3 with its
// default af_alg_restrict), KTLS_BACKEND=afalg with KTLS_STRICT=1 fails the
// handshake with the documented *ktls.StrictError, naming the engine's
// reason; without KTLS_STRICT it falls back to what auto picks and says why.
func TestAFALGStrict(t *testing.T) {
	sc := ktlstest.SuiteCase{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	err := afalgCheck(sc.Version, sc.Suite)
	if err == nil {
		t.Skipf("AF_ALG serves %s here; TestAFALGInteropStock covers it", sc)
	}
	if !errors.Is(err, backend.ErrNotSupported) {
		t.Fatalf("the afalg engine's Check is inconclusive: %v", err)
	}
	if testenv.InVM() && testenv.ExpectedInVM(testenv.FeatureAFALG) {
		t.Fatalf("AF_ALG must serve %s in the VM: %v", sc, err)
	}
	why := strings.TrimSuffix(strings.TrimPrefix(err.Error(), "afalg: "), ": "+backend.ErrNotSupported.Error())
	if runtime.GOOS != "linux" && why != "AF_ALG needs Linux; this is "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("the afalg engine's reason off Linux = %q; want it to name the platform", why)
	}
	t.Run("strict", ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
		forceAFALG(t)
		ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
		_, herr, finish := ktlstest.StrictHandshake(t, ktlsClient, ccfg, scfg)
		finish()
		var se *ktls.StrictError
		if !errors.As(herr, &se) {
			t.Fatalf("handshake error = %v (%T); want a *ktls.StrictError", herr, herr)
		}
		if se.Forced != "afalg" || se.Direction.String() != "tx" || se.Reason != why {
			t.Errorf("StrictError = %+v; want tx forced to afalg with reason %q", *se, why)
		}
		if msg := herr.Error(); !strings.Contains(msg, "KTLS_STRICT") || !strings.Contains(msg, why) {
			t.Errorf("handshake error %q does not name KTLS_STRICT and the reason", msg)
		}
	}))
	t.Run("fallback", func(t *testing.T) {
		t.Setenv("KTLS_BACKEND", "afalg")
		t.Setenv("KTLS_STRICT", "")
		ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
		k, s := ktlstest.PairWithStock(t, true, ccfg, scfg)
		// The fallback is what auto gives: kernel where kTLS serves.
		ktlstest.WantBackend(t, k, ktlstest.AutoEngine(t, true, sc.Version, sc.Suite), ktlstest.AutoEngine(t, false, sc.Version, sc.Suite))
		ktlstest.WantReason(t, k.Backend().Reason, "forced afalg unavailable: "+why)
		testenv.Exchange(t, k, s, 64<<10)
		ktlstest.CloseBoth(t, k, s)
	})
}
