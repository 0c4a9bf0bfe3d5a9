package ktls_test

import (
	"crypto/fips140"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// The counters are process-wide, and other tests move them too. These tests
// are sequential (no t.Parallel), so while one runs no other test of the
// package does, and each compares the counters' movement with exactly what
// its own connections did.

// delta is after minus before, field by field.
func delta(before, after ktls.Counters) ktls.Counters {
	e := func(b, a ktls.EngineCounters) ktls.EngineCounters {
		return ktls.EngineCounters{Kernel: a.Kernel - b.Kernel, NIC: a.NIC - b.NIC, AFALG: a.AFALG - b.AFALG,
			Userspace: a.Userspace - b.Userspace, Stdlib: a.Stdlib - b.Stdlib}
	}
	f := func(b, a ktls.FallbackCounters) ktls.FallbackCounters {
		return ktls.FallbackCounters{FIPS: a.FIPS - b.FIPS, Suite: a.Suite - b.Suite, Uncertain: a.Uncertain - b.Uncertain, Paired: a.Paired - b.Paired,
			Wrapped: a.Wrapped - b.Wrapped, Forced: a.Forced - b.Forced, Refused: a.Refused - b.Refused,
			Unavailable: a.Unavailable - b.Unavailable, Strict: a.Strict - b.Strict}
	}
	return ktls.Counters{
		TX:                 ktls.DirectionCounters{Connections: e(before.TX.Connections, after.TX.Connections), Bytes: e(before.TX.Bytes, after.TX.Bytes)},
		RX:                 ktls.DirectionCounters{Connections: e(before.RX.Connections, after.RX.Connections), Bytes: e(before.RX.Bytes, after.RX.Bytes)},
		Fallbacks:          ktls.FallbackDirections{TX: f(before.Fallbacks.TX, after.Fallbacks.TX), RX: f(before.Fallbacks.RX, after.Fallbacks.RX)},
		HandshakeFailures:  after.HandshakeFailures - before.HandshakeFailures,
		SendfileBytes:      after.SendfileBytes - before.SendfileBytes,
		SpliceReadBytes:    after.SpliceReadBytes - before.SpliceReadBytes,
		SpliceWriteBytes:   after.SpliceWriteBytes - before.SpliceWriteBytes,
		KeyUpdatesSent:     after.KeyUpdatesSent - before.KeyUpdatesSent,
		KeyUpdatesReceived: after.KeyUpdatesReceived - before.KeyUpdatesReceived,
	}
}

// wantDelta checks that the counters moved from before by exactly want.
func wantDelta(t *testing.T, before ktls.Counters, want ktls.Counters) {
	t.Helper()
	if got := delta(before, ktls.Stats()); got != want {
		t.Errorf("the counters moved by\n%+v\nwant\n%+v", got, want)
	}
}

// one returns EngineCounters with n for engine name.
func one(name string, n uint64) ktls.EngineCounters {
	var e ktls.EngineCounters
	switch name {
	case "kernel":
		e.Kernel = n
	case "nic":
		e.NIC = n
	case "afalg":
		e.AFALG = n
	case "userspace":
		e.Userspace = n
	case "stdlib":
		e.Stdlib = n
	}
	return e
}

// TestStatsConnections checks the engines and bytes counted for one ktls
// connection against a stock peer, in both roles, on engines every host has.
func TestStatsConnections(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")
	const n = 300 << 10
	for _, engine := range []string{"userspace", "stdlib"} {
		t.Run(engine, ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			before := ktls.Stats()
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg, ktls.WithBackend(engine))
			ktlstest.WantBackend(t, k, engine, engine)
			testenv.Exchange(t, k, s, n)
			ktlstest.CloseBoth(t, k, s)
			wantDelta(t, before, ktls.Counters{
				TX: ktls.DirectionCounters{Connections: one(engine, 1), Bytes: one(engine, n)},
				RX: ktls.DirectionCounters{Connections: one(engine, 1), Bytes: one(engine, n)},
			})
		}))
	}
}

// TestStatsAuto checks the automatic choice: the engines Backend reports,
// and an "unavailable" fallback exactly where an engine ahead was passed
// over by its probe (here: the kernel, on a host without the tls module).
func TestStatsAuto(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")
	before := ktls.Stats()
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	k, s := ktlstest.PairWithStock(t, false, ccfg, scfg)
	testenv.Exchange(t, k, s, 1000)
	b := k.Backend()
	ktlstest.CloseBoth(t, k, s)
	want := ktls.Counters{
		TX: ktls.DirectionCounters{Connections: one(b.TX, 1), Bytes: one(b.TX, 1000)},
		RX: ktls.DirectionCounters{Connections: one(b.RX, 1), Bytes: one(b.RX, 1000)},
	}
	if len(b.TXDetail.Unavailable) > 0 {
		want.Fallbacks.TX.Unavailable = 1
	}
	if len(b.RXDetail.Unavailable) > 0 {
		want.Fallbacks.RX.Unavailable = 1
	}
	wantDelta(t, before, want)
}

// TestStatsFallbacks checks the fallback classes that any host can produce:
// a forced engine that cannot serve (nic: no device offloads TLS 1.3, here
// or in the VMs), the same under strict mode, and a CBC suite.
func TestStatsFallbacks(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")

	t.Run("forced", func(t *testing.T) {
		before := ktls.Stats()
		ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
		k, s := ktlstest.PairWithStock(t, false, ccfg, scfg, ktls.WithBackend("nic"))
		b := k.Backend()
		ktlstest.CloseBoth(t, k, s)
		if b.TX == "nic" || b.RX == "nic" {
			t.Fatalf("nic took TLS 1.3: %s", b.Reason)
		}
		want := ktls.Counters{
			TX: ktls.DirectionCounters{Connections: one(b.TX, 1)},
			RX: ktls.DirectionCounters{Connections: one(b.RX, 1)},
		}
		want.Fallbacks.TX.Forced, want.Fallbacks.RX.Forced = 1, 1
		wantDelta(t, before, want)
	})

	t.Run("strict", func(t *testing.T) {
		before := ktls.Stats()
		ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
		_, err, finish := ktlstest.StrictHandshake(t, false, ccfg, scfg, ktls.WithBackend("nic"), ktls.WithStrict())
		finish()
		if _, ok := err.(*ktls.StrictError); !ok {
			t.Fatalf("strict nic: handshake error %v, want a *ktls.StrictError", err)
		}
		want := ktls.Counters{HandshakeFailures: 1}
		want.Fallbacks.TX.Strict = 1 // TX is decided first, and fails the handshake
		wantDelta(t, before, want)
	})

	t.Run("cbc", func(t *testing.T) {
		before := ktls.Stats()
		ccfg, scfg := testpki.Configs(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA)
		k, s := ktlstest.PairWithStock(t, false, ccfg, scfg)
		ktlstest.WantBackend(t, k, "stdlib", "stdlib")
		testenv.Exchange(t, k, s, 100)
		ktlstest.CloseBoth(t, k, s)
		want := ktls.Counters{
			TX: ktls.DirectionCounters{Connections: one("stdlib", 1), Bytes: one("stdlib", 100)},
			RX: ktls.DirectionCounters{Connections: one("stdlib", 1), Bytes: one("stdlib", 100)},
		}
		want.Fallbacks.TX.Suite, want.Fallbacks.RX.Suite = 1, 1
		wantDelta(t, before, want)
	})

	t.Run("uncertain", func(t *testing.T) {
		// A TLS 1.2 client that allows renegotiation stays on crypto/tls,
		// the only one that can renegotiate.
		before := ktls.Stats()
		ccfg, scfg := testpki.Configs(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
		ccfg.Renegotiation = tls.RenegotiateOnceAsClient
		k, s := ktlstest.PairWithStock(t, true, ccfg, scfg)
		ktlstest.WantBackend(t, k, "stdlib", "stdlib")
		ktlstest.CloseBoth(t, k, s)
		want := ktls.Counters{
			TX: ktls.DirectionCounters{Connections: one("stdlib", 1)},
			RX: ktls.DirectionCounters{Connections: one("stdlib", 1)},
		}
		want.Fallbacks.TX.Uncertain, want.Fallbacks.RX.Uncertain = 1, 1
		wantDelta(t, before, want)
	})

	t.Run("paired", func(t *testing.T) {
		before := ktls.Stats()
		ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
		k, s := ktlstest.PairWithStock(t, false, ccfg, scfg, ktls.WithBackend("tx=userspace,rx=stdlib"))
		ktlstest.WantBackend(t, k, "stdlib", "stdlib")
		ktlstest.CloseBoth(t, k, s)
		// RX got what was forced; TX stayed with it.
		want := ktls.Counters{
			TX: ktls.DirectionCounters{Connections: one("stdlib", 1)},
			RX: ktls.DirectionCounters{Connections: one("stdlib", 1)},
		}
		want.Fallbacks.TX.Paired = 1
		wantDelta(t, before, want)
	})
}

// TestStatsHandshakeFailure checks that a failed handshake counts once,
// and counts no engine.
func TestStatsHandshakeFailure(t *testing.T) {
	before := ktls.Stats()
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	ccfg = ccfg.Clone()
	ccfg.ServerName = "not-the-server.example"
	rc, rs := testenv.TCPPair(t)
	k := ktls.Client(rc, ccfg)
	s := tls.Server(rs, scfg)
	go func() { s.Handshake(); s.Close() }()
	if err := k.Handshake(); err == nil {
		t.Fatal("handshake with the wrong server name succeeded")
	}
	if err := k.Handshake(); err == nil {
		t.Fatal("the second Handshake succeeded")
	}
	k.Write([]byte("x")) // sees the same failure, counts nothing
	k.Close()
	wantDelta(t, before, ktls.Counters{HandshakeFailures: 1})
}

// TestStatsConcurrent runs many connections at once while others read the
// counters (run with -race), and checks the totals.
func TestStatsConcurrent(t *testing.T) {
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")
	const conns, n = 16, 64 << 10
	before := ktls.Stats()
	done := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
					ktls.Stats()
				}
			}
		})
	}
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, s := ktlstest.PairWithStock(t, i%2 == 0, ccfg, scfg, ktls.WithBackend("userspace"))
			testenv.Exchange(t, k, s, n)
			ktlstest.CloseBoth(t, k, s)
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	wantDelta(t, before, ktls.Counters{
		TX: ktls.DirectionCounters{Connections: one("userspace", conns), Bytes: one("userspace", conns*n)},
		RX: ktls.DirectionCounters{Connections: one("userspace", conns), Bytes: one("userspace", conns*n)},
	})
}

// TestStatsKernel checks the kernel engine's counters: connections, bytes,
// sendfile (io.Copy from a file), splice out of kTLS RX (io.Copy into a
// file) and splice into kTLS TX (ReadFrom a TCP socket). It needs kTLS, and
// fails where the kernel is known to have it (the VMs).
func TestStatsKernel(t *testing.T) {
	ktlstest.RequireKTLS(t, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")
	const fileSize, sockSize, rxSize = 1<<20 + 123, 512<<10 + 7, 768<<10 + 5

	before := ktls.Stats()
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	k, s := ktlstest.PairWithStock(t, false, ccfg, scfg, ktlstest.KernelStrict()...)
	ktlstest.WantBackend(t, k, "kernel", "kernel")

	// The peer reads everything the ktls side sends, to the end.
	peerGot := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, s)
		peerGot <- n
	}()

	// sendfile: io.Copy(conn, file).
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, testenv.Pattern(fileSize, 3), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := io.Copy(k, f); err != nil || n != fileSize {
		t.Fatalf("io.Copy(conn, file) = %d, %v", n, err)
	}

	// splice into kTLS TX: ReadFrom a TCP socket.
	a, b := testenv.TCPPair(t)
	go func() {
		a.Write(testenv.Pattern(sockSize, 4))
		a.Close()
	}()
	if n, err := k.ReadFrom(b.(*net.TCPConn)); err != nil || n != sockSize {
		t.Fatalf("conn.ReadFrom(tcpConn) = %d, %v", n, err)
	}
	b.Close()

	// splice out of kTLS RX: io.Copy(file, conn), after the peer wrote and
	// sent close_notify.
	go func() {
		s.Write(testenv.Pattern(rxSize, 5))
		s.CloseWrite()
	}()
	dst, err := os.Create(filepath.Join(t.TempDir(), "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if n, err := io.Copy(dst, k); err != nil || n != rxSize {
		t.Fatalf("io.Copy(file, conn) = %d, %v", n, err)
	}
	k.Close()
	if n := <-peerGot; n != fileSize+sockSize {
		t.Fatalf("the peer read %d bytes, want %d", n, fileSize+sockSize)
	}
	s.Close()

	wantDelta(t, before, ktls.Counters{
		TX:               ktls.DirectionCounters{Connections: one("kernel", 1), Bytes: one("kernel", fileSize+sockSize)},
		RX:               ktls.DirectionCounters{Connections: one("kernel", 1), Bytes: one("kernel", rxSize)},
		SendfileBytes:    fileSize,
		SpliceWriteBytes: sockSize,
		SpliceReadBytes:  rxSize,
	})
}

// TestNoDebugVars checks that importing ktls leaves http.DefaultServeMux
// alone: neither the package nor anything it imports (expvar would)
// registers /debug/vars. Package ktlsexpvar publishes the counters for
// programs that ask.
func TestNoDebugVars(t *testing.T) {
	if _, pattern := http.DefaultServeMux.Handler(httptest.NewRequest("GET", "/debug/vars", nil)); pattern != "" {
		t.Errorf("http.DefaultServeMux serves /debug/vars (pattern %q): something ktls imports registered it", pattern)
	}
}

// TestStatsRefused checks the "refused" class: over a conn that hides its
// TCP socket (opaqueConn: no NetConn, Raw or SyscallConn), the kernel
// engine, which its probe says can serve, refuses at install, and
// userspace takes both directions. It needs kTLS, and fails where the
// kernel is known to have it (the VMs).
func TestStatsRefused(t *testing.T) {
	ktlstest.RequireKTLS(t, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")
	before := ktls.Stats()
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	rc, rs := testenv.TCPPair(t)
	k, s := ktls.Server(opaqueConn{rs}, scfg), tls.Client(rc, ccfg)
	testenv.HandshakeBoth(t, k, s)
	ktlstest.WantBackend(t, k, "userspace", "userspace")
	testenv.Exchange(t, k, s, 1000)
	ktlstest.CloseBoth(t, k, s)
	want := ktls.Counters{
		TX: ktls.DirectionCounters{Connections: one("userspace", 1), Bytes: one("userspace", 1000)},
		RX: ktls.DirectionCounters{Connections: one("userspace", 1), Bytes: one("userspace", 1000)},
	}
	want.Fallbacks.TX.Refused, want.Fallbacks.RX.Refused = 1, 1
	wantDelta(t, before, want)
}

// opaqueConn hides the socket under a net.Conn: only net.Conn's methods.
type opaqueConn struct{ net.Conn }

// statsFIPSChildEnv marks the child run of TestStatsFIPS.
const statsFIPSChildEnv = "KTLS_TEST_STATS_FIPS"

// TestStatsFIPS runs TestStatsFIPSChild in a child process of this test
// binary with GODEBUG=fips140=on: the mode is fixed at start-up, so only a
// child can be in it.
func TestStatsFIPS(t *testing.T) {
	if os.Getenv(statsFIPSChildEnv) != "" {
		t.Skip("the child run")
	}
	godebug := "fips140=on"
	if g := os.Getenv("GODEBUG"); g != "" {
		godebug = g + "," + godebug
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStatsFIPSChild$", "-test.v")
	cmd.Env = append(os.Environ(), statsFIPSChildEnv+"=1", "GODEBUG="+godebug)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestStatsFIPSChild ") {
		t.Fatalf("child TestStatsFIPSChild with GODEBUG=%s: %v\n%s", godebug, err, out)
	}
}

// TestStatsFIPSChild: in FIPS 140-3 mode a connection stays on stdlib, and
// each direction counts one "fips" fallback.
func TestStatsFIPSChild(t *testing.T) {
	if os.Getenv(statsFIPSChildEnv) == "" {
		t.Skip("run by TestStatsFIPS")
	}
	if !fips140.Enabled() {
		t.Fatal("the child is not in FIPS 140-3 mode")
	}
	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")
	before := ktls.Stats()
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, s := ktlstest.PairWithStock(t, false, ccfg, scfg)
	ktlstest.WantBackend(t, k, "stdlib", "stdlib")
	testenv.Exchange(t, k, s, 500)
	ktlstest.CloseBoth(t, k, s)
	want := ktls.Counters{
		TX: ktls.DirectionCounters{Connections: one("stdlib", 1), Bytes: one("stdlib", 500)},
		RX: ktls.DirectionCounters{Connections: one("stdlib", 1), Bytes: one("stdlib", 500)},
	}
	want.Fallbacks.TX.FIPS, want.Fallbacks.RX.FIPS = 1, 1
	wantDelta(t, before, want)
}
