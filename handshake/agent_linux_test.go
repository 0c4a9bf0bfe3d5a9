package handshake

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/internal/netlink"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

func TestMain(m *testing.M) { testenv.MainWithLeakCheck(m) }

// TestServeFamily: where the kernel has no handshake family (this host, the
// 6.1 guest), Serve fails at once with an error that names it; where it has
// one (every guest from 6.4 on must), Serve joins the group, finds no
// request waiting, and returns when its context ends.
func TestServeFamily(t *testing.T) {
	info, err := Probe()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = Serve(ctx, &Config{Logger: slog.New(slog.DiscardHandler)})
	if !info.Family {
		if !errors.Is(err, ErrNoFamily) {
			t.Fatalf("Serve without the family = %v, want ErrNoFamily", err)
		}
		for _, s := range []string{`"handshake" generic netlink family`, "CONFIG_NET_HANDSHAKE", "6.4"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Serve's error %q does not say %q", err, s)
			}
		}
		if testenv.InVM() && testenv.ExpectedInVM(testenv.FeatureNetHandshake) {
			t.Fatalf("kernel %s inside the VM has no handshake family: %v", testenv.KernelVersion(), err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if info.Group == 0 {
		t.Errorf("Probe = %+v: no %q group", info, GroupName)
	}
	// The policies say what Serve may send: every kernel with the family
	// takes DONE's status, socket and remote-auth, and ACCEPT's handler
	// class (Documentation/netlink/specs/handshake.yaml).
	c, err := netlink.Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fam, err := c.GenlFamilyInfo(FamilyName)
	if err != nil {
		t.Fatal(err)
	}
	for op, want := range map[uint8][]uint16{cmdDone: {attrDoneStatus, attrDoneSockfd, attrDoneRemoteAuth}, cmdAccept: {attrAcceptHandlerClass}} {
		got, err := c.GenlOpPolicy(fam.ID, op)
		if err != nil {
			t.Errorf("the policy of command %d: %v", op, err)
		}
		for _, a := range want {
			if !attrSet(got).has(a) || got == nil {
				t.Errorf("command %d's policy %v lacks attribute %d", op, got, a)
			}
		}
	}
}

// consumer is the kernel consumer's socket, as far as a test can make one:
// a blocking TCP socket with options of its own, connected to a stock
// crypto/tls peer, which the test gets.
func consumer(t *testing.T) (fd int, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct{ level, opt, v int }{
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 0},
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 1234},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 56},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 3},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			t.Fatal(err)
		}
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	peer, err = ln.Accept()
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return fd, peer
}

// kernelTLS13 says whether this kernel takes TLS 1.3 AES-128-GCM in kTLS:
// then a handshake must succeed, else it must end with EIO (the strict
// kernel engine refuses). Inside the VMs it must be there.
func kernelTLS13(t *testing.T) bool {
	err := testenv.ProbeKTLSWith(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	if err != nil && testenv.InVM() {
		t.Fatalf("kTLS for TLS 1.3 is missing inside the VM: %v", err)
	}
	return err == nil
}

type outcome struct {
	tlsPeer  *tls.Conn
	res      Result
	peerErr  error
	before   sockState
	after    sockState
	fd       int
	released bool
}

// testKeys is t's key thread (an agent's keyThread): run's handshakes and
// the test's own keyring calls share it, as Serve's do.
func testKeys(t *testing.T) *keyThread {
	if k, ok := keyThreads.Load(t); ok {
		return k.(*keyThread)
	}
	k := newKeyThread()
	keyThreads.Store(t, k)
	t.Cleanup(func() {
		keyThreads.Delete(t)
		k.stop()
	})
	return k
}

var keyThreads sync.Map // *testing.T -> *keyThread

// run serves req on a fresh consumer socket against peer, played by
// stock crypto/tls with pcfg (nil: the peer never speaks), and checks
// that the socket's options and flags are as before.
func run(t *testing.T, cfg *Config, req Request, pcfg *tls.Config, client bool) (outcome, net.Conn) {
	t.Helper()
	fd, peer := consumer(t)
	var o outcome
	var err error
	if o.before, err = saveSockState(fd); err != nil {
		t.Fatal(err)
	}
	if o.before.flags&unix.O_NONBLOCK != 0 {
		t.Fatal("the consumer socket is non-blocking from the start")
	}
	peerDone := make(chan error, 1)
	if pcfg != nil {
		peer.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			var c *tls.Conn
			if client {
				c = tls.Client(peer, pcfg)
			} else {
				c = tls.Server(peer, pcfg)
			}
			o.tlsPeer = c
			peerDone <- c.Handshake()
		}()
	} else {
		peerDone <- nil
	}
	req.Sockfd = fd
	f := os.NewFile(uintptr(fd), "consumer")
	res, release := handshakeOn(context.Background(), cfg, testKeys(t), f, &req)
	o.res = res
	if o.after, err = saveSockState(fd); err != nil {
		t.Fatal(err)
	}
	release()
	o.peerErr = <-peerDone
	t.Cleanup(func() { f.Close() })
	o.fd = fd
	if o.after != o.before {
		t.Errorf("socket state after the handshake %+v, before %+v", o.after, o.before)
	}
	return o, peer
}

// serverConfig is the stock peer's as a server. It sends no session
// tickets, which the consumer's kTLS socket would read as a handshake
// record (EIO on a read without a control message buffer,
// Documentation/networking/tls.rst).
func serverConfig() *tls.Config {
	p := testpki.Get()
	return &tls.Config{Certificates: []tls.Certificate{p.ECDSA()}, MinVersion: tls.VersionTLS13, SessionTicketsDisabled: true}
}

// TestHandshakeClient: the kernel asks for an anonymous client handshake
// with a server that verifies. Where kTLS takes TLS 1.3, DONE says 0 and
// the consumer's socket carries the session: plaintext written to its fd
// reaches the peer through TLS, and the peer's record reads as plaintext.
// Elsewhere the strict kernel engine refuses, and DONE says EIO.
func TestHandshakeClient(t *testing.T) {
	ok := kernelTLS13(t)
	cfg := &Config{Client: &Credentials{RootCAs: testpki.Get().Pool}, Logger: slog.New(slog.DiscardHandler)}
	o, _ := run(t, cfg, Request{Type: ClientHello, Auth: AuthUnauth, Peername: "localhost", TimeoutMillis: 5000}, serverConfig(), false)
	if !ok {
		if o.res.Status != StatusFault || o.res.Status.errno() != uint32(unix.EIO) {
			t.Fatalf("without kTLS: %v (%v), want EIO", o.res.Status, o.res.Err)
		}
		return
	}
	if o.res.Status != StatusOK || o.peerErr != nil {
		t.Fatalf("handshake: %v (%v); peer: %v", o.res.Status, o.res.Err, o.peerErr)
	}
	if o.res.Version != tls.VersionTLS13 || len(o.res.RemoteAuth) != 1 || o.res.RemoteAuth[0] == 0 {
		t.Errorf("result %+v", o.res)
	}
	exchange(t, o)
}

// exchange checks that the consumer's socket holds the session at the
// sequence numbers the handshake left: plaintext both ways through kTLS.
func exchange(t *testing.T, o outcome) {
	t.Helper()
	if err := unix.SetsockoptTimeval(o.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.tlsPeer.Write([]byte("from the peer")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := unix.Read(o.fd, buf)
	if err != nil || string(buf[:max(n, 0)]) != "from the peer" {
		t.Errorf("the consumer read %q, %v", buf[:max(n, 0)], err)
	}
	if _, err := unix.Write(o.fd, []byte("from the consumer")); err != nil {
		t.Fatal(err)
	}
	n, err = o.tlsPeer.Read(buf)
	if err != nil || string(buf[:n]) != "from the consumer" {
		t.Errorf("the peer read %q, %v", buf[:n], err)
	}
}

// TestHandshakeFailures: each failure ends with the status DONE must carry,
// and the socket's options as the consumer set them.
func TestHandshakeFailures(t *testing.T) {
	p := testpki.Get()
	quiet := slog.New(slog.DiscardHandler)
	strangers := &Config{Client: &Credentials{RootCAs: x509.NewCertPool()}, Logger: quiet}
	for _, tc := range []struct {
		name   string
		cfg    *Config
		req    Request
		peer   *tls.Config
		client bool // the peer is the TLS client
		want   Status
		errno  unix.Errno
	}{
		{"server not trusted", strangers, Request{Type: ClientHello, Auth: AuthUnauth, Peername: "localhost"}, serverConfig(), false, StatusRejected, unix.EACCES},
		{"wrong server name", &Config{Client: &Credentials{RootCAs: p.Pool}, Logger: quiet}, Request{Type: ClientHello, Auth: AuthUnauth, Peername: "nfs.elsewhere.test"}, serverConfig(), false, StatusRejected, unix.EACCES},
		{"peer silent", &Config{Logger: quiet}, Request{Type: ClientHello, Auth: AuthUnauth, Peername: "localhost", TimeoutMillis: 200}, nil, false, StatusTimedOut, unix.ETIMEDOUT},
		{"psk", &Config{Logger: quiet}, Request{Type: ClientHello, Auth: AuthPSK, PeerIdentities: []uint32{5}}, nil, false, StatusNoKey, unix.ENOKEY},
		{"mtls client without a certificate", &Config{Logger: quiet}, Request{Type: ClientHello, Auth: AuthX509}, nil, false, StatusNoKey, unix.ENOKEY},
		{"server without a certificate", &Config{Logger: quiet}, Request{Type: ServerHello, Auth: AuthX509}, nil, false, StatusNoKey, unix.ENOKEY},
		{"key serial not readable", &Config{Logger: quiet}, Request{Type: ServerHello, Auth: AuthX509, Cert: 0x7ffffff0, PrivKey: 0x7ffffff1}, nil, false, StatusNoKey, unix.ENOKEY},
		{"unknown type", &Config{Logger: quiet}, Request{Type: 9, Auth: AuthX509}, nil, false, StatusInvalid, unix.EINVAL},
		{"unknown auth", &Config{Logger: quiet}, Request{Type: ServerHello, Auth: 9}, nil, false, StatusInvalid, unix.EINVAL},
		{"client certificate not trusted", &Config{Server: &Credentials{Certificates: []tls.Certificate{p.ECDSA()}, RootCAs: x509.NewCertPool()}, Logger: quiet},
			Request{Type: ServerHello, Auth: AuthX509}, &tls.Config{RootCAs: p.Pool, ServerName: "localhost", Certificates: []tls.Certificate{p.Client()}}, true, StatusRejected, unix.EACCES},
		{"client certificate required", &Config{Server: &Credentials{Certificates: []tls.Certificate{p.ECDSA()}, RootCAs: p.Pool, RequireClientCert: true}, Logger: quiet},
			Request{Type: ServerHello, Auth: AuthX509}, &tls.Config{RootCAs: p.Pool, ServerName: "localhost"}, true, StatusRejected, unix.EACCES},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := run(t, tc.cfg, tc.req, tc.peer, tc.client)
			if o.res.Status != tc.want || o.res.Status.errno() != uint32(tc.errno) {
				t.Errorf("status %v (errno %d), want %v (%d): %v", o.res.Status, o.res.Status.errno(), tc.want, tc.errno, o.res.Err)
			}
			if o.res.Err == nil || !strings.HasPrefix(o.res.Err.Error(), "handshake: ") {
				t.Errorf("error %v", o.res.Err)
			}
		})
	}
}

// TestHandshakeServer: the kernel asks for a server handshake; the client
// presents a certificate the server's trust store verifies. With kTLS,
// DONE carries its key serial as remote-auth (what nfsd's mtls exports
// need); without, EIO.
func TestHandshakeServer(t *testing.T) {
	ok := kernelTLS13(t)
	p := testpki.Get()
	cfg := &Config{Server: &Credentials{Certificates: []tls.Certificate{p.ECDSA()}, RootCAs: p.Pool}, Logger: slog.New(slog.DiscardHandler)}
	pcfg := &tls.Config{RootCAs: p.Pool, ServerName: "localhost", Certificates: []tls.Certificate{p.Client()}, ClientSessionCache: tls.NewLRUClientSessionCache(1)}
	o, peer := run(t, cfg, Request{Type: ServerHello, Auth: AuthX509, TimeoutMillis: 5000}, pcfg, true)
	if !ok {
		if o.res.Status != StatusFault {
			t.Fatalf("without kTLS: %v (%v), want EIO", o.res.Status, o.res.Err)
		}
		return
	}
	if o.res.Status != StatusOK || o.peerErr != nil || len(o.res.RemoteAuth) != 1 || o.res.RemoteAuth[0] == 0 {
		t.Fatalf("handshake: %+v; peer: %v", o.res, o.peerErr)
	}
	// remote-auth is a key that holds the client's certificate.
	desc, err := unix.KeyctlString(unix.KEYCTL_DESCRIBE, int(o.res.RemoteAuth[0]))
	if err != nil || !strings.Contains(desc, ";TLS x509 127.0.0.1:") {
		t.Errorf("remote-auth %d: %q, %v", o.res.RemoteAuth[0], desc, err)
	}
	// No session ticket was sent: nothing arrives after the handshake.
	peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := peer.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("after the handshake the client read %d bytes, %v; want nothing", n, err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	exchange(t, o)
}

func TestStatusErrno(t *testing.T) {
	for s, want := range map[Status]unix.Errno{StatusOK: 0, StatusRejected: unix.EACCES, StatusNoKey: unix.ENOKEY,
		StatusInvalid: unix.EINVAL, StatusFault: unix.EIO, StatusTimedOut: unix.ETIMEDOUT, Status(99): unix.EIO} {
		if got := s.errno(); got != uint32(want) {
			t.Errorf("%v.errno() = %d, want %d", s, got, want)
		}
	}
}

// TestHandshakeNonblockingConsumer: a consumer whose socket file is
// non-blocking keeps it so. os.File.Fd, which net.FileConn calls, makes a
// non-blocking file blocking before the dup sets O_NONBLOCK again
// (net/file_unix.go, dupFileSocket): the saved flags are what counts.
func TestHandshakeNonblockingConsumer(t *testing.T) {
	fd, _ := consumer(t)
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	before, err := saveSockState(fd)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "consumer")
	defer f.Close()
	req := &Request{Sockfd: fd, Type: ClientHello, Auth: AuthUnauth, Peername: "localhost", TimeoutMillis: 100}
	res, release := handshakeOn(context.Background(), &Config{Logger: slog.New(slog.DiscardHandler)}, testKeys(t), f, req)
	after, err := saveSockState(fd)
	release()
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusTimedOut {
		t.Errorf("status %v (%v), want ETIMEDOUT from a silent peer", res.Status, res.Err)
	}
	if after != before || after.flags&unix.O_NONBLOCK == 0 {
		t.Errorf("socket state after %+v, before %+v", after, before)
	}
}

// TestHandshakeKeyringCredentials: the server's certificate and key come
// from the key serials the request names, in a keyring it names, as the
// kernel's consumers hand them over (DER in "user" keys). The stock client
// verifies that certificate; with kTLS DONE says 0, without it EIO (not
// ENOKEY: the key material was there).
func TestHandshakeKeyringCredentials(t *testing.T) {
	ok := kernelTLS13(t)
	p := testpki.Get()
	keys := testKeys(t)
	// The keys are added on the agent's keyring thread, as the kernel
	// links them into the accepting thread's keyring (keythread_linux.go):
	// the test thread's own keyrings may be others.
	var ring, certSerial, keySerial int
	var err error
	keys.do(func() { ring, err = unix.AddKey("keyring", "ktls-handshake-test", nil, unix.KEY_SPEC_PROCESS_KEYRING) })
	if err != nil {
		if testenv.InVM() {
			t.Fatal(err)
		}
		t.Skipf("no keyrings here: %v", err)
	}
	defer keys.do(func() { unix.KeyctlInt(unix.KEYCTL_UNLINK, ring, unix.KEY_SPEC_PROCESS_KEYRING, 0, 0) })
	cert := p.ECDSA()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keys.do(func() {
		if certSerial, err = unix.AddKey("user", "ktls test cert", cert.Certificate[0], ring); err == nil {
			keySerial, err = unix.AddKey("user", "ktls test key", keyDER, ring)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Logger: slog.New(slog.DiscardHandler)}
	req := Request{Type: ServerHello, Auth: AuthX509, Cert: uint32(certSerial), PrivKey: uint32(keySerial), Keyring: uint32(ring), TimeoutMillis: 5000}
	o, _ := run(t, cfg, req, &tls.Config{RootCAs: p.Pool, ServerName: "localhost"}, true)
	if o.peerErr != nil {
		t.Fatalf("the client did not take the keyring's certificate: %v", o.peerErr)
	}
	want := StatusOK
	if !ok {
		want = StatusFault
	}
	if o.res.Status != want {
		t.Fatalf("status %v (%v), want %v", o.res.Status, o.res.Err, want)
	}
	if ok {
		exchange(t, o)
	}
}

// TestLinkKeyring links a keyring into the session keyring by name, as
// ktls tlshd does with .nvme, .nfs and .nfsd, and by serial.
func TestLinkKeyring(t *testing.T) {
	keys := testKeys(t)
	// Made on the keyring thread, which then possesses it and may link
	// it (keythread_linux.go).
	var ring int
	var err error
	keys.do(func() { ring, err = unix.AddKey("keyring", "ktls-link-test", nil, unix.KEY_SPEC_PROCESS_KEYRING) })
	if err != nil {
		if testenv.InVM() {
			t.Fatal(err)
		}
		t.Skipf("no keyrings here: %v", err)
	}
	defer keys.do(func() { unix.KeyctlInt(unix.KEYCTL_UNLINK, ring, unix.KEY_SPEC_PROCESS_KEYRING, 0, 0) })
	for _, name := range []string{"ktls-link-test", strconv.Itoa(ring)} {
		serial, err := linkKeyring(keys, name)
		if err != nil || serial != uint32(ring) {
			t.Errorf("linkKeyring(keys, %q) = %d, %v; want %d", name, serial, err, ring)
		}
		keys.do(func() { unix.KeyctlInt(unix.KEYCTL_UNLINK, ring, unix.KEY_SPEC_SESSION_KEYRING, 0, 0) })
	}
	if _, err := linkKeyring(keys, ".no-such-keyring"); err == nil || !strings.HasPrefix(err.Error(), "handshake: ") {
		t.Errorf("linkKeyring(keys, .no-such-keyring) = %v", err)
	}
}

// TestKeyringsArePerThread is why every keyring call of the agent runs on
// one thread (keythread_linux.go): a session keyring one thread joins is
// that thread's alone, and a key in it, readable only by its possessor, is
// out of reach of the process's other threads.
func TestKeyringsArePerThread(t *testing.T) {
	type added struct {
		key int
		err error
	}
	ch := make(chan added)
	release := make(chan struct{})
	go func() {
		// The thread ends with this goroutine: it is never unlocked, so
		// its new session keyring leaves with it.
		runtime.LockOSThread()
		var a added
		if _, a.err = unix.KeyctlJoinSessionKeyring("ktls-thread-test"); a.err == nil {
			a.key, a.err = unix.AddKey("user", "ktls-thread-test", []byte("secret"), unix.KEY_SPEC_SESSION_KEYRING)
		}
		if a.err == nil {
			// Possessor: everything; others: nothing (KEY_POS_ALL,
			// include/linux/key.h).
			a.err = unix.KeyctlSetperm(a.key, 0x3f000000)
		}
		ch <- a
		<-release
	}()
	a := <-ch
	defer close(release)
	if a.err != nil {
		if testenv.InVM() {
			t.Fatal(a.err)
		}
		t.Skipf("no keyrings here: %v", a.err)
	}
	var err error
	testKeys(t).do(func() { _, err = readKey(uint32(a.key)) })
	if err == nil {
		t.Fatal("another thread read a key only its possessor may read: keyrings would be per process, and the keyring thread needless")
	}
	t.Logf("as expected, from another thread: %v", err)
}
