package interop_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// TestKernelKeyUpdate: OpenSSL's s_server and s_client update their TLS 1.3
// keys (k: update_not_requested; K: update_requested) while ktls has both
// directions in the kernel. Where the kernel takes new keys (Linux 6.14),
// ktls follows, answers update_requested with a KeyUpdate of its own (the
// kernel's TX sequence restarts at 0), and both ends keep reading each other.
// Where it does not, the read after the peer's KeyUpdate fails with
// ErrKeyUpdateUnsupported, which names the kernel requirement.
func TestKernelKeyUpdate(t *testing.T) {
	ktlstest.RequireKTLS(t, tls.VersionTLS13, 0)
	rekeyErr := kernel.ProbeRekey()
	if rekeyErr != nil && !errors.Is(rekeyErr, backend.ErrNotSupported) {
		t.Fatalf("ProbeRekey: %v", rekeyErr)
	}
	if rekeyErr != nil && testenv.InVM() && testenv.ExpectedInVM(testenv.FeatureKTLSRekey) {
		t.Fatalf("the kernel must take new keys here: %v", rekeyErr)
	}
	// after checks the read that follows the peer's KeyUpdate; it reports
	// whether the connection goes on.
	after := func(t *testing.T, err error) bool {
		t.Helper()
		if rekeyErr == nil {
			if err != nil {
				t.Fatalf("reading after the peer's KeyUpdate: %v", err)
			}
			return true
		}
		if !errors.Is(err, ktls.ErrKeyUpdateUnsupported) || !strings.Contains(err.Error(), "6.14") {
			t.Fatalf("reading after the peer's KeyUpdate on a kernel without rekey: %v; want ErrKeyUpdateUnsupported naming Linux 6.14", err)
		}
		return false
	}

	t.Run("from-server", func(t *testing.T) {
		srv, c := sserverKernelClient(t)
		if _, err := c.Write([]byte("hello from ktls\n")); err != nil {
			t.Fatal(err)
		}
		srv.out.waitCount(t, "s_server stdout", "hello from ktls\n", 1)
		base := rxRekeys(t)
		for i, cmd := range []string{"K", "k", "K"} {
			line := fmt.Sprintf("ping %d after %s\n", i, cmd)
			errc := readLine(c, line)
			srv.send(t, cmd+"\n")
			if rekeyErr == nil {
				waitRXRekeys(t, base+int64(i)+1)
			}
			srv.send(t, line)
			if !after(t, <-errc) {
				return
			}
			if cmd == "K" {
				if seq, err := testenv.KTLSRecSeq(c.NetConn(), true); err != nil || seq != 0 {
					t.Fatalf("TX rec_seq after answering update_requested = %d, %v; want 0 under the new key", seq, err)
				}
			}
			pong := fmt.Sprintf("pong %d from ktls\n", i)
			if _, err := c.Write([]byte(pong)); err != nil {
				t.Fatal(err)
			}
			// s_server reads it under ktls's new key after a K.
			srv.out.waitCount(t, "s_server stdout", pong, 1)
		}
	})

	t.Run("from-client", func(t *testing.T) {
		raw, cli := acceptSClient(t)
		_, scfg := testpki.Configs(tls.VersionTLS13, 0)
		c := ktls.Server(raw, scfg, ktlstest.KernelStrict()...)
		defer c.Close()
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		ktlstest.WantBackend(t, c, "kernel", "kernel")
		errc := readLine(c, "hello from s_client\n")
		cli.send(t, "hello from s_client\n")
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		for i, cmd := range []string{"K", "k"} {
			cli.send(t, cmd+"\n")
			// s_client says so on stderr; the KeyUpdate goes out with
			// the next line.
			cli.err.waitCount(t, "s_client stderr", "KEYUPDATE", i+1)
			line := fmt.Sprintf("line %d after %s\n", i, cmd)
			errc := readLine(c, line)
			cli.send(t, line)
			if !after(t, <-errc) {
				return
			}
			pong := fmt.Sprintf("pong %d from ktls\n", i)
			if _, err := c.Write([]byte(pong)); err != nil {
				t.Fatal(err)
			}
			cli.out.waitCount(t, "s_client stdout", pong, 1)
		}
	})
}

// TestKernelOpenSSLKTLS runs ktls with both directions in the kernel against
// openssl s_server with OpenSSL's own kTLS on as well (SSL_OP_ENABLE_KTLS,
// through the "Options = KTLS" configuration command, which OpenSSL 3.0's
// s_server has no flag for), for each suite: both ends then hand their
// records to the kernel, which /proc/net/tls_stat shows (two more TX
// sockets in software mode, ours and OpenSSL's).
func TestKernelOpenSSLKTLS(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "openssl.cnf")
	if err := os.WriteFile(conf, []byte(`openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Options = KTLS
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OPENSSL_CONF", conf)
	for _, oc := range opensslCases {
		t.Run(oc.name, func(t *testing.T) {
			ktlstest.RequireKTLS(t, oc.version, oc.suite)
			before, err := testenv.TLSStat()
			if err != nil {
				t.Fatal(err)
			}
			srv, addr := startSServer(t, false, append([]string{"-naccept", "1", "-rev"}, oc.args...)...)
			ccfg, _ := testpki.Configs(oc.version, 0)
			c, err := ktls.Dial("tcp", addr, ccfg, ktlstest.KernelStrict()...)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			ktlstest.WantBackend(t, c, "kernel", "kernel")
			revExchange(t, c, revLines())
			after, err := testenv.TLSStat()
			if err != nil {
				t.Fatal(err)
			}
			if got := after["TlsTxSw"] - before["TlsTxSw"]; got < 2 {
				t.Errorf("TlsTxSw grew by %d, want 2: ktls's and OpenSSL's", got)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			srv.wait(t)
		})
	}
}

// TestKernelGnuTLSServer runs a ktls client with both directions in the
// kernel against gnutls-serv --echo, for TLS 1.3 suites Go never picks itself
// and for TLS 1.2: a line of several records goes out and comes back.
func TestKernelGnuTLSServer(t *testing.T) {
	bin := lookBin(t, "gnutls-serv", "gnutls-bin")
	certFile, keyFile := pkiFiles(t)
	for _, gc := range gnutlsCases {
		t.Run(gc.name, func(t *testing.T) {
			ktlstest.RequireKTLS(t, gc.version, gc.suite)
			// gnutls-serv does not report a port it picked: take a free
			// one, and retry the dial until it listens.
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
			l.Close()
			ctx, cancel := context.WithTimeout(context.Background(), opensslTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "--echo", "-p", port, "--x509certfile", certFile,
				"--x509keyfile", keyFile, "--priority", gc.priority)
			var out watchBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Kill()
				cmd.Wait()
				if t.Failed() {
					t.Logf("gnutls-serv:\n%s", out.String())
				}
			}()
			ccfg, _ := testpki.Configs(0, 0)
			ccfg.MinVersion, ccfg.MaxVersion = gc.version, gc.version
			var c *ktls.Conn
			for deadline := time.Now().Add(opensslTimeout); ; time.Sleep(20 * time.Millisecond) {
				c, err = ktls.Dial("tcp", "127.0.0.1:"+port, ccfg, ktlstest.KernelStrict()...)
				if err == nil || time.Now().After(deadline) {
					break
				}
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			checkSuite(t, c, gc.version, gc.suite)
			ktlstest.WantBackend(t, c, "kernel", "kernel")
			line := strings.Repeat("gnutls-serv ", 4000) + "end\n"
			go c.Write([]byte(line))
			c.SetReadDeadline(time.Now().Add(opensslTimeout))
			got := make([]byte, len(line))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("reading the echo: %v", err)
			}
			if string(got) != line {
				t.Fatal("the echo differs from the line sent")
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

func checkSuite(t *testing.T, c *ktls.Conn, version, suite uint16) {
	t.Helper()
	if st := c.ConnectionState(); st.Version != version || st.CipherSuite != suite {
		t.Fatalf("negotiated %s %s, want %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite),
			tls.VersionName(version), tls.CipherSuiteName(suite))
	}
}

// TestKernelSpliceKeyUpdate splices from a ktls client while s_server sends
// lines and a TLS 1.3 KeyUpdate between them: WriteTo hands the KeyUpdate to
// the protocol code and goes on splicing under the new key, on kernels that
// take one; on the others it ends with ErrKeyUpdateUnsupported.
func TestKernelSpliceKeyUpdate(t *testing.T) {
	ktlstest.RequireKTLS(t, tls.VersionTLS13, 0)
	rekeyErr := kernel.ProbeRekey()
	if rekeyErr != nil && !errors.Is(rekeyErr, backend.ErrNotSupported) {
		t.Fatalf("ProbeRekey: %v", rekeyErr)
	}
	srv, c := sserverKernelClient(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	var out watchBuffer
	go io.Copy(&out, pr)
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(pw, c)
		pw.Close()
		copied <- err
	}()
	srv.send(t, "before the update\n")
	out.waitCount(t, "the pipe", "before the update\n", 1)
	base := rxRekeys(t)
	srv.send(t, "k\n")
	if rekeyErr != nil {
		select {
		case err := <-copied:
			if !errors.Is(err, ktls.ErrKeyUpdateUnsupported) {
				t.Fatalf("io.Copy after the peer's KeyUpdate on a kernel without rekey: %v; want ErrKeyUpdateUnsupported", err)
			}
		case <-time.After(opensslTimeout):
			t.Fatal("io.Copy did not end after a KeyUpdate the kernel cannot follow")
		}
		return
	}
	// s_server takes a command letter only when it is alone in one read
	// of its stdin: wait for the kernel to take the new key before the
	// next line.
	waitRXRekeys(t, base+1)
	srv.send(t, "after the update\n")
	out.waitCount(t, "the pipe", "after the update\n", 1)
	srv.send(t, "Q\n")
	select {
	case err := <-copied:
		if err != nil {
			t.Fatalf("io.Copy: %v", err)
		}
	case <-time.After(opensslTimeout):
		t.Fatal("io.Copy did not end after s_server quit")
	}
	if got := out.String(); got != "before the update\nafter the update\n" {
		t.Fatalf("the pipe got %q", got)
	}
}

// rxRekeys returns how many new RX keys kTLS has taken on this machine
// (/proc/net/tls_stat, TlsRxRekeyOk).
func rxRekeys(t *testing.T) int64 {
	t.Helper()
	st, err := testenv.TLSStat()
	if err != nil {
		t.Fatal(err)
	}
	return st["TlsRxRekeyOk"]
}

// waitRXRekeys waits until kTLS has taken n new RX keys in all.
func waitRXRekeys(t *testing.T, n int64) {
	t.Helper()
	for deadline := time.Now().Add(opensslTimeout); ; time.Sleep(5 * time.Millisecond) {
		if got := rxRekeys(t); got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("TlsRxRekeyOk = %d, want %d", rxRekeys(t), n)
		}
	}
}

// sserverKernelClient starts an interactive TLS 1.3 s_server and returns it
// with a handshaken ktls client whose both directions are in the kernel
// (strict); the client is closed when the test ends.
func sserverKernelClient(t *testing.T) (*opensslProc, *ktls.Conn) {
	t.Helper()
	srv, addr := startSServer(t, true, "-naccept", "1", "-tls1_3")
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ccfg, _ := testpki.Configs(tls.VersionTLS13, 0)
	c := ktls.Client(raw, ccfg, ktlstest.KernelStrict()...)
	t.Cleanup(func() { c.Close() })
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	ktlstest.WantBackend(t, c, "kernel", "kernel")
	return srv, c
}
