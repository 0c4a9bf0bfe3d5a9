package ktls_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ktls-go/ktls/internal/ktlstest"
	"github.com/ktls-go/ktls/internal/testenv"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testpki"
)

// TestInteropStock runs every suite in both roles against stock crypto/tls:
// data both ways at once, checked by hash, and the engine that carried it.
func TestInteropStock(t *testing.T) {
	size := 4 << 20
	if testing.Short() {
		size = 256 << 10
	}
	for _, sc := range ktlstest.InteropSuites {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			st := k.ConnectionState()
			if st.Version != sc.Version || (sc.Suite != 0 && st.CipherSuite != sc.Suite) {
				t.Fatalf("negotiated %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
			}
			ktlstest.WantAuto(t, k)
			testenv.Exchange(t, k, s, size)
			testenv.Exchange(t, k, s, 1)
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// TestLargeTransfer moves 64 MiB each way (32 MiB in short mode... 8 MiB)
// through each role, checked by hash.
func TestLargeTransfer(t *testing.T) {
	size := 64 << 20
	if testing.Short() {
		size = 8 << 20
	}
	for _, sc := range []ktlstest.SuiteCase{{Version: tls.VersionTLS13, Suite: 0}, {Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}} {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			ktlstest.WantAuto(t, k)
			testenv.Exchange(t, k, s, size)
		}))
	}
}

// TestOneByteWrites sends a stream of one-byte writes each way.
func TestOneByteWrites(t *testing.T) {
	for _, sc := range []ktlstest.SuiteCase{{Version: tls.VersionTLS13, Suite: 0}, {Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}} {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			const n = 300
			for _, dir := range []struct {
				w io.Writer
				r io.Reader
			}{{k, s}, {s, k}} {
				errc := make(chan error, 1)
				go func() {
					for i := range n {
						if _, err := dir.w.Write([]byte{byte(i)}); err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
				got := make([]byte, n)
				if _, err := io.ReadFull(dir.r, got); err != nil {
					t.Fatal(err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				for i, b := range got {
					if b != byte(i) {
						t.Fatalf("byte %d = %d", i, b)
					}
				}
			}
		}))
	}
}

// TestClientCertALPN uses client certificates and ALPN in both roles.
func TestClientCertALPN(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			p := testpki.Get()
			ccfg, scfg := testpki.Configs(v, 0)
			ccfg.Certificates = []tls.Certificate{p.Client()}
			ccfg.NextProtos = []string{"h2", "http/1.1"}
			scfg.ClientAuth = tls.RequireAndVerifyClientCert
			scfg.ClientCAs = p.Pool
			scfg.NextProtos = []string{"http/1.1"}
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
			st := k.ConnectionState()
			if st.NegotiatedProtocol != "http/1.1" {
				t.Fatalf("ALPN = %q", st.NegotiatedProtocol)
			}
			if !ktlsClient && len(st.PeerCertificates) != 1 {
				t.Fatalf("server saw %d client certificates", len(st.PeerCertificates))
			}
			ktlstest.WantAuto(t, k)
			testenv.Exchange(t, k, s, 100<<10)
		}))
	}
}

// TestResumption resumes a session on a second connection, in both roles and
// both versions, with the record layer moved on both connections. For a TLS
// 1.3 ktls client this needs the tickets that arrive after the handshake to
// reach crypto/tls's session cache with RX moved.
func TestResumption(t *testing.T) {
	for _, sc := range []ktlstest.SuiteCase{{Version: tls.VersionTLS13, Suite: 0}, {Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}} {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i, wantResume := range []bool{false, true, true} {
				k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
				// The server speaks first: on TLS 1.3 the client's ticket
				// is read (by crypto/tls, in the drain) before the data.
				testenv.Exchange(t, k, s, 10<<10)
				if got := k.ConnectionState().DidResume; got != wantResume {
					t.Fatalf("connection %d: DidResume = %v, want %v", i, got, wantResume)
				}
				ktlstest.WantAuto(t, k)
				k.Close()
				s.Close()
			}
		}))
	}
}

// TestForcedBackend forces each engine that exists here, through the option
// and through KTLS_BACKEND, which wins.
func TestForcedBackend(t *testing.T) {
	for _, tc := range []struct {
		env, opt string
		tx, rx   string
	}{
		{"", "stdlib", "stdlib", "stdlib"},
		{"", "userspace", "userspace", "userspace"},
		{"stdlib", "userspace", "stdlib", "stdlib"},
		{"userspace", "stdlib", "userspace", "userspace"},
		{"tx=userspace,rx=stdlib", "", "stdlib", "stdlib"},
		{"", "tx=userspace,rx=userspace", "userspace", "userspace"},
	} {
		t.Run(fmt.Sprintf("env=%s,opt=%s", tc.env, tc.opt), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			t.Setenv("KTLS_BACKEND", tc.env)
			var opts []ktls.Option
			if tc.opt != "" {
				opts = append(opts, ktls.WithBackend(tc.opt))
			}
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg, opts...)
			ktlstest.WantBackend(t, k, tc.tx, tc.rx)
			if k.Backend().Reason == "" {
				t.Error("Backend().Reason is empty")
			}
			testenv.Exchange(t, k, s, 300<<10)
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// TestBadBackendSpec checks that a malformed KTLS_BACKEND fails clearly,
// naming the accepted values.
func TestBadBackendSpec(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "kernal")
	_, err := ktls.Dial("tcp", "127.0.0.1:1", &tls.Config{})
	if err == nil || !strings.Contains(err.Error(), "kernal") || !strings.Contains(err.Error(), "userspace") {
		t.Fatalf("Dial with KTLS_BACKEND=kernal: %v", err)
	}
	rc, _ := testenv.TCPPair(t)
	c := ktls.Client(rc, &tls.Config{InsecureSkipVerify: true})
	if err := c.Handshake(); err == nil || !strings.Contains(err.Error(), "kernal") {
		t.Fatalf("Handshake with KTLS_BACKEND=kernal: %v", err)
	}
}

// TestConcurrentReadWrite reads and writes at once from several goroutines'
// worth of traffic on one connection, under the race detector.
func TestConcurrentReadWrite(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, s := ktlstest.PairWithStock(t, true, ccfg, scfg)
	// The stock side echoes.
	go io.Copy(s, s)
	const chunks, size = 64, 8 << 10
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range chunks {
			if _, err := k.Write(testenv.Pattern(size, byte(i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range chunks {
		got := make([]byte, size)
		if _, err := io.ReadFull(k, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != string(testenv.Pattern(size, byte(i))) {
			t.Fatalf("chunk %d differs", i)
		}
	}
	wg.Wait()
}

// TestDialListen uses the package-level Dial and Listen end to end.
func TestDialListen(t *testing.T) {
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	l, err := ktls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	ccfg.ServerName = ""
	ccfg.InsecureSkipVerify = false
	c, err := ktls.Dial("tcp", l.Addr().String(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ktlstest.WantAuto(t, c)
	msg := []byte("hello over ktls")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo = %q", got)
	}
	var _ net.Conn = c
}

// TestUserConfigHooks checks that ktls leaves the user's config working as in
// crypto/tls: the user's KeyLogWriter still gets every line, the user's
// config is not modified, and a config returned by GetConfigForClient is used
// (its certificate, its ALPN) and resumes sessions across connections.
func TestUserConfigHooks(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			ccfg, inner := testpki.Configs(v, 0)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			inner.NextProtos = []string{"inner"}
			var keyLog strings.Builder
			var mu sync.Mutex
			var called int
			outer := &tls.Config{
				KeyLogWriter: lockedWriter{&mu, &keyLog},
				GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
					mu.Lock()
					called++
					mu.Unlock()
					return inner, nil
				},
			}
			inner.KeyLogWriter = outer.KeyLogWriter
			ccfg.NextProtos = []string{"inner"}
			for i := range 2 {
				k, s := ktlstest.PairWithStock(t, false, ccfg, outer)
				testenv.Exchange(t, k, s, 1000)
				st := k.ConnectionState()
				if st.NegotiatedProtocol != "inner" {
					t.Fatalf("ALPN %q: the GetConfigForClient config was not used", st.NegotiatedProtocol)
				}
				if st.DidResume != (i == 1) {
					t.Fatalf("connection %d: DidResume = %v", i, st.DidResume)
				}
				ktlstest.WantAuto(t, k)
				k.Close()
				s.Close()
			}
			for _, c := range []*tls.Config{outer, inner} {
				if c.WrapSession != nil || c.UnwrapSession != nil || c.KeyLogWriter != outer.KeyLogWriter {
					t.Fatal("ktls modified the user's config")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if called != 2 {
				t.Fatalf("GetConfigForClient called %d times", called)
			}
			want := "CLIENT_RANDOM"
			if v == tls.VersionTLS13 {
				want = "SERVER_TRAFFIC_SECRET_0"
			}
			if !strings.Contains(keyLog.String(), want) {
				t.Fatalf("the user's KeyLogWriter got no %s line:\n%s", want, keyLog.String())
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestWriteTo copies from ktls with io.Copy, which is Conn.WriteTo, into
// each kind of destination: those the kernel engine splices into (a pipe, a
// regular file, a TCP socket) and a plain writer, for every suite in both
// roles, with the engines auto picks (in the VM: splice where RX is in the
// kernel, Read otherwise). The peer's session tickets and close_notify come
// between and after the data.
func TestWriteTo(t *testing.T) {
	size := 1 << 20
	data := testenv.Pattern(size, 11)
	for _, tc := range ktlstest.InteropSuites {
		t.Run(tc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			for _, dst := range []string{"pipe", "file", "tcp", "buffer"} {
				t.Run(dst, func(t *testing.T) {
					ccfg, scfg := testpki.Configs(tc.Version, tc.Suite)
					ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
					k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg)
					defer k.Close()
					ktlstest.WantAuto(t, k)
					go func() {
						s.Write(data)
						s.Close()
					}()
					w, collect := writeToDst(t, dst)
					n, err := io.Copy(w, k)
					if err != nil || n != int64(size) {
						t.Fatalf("io.Copy = %d, %v; want %d, nil", n, err, size)
					}
					if got := collect(); !bytes.Equal(got, data) {
						t.Fatalf("%d bytes arrived, %d sent, or they differ", len(got), size)
					}
				})
			}
		}))
	}
}

// TestWriteToStdlib: with crypto/tls's own record layer, WriteTo copies
// through crypto/tls.
func TestWriteToStdlib(t *testing.T) {
	data := testenv.Pattern(1<<20, 12)
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, s := ktlstest.PairWithStock(t, true, ccfg, scfg, ktls.WithBackend("stdlib"))
	defer k.Close()
	ktlstest.WantBackend(t, k, "stdlib", "stdlib")
	go func() {
		s.Write(data)
		s.Close()
	}()
	w, collect := writeToDst(t, "pipe")
	n, err := io.Copy(w, k)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("io.Copy = %d, %v; want %d, nil", n, err, len(data))
	}
	if !bytes.Equal(collect(), data) {
		t.Fatal("the data arrived changed")
	}
}

// writeToDst makes a destination of a kind for TestWriteTo, and a function
// that closes it and returns what it got.
func writeToDst(t *testing.T, kind string) (io.Writer, func() []byte) {
	t.Helper()
	drain := func(r io.ReadCloser, w io.Closer) func() []byte {
		res := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(r)
			r.Close()
			res <- b
		}()
		return func() []byte {
			w.Close()
			return <-res
		}
	}
	switch kind {
	case "pipe":
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return w, drain(r, w)
	case "file":
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		return f, func() []byte {
			f.Close()
			b, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	case "tcp":
		a, b := testenv.TCPPair(t)
		return a, drain(b, a)
	default:
		var buf bytes.Buffer
		return &buf, func() []byte { return buf.Bytes() }
	}
}
