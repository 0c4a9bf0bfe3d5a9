package benchmarks

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// wwwHeader is what openssl s_server -WWW sends before a file (apps/s_server.c,
// www_body); the Go servers send the same, so that every row moves the same
// bytes.
const wwwHeader = "HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\n"

// BenchmarkSendfile serves one file per op, on a new connection: a server of
// the kind under test answers "GET /file" with wwwHeader and io.Copy(conn,
// file), which is sendfile(2) for tcp and ktls-kernel; openssl-ktls is
// OpenSSL's own `s_server -WWW -sendfile` with kTLS on, serving the same
// file. One client reads it all (TLS 1.3, AES-128-GCM; see fetch), in a
// process of its own, so that cpu-s/GiB is the server's CPU time alone
// (s_server's for openssl-ktls). The size is 256 MiB;
// KTLS_BENCH_SENDFILE_MIB changes it.
func BenchmarkSendfile(b *testing.B) {
	size := int64(256)
	if v := os.Getenv("KTLS_BENCH_SENDFILE_MIB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("KTLS_BENCH_SENDFILE_MIB=%q: want a positive number of MiB", v)
		}
		size = n
	}
	size <<= 20
	path := sendfileFile(b, size)
	for _, conn := range []string{"tcp", "crypto-tls", "ktls-userspace", "ktls-kernel", "openssl-ktls"} {
		b.Run(fmt.Sprintf("size=%s/conn=%s", sizeName(int(size)), conn), func(b *testing.B) {
			var addr string
			var serveErr func() error
			var stopSServer func() time.Duration
			if conn == "openssl-ktls" {
				addr, stopSServer = startSServer(b, filepath.Dir(path))
			} else {
				addr, serveErr = startFileServer(b, conn, path)
			}
			want := int64(len(wwwHeader)) + size
			var stat0 map[string]int64
			if conn == "openssl-ktls" {
				stat0, _ = testenv.TLSStat()
			}
			b.SetBytes(size)
			b.ResetTimer()
			m := startMeter()
			for range b.N {
				if n, err := fetchProcess(addr, filepath.Base(path), conn == "tcp"); err != nil || n != want {
					if serveErr != nil && serveErr() != nil {
						err = serveErr()
					}
					b.Fatalf("fetched %d bytes, want %d: %v", n, want, err)
				}
			}
			b.StopTimer()
			if stopSServer != nil {
				// The server is s_server: its CPU time, not this
				// process's.
				m.reportCPU(b, int64(b.N)*size, stopSServer())
			} else {
				m.report(b, int64(b.N)*size)
			}
			if conn == "openssl-ktls" {
				// An anchor that fell back to user space would be no
				// anchor: the kernel must count s_server's TX socket.
				stat1, err := testenv.TLSStat()
				if err != nil || stat1["TlsTxSw"] <= stat0["TlsTxSw"] {
					b.Fatalf("s_server did not put TX in the kernel (TlsTxSw %d -> %d, %v)", stat0["TlsTxSw"], stat1["TlsTxSw"], err)
				}
			}
		})
	}
}

var sendfileDir struct {
	sync.Mutex
	dir string
}

// sendfileFile returns a file of size random bytes, made once per process
// (TestMain removes it).
func sendfileFile(b *testing.B, size int64) string {
	sendfileDir.Lock()
	defer sendfileDir.Unlock()
	if sendfileDir.dir == "" {
		dir, err := os.MkdirTemp("", "ktls-bench-")
		if err != nil {
			b.Fatal(err)
		}
		sendfileDir.dir = dir
	}
	path := filepath.Join(sendfileDir.dir, fmt.Sprintf("file-%d", size))
	if fi, err := os.Stat(path); err == nil && fi.Size() == size {
		return path
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	return path
}

func removeSendfileDir() {
	sendfileDir.Lock()
	defer sendfileDir.Unlock()
	if sendfileDir.dir != "" {
		os.RemoveAll(sendfileDir.dir)
	}
}

// startFileServer serves path to every connection as described at
// BenchmarkSendfile until the benchmark ends. serveErr returns the first
// error a connection met.
func startFileServer(b *testing.B, conn, path string) (addr string, serveErr func() error) {
	requireKernel(b, conn, tls.VersionTLS13, 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	_, scfg := configs(tls.VersionTLS13, 0)
	var mu sync.Mutex
	var first error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := serveFile(conn, raw, scfg, path); err != nil {
					fail(err)
				}
			}()
		}
	}()
	b.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().String(), func() error {
		mu.Lock()
		defer mu.Unlock()
		return first
	}
}

func serveFile(conn string, raw net.Conn, scfg *tls.Config, path string) error {
	defer raw.Close()
	c := raw
	if conn != "tcp" {
		h := wrap(conn, raw, scfg, false)
		if err := h.Handshake(); err != nil {
			return err
		}
		c = h
	}
	defer c.Close()
	if k, ok := c.(*ktls.Conn); ok {
		if want, got := conn[len("ktls-"):], k.Backend(); got.TX != want {
			return fmt.Errorf("%s: engines %+v", conn, got)
		}
	}
	req := bufio.NewReader(c)
	for {
		line, err := req.ReadString('\n')
		if err != nil {
			return fmt.Errorf("reading the request: %w", err)
		}
		if line == "\r\n" {
			break
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.WriteString(c, wwwHeader); err != nil {
		return err
	}
	_, err = io.Copy(c, f)
	return err
}

// fetch asks addr for name and returns the bytes of the answer, header
// included, up to the server's close; plain asks over TCP without TLS. The
// client is the same for every TLS row: ktls receiving in the kernel where
// kTLS exists, the cheapest reader there (in the VM, where one emulated CPU
// runs both ends, a costly client would hide the servers' differences), and
// stock crypto/tls elsewhere.
func fetch(addr, name string, plain bool, ccfg *tls.Config) (int64, error) {
	var c net.Conn
	var err error
	switch {
	case plain:
		c, err = net.Dial("tcp", addr)
	case kernel.Probe(false, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256) == nil:
		c, err = ktls.Dial("tcp", addr, ccfg, ktls.WithBackend("rx=kernel"), ktls.WithStrict())
	default:
		c, err = tls.Dial("tcp", addr, ccfg)
	}
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := io.WriteString(c, "GET /"+name+" HTTP/1.0\r\n\r\n"); err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, c)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// s_server may close without close_notify after the file.
		err = nil
	}
	return n, err
}

// fetchEnv makes the test binary a client: TestMain runs fetchMain.
const fetchEnv = "KTLS_BENCH_FETCH"

// fetchProcess runs fetch in a new process of this test binary and returns
// the bytes it read.
func fetchProcess(addr, name string, plain bool) (int64, error) {
	cmd := exec.Command(os.Args[0])
	leaf := sha256.Sum256(testpki.Get().ECDSA().Certificate[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %t %x", fetchEnv, addr, name, plain, leaf))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("the client process: %w", err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}

// fetchMain is the client process: it prints the bytes it read.
func fetchMain(spec string) {
	var addr, name string
	var plain bool
	var leaf []byte
	if _, err := fmt.Sscanf(spec, "%s %s %t %x", &addr, &name, &plain, &leaf); err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", fetchEnv, spec, err)
		os.Exit(2)
	}
	// The test PKI is made anew in each process: the client pins the
	// server's certificate by its hash instead of trusting a CA.
	ccfg := &tls.Config{
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(certs [][]byte, _ [][]*x509.Certificate) error {
			if len(certs) == 0 {
				return errors.New("no server certificate")
			}
			if h := sha256.Sum256(certs[0]); !bytes.Equal(h[:], leaf) {
				return errors.New("not the benchmark server's certificate")
			}
			return nil
		},
		MinVersion: tls.VersionTLS13,
	}
	n, err := fetch(addr, name, plain, ccfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fetch: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(n)
	os.Exit(0)
}

var acceptRE = regexp.MustCompile(`ACCEPT 127\.0\.0\.1:(\d+)`)

// startSServer starts openssl s_server -WWW -sendfile in dir, with kTLS
// turned on by its configuration (OpenSSL 3.0 has no command-line flag for
// it), and returns its address. It skips where kTLS or openssl is missing.
func startSServer(b *testing.B, dir string) (addr string, stop func() time.Duration) {
	requireKernel(b, "ktls-kernel", tls.VersionTLS13, 0)
	bin, err := exec.LookPath("openssl")
	if err != nil {
		if testenv.InVM() {
			b.Fatalf("no openssl in the VM, whose harness packs it: %v", err)
		}
		b.Skipf("no openssl: %v", err)
	}
	conf := filepath.Join(b.TempDir(), "openssl.cnf")
	certFile, keyFile := testpki.Get().WriteECDSA(b.TempDir())
	if err := os.WriteFile(conf, []byte("openssl_conf = openssl_init\n[openssl_init]\nssl_conf = ssl_sect\n[ssl_sect]\nsystem_default = system_default_sect\n[system_default_sect]\nOptions = KTLS\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "s_server", "-accept", "127.0.0.1:0", "-cert", certFile, "-key", keyFile,
		"-WWW", "-sendfile", "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OPENSSL_CONF="+conf)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		b.Fatal(err)
	}
	var once sync.Once
	var used time.Duration
	stop = func() time.Duration {
		once.Do(func() {
			cancel()
			cmd.Wait()
			if st := cmd.ProcessState; st != nil {
				used = st.UserTime() + st.SystemTime()
			}
		})
		return used
	}
	b.Cleanup(func() { stop() })
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := acceptRE.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case p := <-port:
		return "127.0.0.1:" + p, stop
	case <-time.After(30 * time.Second):
		b.Fatal("s_server did not report its port")
	}
	return "", stop
}
