package proxy_test

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"github.com/ktls-go/ktls/proxy"
)

func TestMain(m *testing.M) {
	if n := os.Getenv(childEnv); n != "" {
		os.Exit(childBackend(n))
	}
	testenv.MainWithLeakCheck(m)
}

// bytesEnv sets how many bytes the data tests move each way (default 4
// MiB); bigEnv=1 adds a 256 MiB-each-way case, too slow for the emulated
// kernels of the VM matrix (AES at about 15 MB/s under TCG).
const (
	bytesEnv = "KTLS_PROXY_TEST_BYTES"
	bigEnv   = "KTLS_PROXY_TEST_BIG"
)

func testBytes(t testing.TB) int {
	t.Helper()
	if v := os.Getenv(bytesEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: want a byte count", bytesEnv, v)
		}
		return n
	}
	return 4 << 20
}

// caseBytes is the size of case i of a matrix: testBytes for the first,
// a quarter of it for the others, which check the suites and the peers
// more than the volume (the VMs' emulated CPUs make volume dear).
func caseBytes(t testing.TB, i int) int {
	if i == 0 {
		return testBytes(t)
	}
	return testBytes(t) / 4
}

var (
	patternsMu sync.Mutex
	patterns   = map[[2]int][]byte{}
)

// pattern is testenv.Pattern, made once per size and seed.
func pattern(n int, seed byte) []byte {
	patternsMu.Lock()
	defer patternsMu.Unlock()
	k := [2]int{n, int(seed)}
	if b, ok := patterns[k]; ok {
		return b
	}
	b := testenv.Pattern(n, seed)
	patterns[k] = b
	return b
}

// newProxy returns a Proxy that logs into the returned buffer and forces
// the kernel engine where it serves (not strictly: elsewhere the automatic
// choice, userspace on a host without kTLS), so that even ChaCha20's RX,
// which auto keeps in user space, is asserted on the kernel in the VM.
func newProxy(t testing.TB) (*proxy.Proxy, *testenv.Buffer) {
	log := &testenv.Buffer{}
	p := &proxy.Proxy{
		Logger:           slog.New(slog.NewTextHandler(log, nil)),
		HandshakeTimeout: 30 * time.Second,
		Options:          []ktls.Option{ktls.WithBackend("kernel")},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", log)
		}
	})
	return p, log
}

// serve runs p on a new loopback listener with l, and returns its address.
// The cleanup closes p and waits for Serve to return.
func serve(t testing.TB, p *proxy.Proxy, l *proxy.Listener) string {
	t.Helper()
	ln, err := proxy.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, p, l, ln)
}

func serveOn(t testing.TB, p *proxy.Proxy, l *proxy.Listener, ln net.Listener) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln, l) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("Serve = %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// backend is a plain TCP server of the tests; each connection goes to
// handle, in its own goroutine.
type backend struct {
	ln   net.Listener
	wg   sync.WaitGroup
	addr string
}

func startBackend(t testing.TB, handle func(c net.Conn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startBackendOn(t, ln, handle)
}

func startBackendOn(t testing.TB, ln net.Listener, handle func(c net.Conn)) *backend {
	b := &backend{ln: ln, addr: ln.Addr().String()}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Minute))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.wg.Wait()
	})
	return b
}

// result is what one end of an exchange saw.
type result struct {
	n   int64
	sum [32]byte
	err error
}

// readAll reads r to its end and hashes what it read.
func readAll(r io.Reader) result {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return result{n: n, sum: [32]byte(h.Sum(nil)), err: err}
}

func (r result) check(t testing.TB, who string, want []byte) {
	t.Helper()
	if r.err != nil {
		t.Errorf("%s: reading: %v (after %d bytes)", who, r.err, r.n)
		return
	}
	if r.n != int64(len(want)) || r.sum != sha256.Sum256(want) {
		t.Errorf("%s: read %d bytes, hash %x; want %d bytes, hash %x", who, r.n, r.sum[:8], len(want), sha256.Sum256(want))
	}
}

type halfCloser interface {
	io.ReadWriter
	CloseWrite() error
}

// exchange is one end of the tests' protocol: it sends out and half-closes,
// and reads to the end at the same time; with sendFirst, it sends and
// half-closes before it reads anything.
func exchange(c halfCloser, out []byte, sendFirst bool) result {
	send := func() error {
		if _, err := c.Write(out); err != nil {
			return err
		}
		return c.CloseWrite()
	}
	if sendFirst {
		if err := send(); err != nil {
			return result{err: err}
		}
		return readAll(c)
	}
	errc := make(chan error, 1)
	go func() { errc <- send() }()
	r := readAll(c)
	if err := <-errc; err != nil && r.err == nil {
		r.err = fmt.Errorf("sending: %w", err)
	}
	return r
}

// echoBackend is a backend end of the tests' protocol, which sends
// pattern(n, 2) and reports what it read on got.
func exchangeBackend(t testing.TB, n int, sendFirst bool) (*backend, chan result) {
	got := make(chan result, 16)
	b := startBackend(t, func(c net.Conn) {
		got <- exchange(c.(*net.TCPConn), pattern(n, 2), sendFirst)
	})
	return b, got
}

func recv[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(2 * time.Minute):
		t.Fatalf("no %s in 2 minutes", what)
		panic("unreachable")
	}
}

// wantEngine is the engine a direction of the proxy's TLS connections must
// get with the kernel engine asked for (newProxy): kernel where this
// kernel's kTLS serves the suite, which inside the VM it must, and the
// automatic choice, userspace, elsewhere.
func wantEngine(t testing.TB, tx bool, version, suite uint16) string {
	t.Helper()
	err := kernel.Probe(tx, version, suite)
	if err == nil {
		return "kernel"
	}
	if f := testenv.KTLSFeature(version, suite); testenv.InVM() && testenv.ExpectedInVM(f) {
		t.Fatalf("kTLS (%s) must serve %s %s in the VM: %v", f, tls.VersionName(version), tls.CipherSuiteName(suite), err)
	}
	return "userspace"
}

// checkEngines checks that the proxy's one connection of version and suite
// moved sealed bytes on the TX engine it must have, and opened bytes on
// the RX one.
func checkEngines(t testing.TB, p *proxy.Proxy, version, suite uint16, sealed, opened int) {
	t.Helper()
	st := waitIdle(t, p)
	tx, rx := wantEngine(t, true, version, suite), wantEngine(t, false, version, suite)
	if e := st.Engines[tx]; e.Sealed != uint64(sealed) || e.TXConns != 1 {
		t.Errorf("engine %s sealed %d bytes on %d connections, want %d on 1 (all: %+v)", tx, e.Sealed, e.TXConns, sealed, st.Engines)
	}
	if e := st.Engines[rx]; e.Opened != uint64(opened) || e.RXConns != 1 {
		t.Errorf("engine %s opened %d bytes on %d connections, want %d on 1 (all: %+v)", rx, e.Opened, e.RXConns, opened, st.Engines)
	}
}

// waitIdle waits for the proxy's connections to end, and returns its
// counters then.
func waitIdle(t testing.TB, p *proxy.Proxy) proxy.Stats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := p.Stats()
		if st.Active == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open: %+v", st.Active, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLog waits for s in the log.
func waitLog(t testing.TB, log *testenv.Buffer, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q:\n%s", s, log)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pkiFiles writes the test CA and the ECDSA server certificate and key as
// PEM files.
func pkiFiles(t testing.TB) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = testpki.Get().WriteECDSA(dir)
	caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testpki.Get().CADER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, certFile, keyFile
}

// childEnv makes the test binary a backend in a process of its own (see
// childBackend), for the tests that count the proxy's own reads and writes
// in /proc/self/io.
const childEnv = "KTLS_PROXY_TEST_CHILD"

// childBackend listens on loopback and writes "addr ADDR"; for its one
// connection it reads n bytes and writes "received HASH", waits for a line
// on stdin, then sends pattern(n, 2), half-closes, reads to the end and
// exits 0.
func childBackend(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("addr %s\n", ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h := sha256.New()
	if _, err := io.CopyN(h, c, int64(n)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("received %s\n", hex.EncodeToString(h.Sum(nil)))
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := c.Write(testenv.Pattern(n, 2)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
	c.Close()
	return 0
}

// procIO returns this process's rchar+wchar (/proc/self/io,
// Documentation/filesystems/proc.rst): the bytes it moved with read(2),
// write(2) and their kin, which splice(2) and sendfile(2) do not count.
func procIO(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, line := range strings.Split(string(b), "\n") {
		for _, k := range []string{"rchar: ", "wchar: "} {
			if v, ok := strings.CutPrefix(line, k); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				sum += n
			}
		}
	}
	return sum
}
