package interop_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// Interop with OpenSSL's s_server and s_client (docs/ARCHITECTURE.md, tests layer 3):
// the TLS 1.3 suites crypto/tls never picks on its own, TLS 1.2 suites,
// KeyUpdate sent by a real peer, and resumption. The openssl binary is
// required: a missing one fails the tests, it does not skip them.

// opensslTimeout bounds every openssl process and every wait on one.
const opensslTimeout = 60 * time.Second

// opensslCase is one protocol version and suite, with the openssl flags
// that make OpenSSL offer (s_client) or accept (s_server) only that suite.
type opensslCase struct {
	name    string
	version uint16
	suite   uint16
	args    []string
}

var opensslCases = []opensslCase{
	{"TLS13/AES_128_GCM", tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256,
		[]string{"-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"}},
	{"TLS13/AES_256_GCM", tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384,
		[]string{"-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"}},
	{"TLS13/CHACHA20_POLY1305", tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256,
		[]string{"-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"}},
	{"TLS12/ECDHE-ECDSA-AES256-GCM-SHA384", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"}},
	{"TLS12/ECDHE-ECDSA-CHACHA20-POLY1305", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}},
}

// opensslBin returns the path of the openssl binary, or fails the test.
func opensslBin(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("the openssl binary is required for these interop tests (%v); install it: apt-get install openssl", err)
	}
	return p
}

// pkiFiles writes the test PKI's ECDSA server certificate and key as PEM
// and returns their paths.
func pkiFiles(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	return testpki.Get().WriteECDSA(t.TempDir())
}

// watchBuffer is an output stream of a process that tests can wait on.
type watchBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *watchBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *watchBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitCount waits until s occurs at least n times.
func (w *watchBuffer) waitCount(t testing.TB, what, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(opensslTimeout)
	for strings.Count(w.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q did not appear %d times; output so far:\n%s", what, s, n, w.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// opensslProc is a running openssl command.
type opensslProc struct {
	name     string
	cmd      *exec.Cmd
	stdin    io.WriteCloser // nil unless asked for
	out, err watchBuffer
	done     chan struct{}
	waitErr  error
}

// startOpenSSL starts openssl with args. With interactive, its stdin is a
// pipe the test writes (closing it ends s_server and s_client); otherwise
// stdin is input. The process is killed when the test ends or after
// opensslTimeout.
func startOpenSSL(t testing.TB, interactive bool, input []byte, args ...string) *opensslProc {
	t.Helper()
	bin := opensslBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), opensslTimeout)
	p := &opensslProc{name: "openssl " + strings.Join(args, " "), done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	p.cmd.WaitDelay = time.Second
	if interactive {
		var err error
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	} else {
		p.cmd.Stdin = bytes.NewReader(input)
	}
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", p.name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.stdin != nil {
			p.stdin.Close()
		}
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s\nstdout:\n%s\nstderr:\n%s", p.name, p.out.String(), p.err.String())
		}
	})
	return p
}

// send writes a line to the process's stdin. s_server and s_client act on
// a command letter only when it is alone in one read of stdin, so callers
// wait for its effect before they send the next line.
func (p *opensslProc) send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line); err != nil {
		t.Fatalf("%s: writing %q to stdin: %v", p.name, line, err)
	}
}

// wait waits for the process to exit and fails the test if it did not exit
// cleanly.
func (p *opensslProc) wait(t testing.TB) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(opensslTimeout + 2*time.Second):
		t.Fatalf("%s did not exit", p.name)
	}
	if p.waitErr != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", p.name, p.waitErr, p.out.String(), p.err.String())
	}
}

var acceptRE = regexp.MustCompile(`ACCEPT 127\.0\.0\.1:(\d+)`)

// startSServer starts s_server on a free loopback port (it reports the
// port it got for port 0) and returns it with its address.
func startSServer(t testing.TB, interactive bool, args ...string) (*opensslProc, string) {
	t.Helper()
	certFile, keyFile := pkiFiles(t)
	all := append([]string{"s_server", "-accept", "127.0.0.1:0", "-cert", certFile, "-key", keyFile}, args...)
	p := startOpenSSL(t, interactive, nil, all...)
	deadline := time.Now().Add(opensslTimeout)
	for {
		if m := acceptRE.FindStringSubmatch(p.out.String()); m != nil {
			return p, "127.0.0.1:" + m[1]
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before accepting: %v\n%s%s", p.name, p.waitErr, p.out.String(), p.err.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not report its port:\n%s", p.name, p.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkNegotiated checks the version, the suite and that both directions
// run on the userspace engine.
func checkNegotiated(t testing.TB, c *ktls.Conn, version, suite uint16) {
	t.Helper()
	st := c.ConnectionState()
	if st.Version != version || st.CipherSuite != suite {
		t.Fatalf("negotiated %s %s, want %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite),
			tls.VersionName(version), tls.CipherSuiteName(suite))
	}
	ktlstest.WantAuto(t, c)
}

// revLines returns lines of printable bytes for s_server -rev, which
// reverses each line of up to 16383 bytes, the last one filling a record.
func revLines() []string {
	lens := []int{1, 5, 100, 1000, 4095, 4096, 9000, 16383}
	if testing.Short() {
		lens = []int{1, 100, 3000, 16383}
	}
	var lines []string
	for i, n := range lens {
		b := testenv.Pattern(n, byte(i))
		for j := range b {
			b[j] = 'a' + b[j]%26
		}
		lines = append(lines, string(b))
	}
	return lines
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// revExchange writes lines to s_server -rev and checks every reversed line
// byte for byte, writing and reading at once.
func revExchange(t testing.TB, c *ktls.Conn, lines []string) {
	t.Helper()
	var out, want bytes.Buffer
	for _, l := range lines {
		out.WriteString(l + "\n")
		want.WriteString(reverse(l) + "\n")
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(out.Bytes())
		errc <- err
	}()
	c.SetReadDeadline(time.Now().Add(opensslTimeout))
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the reversed lines: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	if err := <-errc; err != nil {
		t.Fatalf("writing the lines: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("s_server -rev returned %d bytes that differ from the %d expected", len(got), want.Len())
	}
}

// TestOpenSSLServer runs a ktls client against openssl s_server for each
// suite: the suite negotiated, the engines, and lines both ways.
func TestOpenSSLServer(t *testing.T) {
	for _, oc := range opensslCases {
		t.Run(oc.name, func(t *testing.T) {
			srv, addr := startSServer(t, false, append([]string{"-naccept", "1", "-rev"}, oc.args...)...)
			ccfg, _ := testpki.Configs(oc.version, 0)
			c, err := ktls.Dial("tcp", addr, ccfg)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			checkNegotiated(t, c, oc.version, oc.suite)
			revExchange(t, c, revLines())
			revExchange(t, c, []string{"one more line"})
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			srv.wait(t)
		})
	}
}

// TestOpenSSLClient runs openssl s_client against a ktls server for each
// suite: the suite negotiated, the engines, and binary data both ways.
func TestOpenSSLClient(t *testing.T) {
	n := 1 << 20
	if testing.Short() {
		n = 64 << 10
	}
	for _, oc := range opensslCases {
		t.Run(oc.name, func(t *testing.T) {
			_, scfg := testpki.Configs(oc.version, 0)
			l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			up, down := testenv.Pattern(n, 1), testenv.Pattern(n+12345, 2)
			// -quiet: no session output on stdout, no command letters on
			// stdin, and s_client stays up after stdin ends, until the
			// server closes.
			args := append([]string{"s_client", "-connect", l.Addr().String(), "-quiet"}, oc.args...)
			cli := startOpenSSL(t, false, up, args...)
			c := acceptKTLS(t, l)
			defer c.Close()
			checkNegotiated(t, c, oc.version, oc.suite)
			c.SetReadDeadline(time.Now().Add(opensslTimeout))
			got := make([]byte, len(up))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("reading from s_client: %v", err)
			}
			if !bytes.Equal(got, up) {
				t.Fatal("bytes from s_client differ from those sent")
			}
			if _, err := c.Write(down); err != nil {
				t.Fatalf("writing to s_client: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			cli.wait(t)
			if out := cli.out.String(); out != string(down) {
				t.Fatalf("s_client printed %d bytes; want the %d bytes sent, byte for byte", len(out), len(down))
			}
		})
	}
}

// acceptKTLS accepts one connection from a ktls listener and runs its
// handshake.
func acceptKTLS(t testing.TB, l net.Listener) *ktls.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		ch <- result{c, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-time.After(opensslTimeout):
		t.Fatal("no connection from openssl")
	}
	if r.err != nil {
		t.Fatalf("Accept: %v", r.err)
	}
	c := r.c.(*ktls.Conn)
	c.SetDeadline(time.Now().Add(opensslTimeout))
	if err := c.Handshake(); err != nil {
		c.Close()
		t.Fatalf("handshake with openssl: %v", err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// countConn counts the bytes read from the socket under a ktls Conn, and
// through its TapConn keeps what the Conn wrote.
type countConn struct {
	*testenv.TapConn
	read atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.TapConn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// recordsWritten returns how many whole records the Conn wrote so far.
func (c *countConn) recordsWritten(t testing.TB) int {
	types, _ := c.Records(t)
	return len(types)
}

// waitRead waits until more than n bytes were read from the socket.
func (c *countConn) waitRead(t testing.TB, n int64) {
	t.Helper()
	deadline := time.Now().Add(opensslTimeout)
	for c.read.Load() <= n {
		if time.Now().After(deadline) {
			t.Fatal("nothing arrived from openssl")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitRecords waits until the Conn wrote at least n records.
func (c *countConn) waitRecords(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(opensslTimeout)
	for c.recordsWritten(t) < n {
		if time.Now().After(deadline) {
			t.Fatalf("ktls wrote %d records, want %d", c.recordsWritten(t), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// readLine reads exactly want from c, in a goroutine so that the caller can
// drive openssl meanwhile; the result comes on the channel.
func readLine(c *ktls.Conn, want string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(opensslTimeout))
		got := make([]byte, len(want))
		_, err := io.ReadFull(c, got)
		if err == nil && string(got) != want {
			err = fmt.Errorf("read %q, want %q", got, want)
		}
		errc <- err
	}()
	return errc
}

// TestOpenSSLKeyUpdateFromServer: s_server sends KeyUpdates (its k and K
// commands) to a ktls client. The client must read what follows under the
// server's new key, answer update_requested with exactly one record of its
// own (its KeyUpdate), and what it writes next must be readable by s_server
// under the client's new key.
func TestOpenSSLKeyUpdateFromServer(t *testing.T) {
	// Interactive s_server: no -quiet, so that stdin commands work; what
	// it reads from the client goes to its stdout unbuffered.
	srv, addr := startSServer(t, true, "-naccept", "1", "-tls1_3")
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countConn{TapConn: &testenv.TapConn{Conn: raw}}
	ccfg, _ := testpki.Configs(tls.VersionTLS13, 0)
	c := ktls.Client(cc, ccfg)
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	ktlstest.WantAuto(t, c)
	// s_server prints what it reads once its handshake is done; only then
	// does it act on commands.
	if _, err := c.Write([]byte("hello from ktls\n")); err != nil {
		t.Fatal(err)
	}
	srv.out.waitCount(t, "s_server stdout", "hello from ktls\n", 1)

	for i, cmds := range [][]string{{"K"}, {"k", "k", "k"}, {"K", "k", "K"}} {
		requested := strings.Count(strings.Join(cmds, ""), "K")
		line := fmt.Sprintf("ping %d from s_server\n", i)
		before := cc.recordsWritten(t)
		read := cc.read.Load()
		errc := readLine(c, line)
		for j, cmd := range cmds {
			srv.send(t, cmd+"\n")
			// The KeyUpdate reached the client's socket (the Read in
			// flight consumes it); s_server is ready for the next line.
			cc.waitRead(t, read)
			read = cc.read.Load()
			if cmd == "K" {
				// The client answers before it reads anything more.
				cc.waitRecords(t, before+strings.Count(strings.Join(cmds[:j+1], ""), "K"))
			}
		}
		srv.send(t, line)
		if err := <-errc; err != nil {
			t.Fatalf("round %d (%v): reading after the server's KeyUpdate: %v", i, cmds, err)
		}
		if got := cc.recordsWritten(t) - before; got != requested {
			t.Fatalf("round %d (%v): the client wrote %d records before reading the data; want %d KeyUpdates", i, cmds, got, requested)
		}
		pong := fmt.Sprintf("pong %d from ktls\n", i)
		if _, err := c.Write([]byte(pong)); err != nil {
			t.Fatal(err)
		}
		// s_server decrypts it under the client's updated key.
		srv.out.waitCount(t, "s_server stdout", pong, 1)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	srv.wait(t)
}

// acceptSClient starts an interactive TLS 1.3 s_client against a fresh
// loopback listener and returns the accepted raw connection, for a ktls
// server the test builds on it.
func acceptSClient(t *testing.T) (net.Conn, *opensslProc) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cli := startOpenSSL(t, true, nil, "s_client", "-connect", l.Addr().String(), "-tls1_3")
	l.(*net.TCPListener).SetDeadline(time.Now().Add(opensslTimeout))
	raw, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return raw, cli
}

// TestOpenSSLKeyUpdateFromClient: s_client sends KeyUpdates (its k and K
// commands, sent with the next line it writes) to a ktls server, which must
// follow them and answer update_requested.
func TestOpenSSLKeyUpdateFromClient(t *testing.T) {
	raw, cli := acceptSClient(t)
	cc := &countConn{TapConn: &testenv.TapConn{Conn: raw}}
	_, scfg := testpki.Configs(tls.VersionTLS13, 0)
	c := ktls.Server(cc, scfg)
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	ktlstest.WantAuto(t, c)
	errc := readLine(c, "hello from s_client\n")
	cli.send(t, "hello from s_client\n")
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	updates := 0
	for i, cmd := range []string{"K", "k", "k", "k", "K"} {
		cli.send(t, cmd+"\n")
		updates++
		// s_client says so on stderr when it takes the command; the
		// KeyUpdate goes out with the next line.
		cli.err.waitCount(t, "s_client stderr", "KEYUPDATE", updates)
		before := cc.recordsWritten(t)
		line := fmt.Sprintf("line %d after %s\n", i, cmd)
		errc := readLine(c, line)
		cli.send(t, line)
		if err := <-errc; err != nil {
			t.Fatalf("update %d (%s): reading after the client's KeyUpdate: %v", i, cmd, err)
		}
		want := 0
		if cmd == "K" {
			want = 1
		}
		if got := cc.recordsWritten(t) - before; got != want {
			t.Fatalf("update %d (%s): the server wrote %d records; want %d", i, cmd, got, want)
		}
		pong := fmt.Sprintf("pong %d from ktls\n", i)
		if _, err := c.Write([]byte(pong)); err != nil {
			t.Fatal(err)
		}
		cli.out.waitCount(t, "s_client stdout", pong, 1)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	cli.wait(t)
}

// TestOpenSSLResumptionClient resumes s_client sessions (-sess_out, then
// -sess_in) on a ktls server, with the record layer moved both times.
func TestOpenSSLResumptionClient(t *testing.T) {
	for _, v := range []struct {
		name    string
		version uint16
		flag    string
	}{{"TLS13", tls.VersionTLS13, "-tls1_3"}, {"TLS12", tls.VersionTLS12, "-tls1_2"}} {
		t.Run(v.name, func(t *testing.T) {
			_, scfg := testpki.Configs(v.version, 0)
			l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			sess := filepath.Join(t.TempDir(), "session.pem")
			for i, resume := range []bool{false, true} {
				flag, want := "-sess_out", "New, "
				if resume {
					flag, want = "-sess_in", "Reused, "
				}
				// -ign_eof: stay up after stdin ends (here at once), and
				// still print the session summary.
				cli := startOpenSSL(t, false, nil, "s_client", "-connect", l.Addr().String(), v.flag, "-ign_eof", flag, sess)
				c := acceptKTLS(t, l)
				if got := c.ConnectionState().DidResume; got != resume {
					t.Fatalf("connection %d: DidResume = %v, want %v", i, got, resume)
				}
				ktlstest.WantAuto(t, c)
				// Data after the tickets, so that s_client reads them
				// before the server closes.
				if _, err := c.Write([]byte("served\n")); err != nil {
					t.Fatal(err)
				}
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				cli.wait(t)
				out := cli.out.String()
				if !strings.Contains(out, want) || !strings.Contains(out, "served\n") {
					t.Fatalf("connection %d: s_client output lacks %q or the data:\n%s", i, want, out)
				}
			}
		})
	}
}

// TestOpenSSLResumptionServer resumes a ktls client's session with
// s_server: the TLS 1.3 tickets arrive after the handshake and must still
// reach the ClientSessionCache with the record layer moved.
func TestOpenSSLResumptionServer(t *testing.T) {
	for _, v := range []struct {
		name    string
		version uint16
		flag    string
	}{{"TLS13", tls.VersionTLS13, "-tls1_3"}, {"TLS12", tls.VersionTLS12, "-tls1_2"}} {
		t.Run(v.name, func(t *testing.T) {
			_, addr := startSServer(t, false, "-rev", v.flag)
			ccfg, _ := testpki.Configs(v.version, 0)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i, resume := range []bool{false, true, true} {
				c, err := ktls.Dial("tcp", addr, ccfg)
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				ktlstest.WantAuto(t, c)
				// The first read takes the tickets on the way.
				revExchange(t, c, []string{fmt.Sprintf("connection %d", i)})
				if got := c.ConnectionState().DidResume; got != resume {
					t.Fatalf("connection %d: DidResume = %v, want %v", i, got, resume)
				}
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
