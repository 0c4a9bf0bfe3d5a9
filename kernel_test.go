package ktls_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
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
	"github.com/ktls-go/ktls/internal/ktlstest"
	"github.com/ktls-go/ktls/internal/testenv"
	"github.com/ktls-go/ktls/internal/testpki"
)

// TestKernelHandoff checks, against stock crypto/tls in both roles and for
// every suite Go negotiates, with a session cache on the client (so a TLS 1.3
// server sends a ticket, and the client drains it before RX moves), that:
// both directions are in the kernel; the kernel's record sequence numbers
// right after the install are those the handoff computed (TLS 1.2: the
// Finished went out and came in under the traffic key, so 1; TLS 1.3: 0,
// except the server's TX after its ticket, and the client's RX after the
// ticket it read); data moves intact; /proc/net/tls_stat counts the sockets.
func TestKernelHandoff(t *testing.T) {
	for _, sc := range ktlstest.InteropSuites {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ktlstest.RequireKTLS(t, sc.Version, sc.Suite)
			before, err := testenv.TLSStat()
			if err != nil {
				t.Fatal(err)
			}
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg, ktlstest.KernelStrict()...)
			wantTX, wantRX := uint64(1), uint64(1)
			if sc.Version == tls.VersionTLS13 {
				wantTX, wantRX = 0, 0
				if !ktlsClient {
					wantTX = 1 // the NewSessionTicket crypto/tls sent
				}
			}
			if got, err := testenv.KTLSRecSeq(k.NetConn(), true); err != nil || got != wantTX {
				t.Errorf("TX rec_seq after the handoff = %d, %v; want %d", got, err, wantTX)
			}
			if !(ktlsClient && sc.Version == tls.VersionTLS13) {
				// The TLS 1.3 client installs RX after its first read.
				if got, err := testenv.KTLSRecSeq(k.NetConn(), false); err != nil || got != wantRX {
					t.Errorf("RX rec_seq after the handoff = %d, %v; want %d", got, err, wantRX)
				}
			}
			if ktlsClient && sc.Version == tls.VersionTLS13 {
				// One record from the server: the client drains the
				// ticket (record 0) in crypto/tls, installs RX at 1,
				// and the kernel opens the data record.
				go s.Write([]byte("hello"))
				buf := make([]byte, 5)
				if _, err := io.ReadFull(k, buf); err != nil {
					t.Fatal(err)
				}
				if got, err := testenv.KTLSRecSeq(k.NetConn(), false); err != nil || got != 2 {
					t.Errorf("RX rec_seq after the ticket and one record = %d, %v; want 2", got, err)
				}
			}
			testenv.Exchange(t, k, s, 1<<20)
			ktlstest.WantBackend(t, k, "kernel", "kernel")
			after, err := testenv.TLSStat()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []string{"TlsTxSw", "TlsRxSw"} {
				if after[c] <= before[c] {
					t.Errorf("/proc/net/tls_stat %s: %d before, %d after: the kernel did not take the socket", c, before[c], after[c])
				}
			}
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// TestKernelResumption resumes sessions with both directions in the kernel:
// for the TLS 1.3 client, the ticket reached crypto/tls's cache before RX
// moved.
func TestKernelResumption(t *testing.T) {
	for _, sc := range []ktlstest.SuiteCase{{Version: tls.VersionTLS13, Suite: 0}, {Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}} {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ktlstest.RequireKTLS(t, sc.Version, sc.Suite)
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i := range 2 {
				k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg, ktlstest.KernelStrict()...)
				// The server speaks first, so a TLS 1.3 client reads its
				// ticket before the test closes.
				if ktlsClient {
					testenv.Exchange(t, s, k, 1000)
				} else {
					testenv.Exchange(t, k, s, 1000)
				}
				if got := k.ConnectionState().DidResume; got != (i == 1) {
					t.Fatalf("connection %d: DidResume = %v", i, got)
				}
				ktlstest.WantBackend(t, k, "kernel", "kernel")
				ktlstest.CloseBoth(t, k, s)
			}
		}))
	}
}

// countingFile is an *os.File whose Read counts the bytes that pass through
// user space. It keeps Stat and SyscallConn, so sendfile can still take it;
// it hides WriteTo, as os.File's own fallback does.
type countingFile struct {
	*os.File
	read int64
}

func (f *countingFile) Read(b []byte) (int, error) {
	n, err := f.File.Read(b)
	f.read += int64(n)
	return n, err
}

// WriteTo does what os.File.WriteTo does when it cannot splice: io.Copy
// from the file without its WriteTo, which lands in the writer's ReadFrom.
func (f *countingFile) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, fileWithoutWriteTo{countingFile: f})
}

// fileWithoutWriteTo hides WriteTo the way package os does: two WriteTo at
// the same depth cancel out, every other method stays.
type fileWithoutWriteTo struct {
	*countingFile
	noWriteTo
}

type noWriteTo struct{}

func (noWriteTo) WriteTo(io.Writer) (int64, error) { panic("not reached") }

// TestKernelSendfile serves a file with io.Copy(conn, file) from a ktls
// server with TX in the kernel to a stock crypto/tls client, which checks it
// by hash: 256 MiB, about 35 s in the emulated VM. Evidence that sendfile
// ran: the file is never read through user space (no byte passes
// countingFile.Read). The copy also works from an *io.SectionReader (its
// first 32 MiB).
func TestKernelSendfile(t *testing.T) {
	const size = 256 << 20
	ktlstest.RequireKTLS(t, tls.VersionTLS13, 0)
	path := filepath.Join(t.TempDir(), "file")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h, hs := sha256.New(), sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h, hs), rand.Reader, 32<<20); err != nil {
		t.Fatal(err)
	}
	sectionSum := hs.Sum(nil)
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size-32<<20); err != nil {
		t.Fatal(err)
	}
	want := h.Sum(nil)
	f.Close()

	for _, name := range []string{"file", "section"} {
		t.Run(name, func(t *testing.T) {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, s := ktlstest.PairWithStock(t, false, ccfg, scfg, ktls.WithBackend("tx=kernel,rx=userspace"), ktls.WithStrict())
			ktlstest.WantBackend(t, k, "kernel", "userspace")
			file, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			cf := &countingFile{File: file}
			type result struct {
				n   int64
				err error
			}
			res := make(chan result, 1)
			start := time.Now()
			want, n := want, int64(size)
			if name == "section" {
				n = 32 << 20
				want = sectionSum
			}
			go func() {
				var r result
				if name == "file" {
					r.n, r.err = io.Copy(k, cf)
				} else {
					r.n, r.err = io.Copy(k, io.NewSectionReader(cf, 0, n))
				}
				k.CloseWrite()
				res <- r
			}()
			h := sha256.New()
			got, err := io.Copy(h, s)
			if err != nil {
				t.Fatalf("the client read %d bytes: %v", got, err)
			}
			r := <-res
			if r.err != nil || r.n != n || got != n {
				t.Fatalf("io.Copy = %d, %v; the client read %d; want %d", r.n, r.err, got, n)
			}
			if string(h.Sum(nil)) != string(want) {
				t.Fatal("the file arrived changed")
			}
			if cf.read != 0 {
				t.Errorf("%d bytes of the file went through user space; sendfile did not run", cf.read)
			}
			t.Logf("%d MiB in %v", n>>20, time.Since(start))
			k.Close()
			s.Close()
		})
	}
}

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

// TestKernelSplice copies from a ktls client with RX in the kernel into a
// pipe with io.Copy, which is WriteTo and splice(2), after the TLS 1.3
// server's session ticket and up to its close_notify, for both versions.
// The evidence that splice ran: the same copy through a writer that hides
// the pipe (so WriteTo copies through Read and write(2)) adds at least the
// data to the process's write(2) count, and the splice run does not.
func TestKernelSplice(t *testing.T) {
	size := 16 << 20
	if testing.Short() {
		size = 8 << 20
	}
	data := testenv.Pattern(size, 7)
	for _, tc := range []ktlstest.SuiteCase{
		{Version: tls.VersionTLS13, Suite: tls.TLS_AES_128_GCM_SHA256},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
	} {
		t.Run(tc.String(), func(t *testing.T) {
			ktlstest.RequireKTLS(t, tc.Version, tc.Suite)
			var wchar [2]int64
			for i, mode := range []string{"splice", "copy"} {
				ccfg, scfg := testpki.Configs(tc.Version, tc.Suite)
				ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				k, s := ktlstest.PairWithStock(t, true, ccfg, scfg, ktlstest.KernelStrict()...)
				ktlstest.WantBackend(t, k, "kernel", "kernel")
				pr, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				sum := make(chan [32]byte, 1)
				go func() {
					h := sha256.New()
					io.Copy(h, pr)
					pr.Close()
					sum <- [32]byte(h.Sum(nil))
				}()
				werr := make(chan error, 1)
				go func() {
					_, err := s.Write(data)
					if err == nil {
						err = s.Close()
					}
					werr <- err
				}()
				before := testenv.ProcWchar(t)
				var n int64
				if mode == "splice" {
					n, err = io.Copy(pw, k)
				} else {
					n, err = io.Copy(struct{ io.Writer }{pw}, k)
				}
				wchar[i] = testenv.ProcWchar(t) - before
				pw.Close()
				if err != nil || n != int64(size) {
					t.Fatalf("%s: io.Copy = %d, %v; want %d, nil", mode, n, err, size)
				}
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
				if <-sum != sha256.Sum256(data) {
					t.Fatalf("%s: the data arrived changed", mode)
				}
				k.Close()
			}
			t.Logf("write(2) bytes during the copy: %d with splice, %d without", wchar[0], wchar[1])
			if wchar[1]-wchar[0] < int64(size/2) {
				t.Fatalf("write(2) counted %d bytes with splice and %d without, for %d bytes copied: splice did not run", wchar[0], wchar[1], size)
			}
		})
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
