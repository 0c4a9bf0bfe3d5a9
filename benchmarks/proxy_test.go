//go:build linux

package benchmarks

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// BenchmarkProxy moves size bytes per op through a TLS-terminating proxy
// in a process of its own: a crypto/tls client in this process, the proxy,
// and a plain TCP backend in this process again (proxyBackend). dir=up sends
// the bytes from the client to the backend, dir=down from the backend to
// the client; each op is a new connection, and the receiving end compares
// every byte with the payload. The conn= values are the proxies
// (proxyKinds):
//
//	tcp         plain TCP through a Go forwarder process (io.Copy between
//	            two TCP sockets, which Go splices): no TLS, the ceiling
//	ktls-proxy  `ktls proxy`, where cmd/ktls has it (skipped otherwise)
//	stunnel4    stunnel, foreground
//	hitch       hitch, one worker
//	haproxy     HAProxy, mode tcp, bind ... ssl crt, one thread
//	nginx       nginx stream with ssl_conf_command Options KTLS, one process
//
// A program that is not installed skips its rows with the reason; none is
// needed by `go test` without -bench. Next to MB/s (one direction per row),
// each row reports proxy-cpu-s/GiB, the user and system CPU time of the
// proxy's processes (the one started and its descendants, from
// /proc/PID/stat) per GiB moved, and proxy-io-B/B, the bytes they read and
// wrote through read(2)/write(2)-like calls (rchar + wchar of /proc/PID/io,
// proc(5)) per byte moved: about 2 for a proxy that copies every byte
// through its memory with read and write, 0 for one that splices. recv(2),
// send(2) and their kin are not counted, so for a proxy that uses them it is
// a lower bound; a Go proxy reads and writes its plain TCP side with read(2)
// and write(2), so any byte it copies is counted at least once.
// KTLS_BENCH_PROXY_MIB sets size (default 32); KTLS_BENCH_KTLS names a ktls
// binary to use instead of building ./cmd/ktls (proxy_peers_test.go).
func BenchmarkProxy(b *testing.B) {
	size := 32
	if v := os.Getenv("KTLS_BENCH_PROXY_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("KTLS_BENCH_PROXY_MIB=%q: want a positive number of MiB", v)
		}
		size = n
	}
	size <<= 20
	payload := make([]byte, size)
	if _, err := rand.Read(payload); err != nil {
		b.Fatal(err)
	}
	backend := startProxyBackend(b, payload)
	pki := writeProxyPKI(b)
	for _, kind := range proxyKinds {
		var inst *proxyInstance
		var skip string
		for _, s := range proxySuites {
			for _, dir := range []string{"up", "down"} {
				name := fmt.Sprintf("suite=%s/size=%s/dir=%s/conn=%s", s.name, sizeName(size), dir, kind.name)
				b.Run(name, func(b *testing.B) {
					if inst == nil && skip == "" {
						inst, skip = startProxy(b, kind, backend.addr, pki)
					}
					if skip != "" {
						b.Skip(skip)
					}
					var ccfg *tls.Config
					if kind.name != "tcp" {
						ccfg, _ = configs(s.version, s.suite)
					}
					buf := make([]byte, size)
					b.SetBytes(int64(size))
					b.ResetTimer()
					stat0, statErr := testenv.TLSStat()
					before := inst.usage(b)
					for range b.N {
						if err := proxyOp(inst.addr, ccfg, dir, payload, buf); err != nil {
							b.Fatalf("%s: %v (backend: %v; proxy: %s)", kind.name, err, backend.err(), inst.stderrTail())
						}
					}
					after := inst.usage(b)
					b.StopTimer()
					moved := float64(b.N) * float64(size)
					b.ReportMetric((after.cpu-before.cpu).Seconds()/(moved/(1<<30)), "proxy-cpu-s/GiB")
					b.ReportMetric(float64(after.io-before.io)/moved, "proxy-io-B/B")
					// The client is crypto/tls and the backend plain TCP:
					// the kernel's TLS sockets of these ops are the
					// proxy's (Documentation/networking/tls.rst,
					// Statistics).
					if stat1, err := testenv.TLSStat(); statErr == nil && err == nil {
						b.Logf("kTLS sockets the proxy set up in %d ops (/proc/net/tls_stat): TlsTxSw +%d, TlsRxSw +%d, TlsTxDevice +%d, TlsRxDevice +%d",
							b.N, stat1["TlsTxSw"]-stat0["TlsTxSw"], stat1["TlsRxSw"]-stat0["TlsRxSw"],
							stat1["TlsTxDevice"]-stat0["TlsTxDevice"], stat1["TlsRxDevice"]-stat0["TlsRxDevice"])
					}
				})
			}
		}
		if inst != nil {
			// ktls proxy's contract, and the forwarder's: exit 0 on
			// SIGTERM.
			if st := inst.stop(b); (kind.name == "ktls-proxy" || kind.name == "tcp") && !st.Success() {
				b.Errorf("%s: %v after SIGTERM: %s", kind.name, st, inst.stderrTail())
			}
		}
	}
}

// proxySuites are the suites the client offers, alone. The proxies allow
// TLS 1.2 and 1.3 and offer one TLS 1.3 suite (proxyTLS13Suite).
var proxySuites = []struct {
	name           string
	version, suite uint16
}{
	{"TLS13-AES128GCM", tls.VersionTLS13, 0}, // testpki.Configs: TLS 1.3 with crypto/tls's choice, AES-128-GCM on AES hardware
	{"TLS12-AES128GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
}

// proxyOp runs one op on a new connection to addr: TLS with ccfg unless it
// is nil, then the request line "up N" or "down N" and N bytes in that
// direction, checked against payload by whoever receives them.
func proxyOp(addr string, ccfg *tls.Config, dir string, payload, buf []byte) error {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Minute))
	c := raw
	if ccfg != nil {
		tc := tls.Client(raw, ccfg)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		st := tc.ConnectionState()
		want := uint16(tls.TLS_AES_128_GCM_SHA256)
		if len(ccfg.CipherSuites) > 0 {
			want = ccfg.CipherSuites[0]
		}
		if st.Version != ccfg.MaxVersion || st.CipherSuite != want {
			return fmt.Errorf("negotiated %s %s, want %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite),
				tls.VersionName(ccfg.MaxVersion), tls.CipherSuiteName(want))
		}
		defer tc.Close()
		c = tc
	}
	if _, err := fmt.Fprintf(c, "%s %d\n", dir, len(payload)); err != nil {
		return err
	}
	switch dir {
	case "up":
		if _, err := c.Write(payload); err != nil {
			return err
		}
		ack := make([]byte, 3)
		if _, err := io.ReadFull(c, ack); err != nil {
			return fmt.Errorf("reading the backend's answer: %w", err)
		}
		if string(ack) != "ok\n" {
			return fmt.Errorf("the backend answered %q: the bytes it got differ", ack)
		}
	case "down":
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("reading: %w", err)
		}
		if !bytes.Equal(buf, payload) {
			return errors.New("the bytes read differ from the backend's")
		}
	}
	return nil
}

// proxyBackend is the plain TCP server behind every proxy: it answers
// "up N" by reading N bytes and writing "ok\n" if they are the payload's
// ("no\n" if not), and "down N" by writing the payload.
type proxyBackend struct {
	addr string
	mu   sync.Mutex
	fail error
}

func (p *proxyBackend) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fail
}

func startProxyBackend(b *testing.B, payload []byte) *proxyBackend {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &proxyBackend{addr: l.Addr().String()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := serveProxyBackend(c, payload); err != nil {
					p.mu.Lock()
					if p.fail == nil {
						p.fail = err
					}
					p.mu.Unlock()
				}
			}()
		}
	}()
	b.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return p
}

func serveProxyBackend(c net.Conn, payload []byte) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	r := bufio.NewReaderSize(c, 64<<10)
	line, err := r.ReadString('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil // a readiness probe's connection
		}
		return fmt.Errorf("backend: reading the request: %w", err)
	}
	var dir string
	var n int
	if _, err := fmt.Sscanf(line, "%s %d\n", &dir, &n); err != nil || n != len(payload) {
		return fmt.Errorf("backend: request %q", line)
	}
	switch dir {
	case "up":
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("backend: reading: %w", err)
		}
		answer := "ok\n"
		if !bytes.Equal(buf, payload) {
			answer = "no\n"
		}
		_, err = io.WriteString(c, answer)
	case "down":
		_, err = c.Write(payload)
	default:
		return fmt.Errorf("backend: request %q", line)
	}
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	// Wait for the client to close, so that no byte is cut off by a reset.
	io.Copy(io.Discard, r)
	return nil
}
