package benchmarks

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// The idle connection (issue 18): what a handshaken connection costs while
// nothing moves, as a server's keep-alive connections cost. Both ends run in
// this process, so every figure is per pair: a server with a small Read
// pending (net/http's idle connection waits in a Read too) and a client
// that does nothing. Heap is HeapAlloc after two runtime.GC (the live heap),
// stacks are StackInuse: the server's reading goroutine, alike for every
// kind.

// idleConns are the kinds the idle measurement compares: crypto/tls, and
// ktls with each engine that runs on every host.
var idleConns = []string{"crypto-tls", "ktls-stdlib", "ktls-userspace"}

// idleCost is what one pair costs, in bytes.
type idleCost struct {
	heap, stack float64
	// slab is the growth of the kernel's slab memory per pair (kernelSlab),
	// where ok; the whole machine's, so only a run with nothing else going
	// on means much.
	slab   float64
	slabOK bool
}

// measureIdle opens n pairs of kind conn (both ends), leaves them idle with
// the server reading, and returns the growth of the live heap and of the
// goroutine stacks per pair. The pairs are closed before it returns.
func measureIdle(tb testing.TB, conn string, version, suite uint16, n int) idleCost {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	ccfg, scfg := configs(version, suite)

	var (
		mu      sync.Mutex
		ends    []net.Conn
		wg      sync.WaitGroup
		reading atomic.Int64
	)
	defer func() {
		mu.Lock()
		for _, c := range ends {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	keep := func(c net.Conn) {
		mu.Lock()
		ends = append(ends, c)
		mu.Unlock()
	}

	before := heapNow()
	slabBefore, slabOK := kernelSlab()
	accepted := make(chan error, 1)
	go func() {
		for range n {
			raw, err := l.Accept()
			if err != nil {
				accepted <- err
				return
			}
			s := wrap(conn, raw, scfg, false)
			keep(s)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Handshake(); err != nil {
					return
				}
				checkEngineTB(tb, conn, s)
				var b [1]byte
				reading.Add(1)
				s.Read(b[:]) // returns when the pair is closed
			}()
		}
		accepted <- nil
	}()
	// A few handshakes at a time: the host has few cores, and 10,000
	// handshakes at once would only queue.
	sem := make(chan struct{}, 2*runtime.GOMAXPROCS(0))
	var dials sync.WaitGroup
	var dialErr atomic.Pointer[error]
	for range n {
		sem <- struct{}{}
		dials.Add(1)
		go func() {
			defer dials.Done()
			defer func() { <-sem }()
			raw, err := net.DialTimeout("tcp", l.Addr().String(), 30*time.Second)
			if err != nil {
				dialErr.Store(&err)
				return
			}
			c := wrap(conn, raw, ccfg, true)
			keep(c)
			if err := c.Handshake(); err != nil {
				dialErr.Store(&err)
				return
			}
			checkEngineTB(tb, conn, c)
		}()
	}
	dials.Wait()
	if err := dialErr.Load(); err != nil {
		tb.Fatalf("%s: %v", conn, *err)
	}
	if err := <-accepted; err != nil {
		tb.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); reading.Load() < int64(n); {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %d of %d servers reading after a minute", conn, reading.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	// Let the last Reads reach the socket and park.
	time.Sleep(50 * time.Millisecond)
	after := heapNow()
	slabAfter, slabAfterOK := kernelSlab()
	if path := os.Getenv("KTLS_IDLE_HEAPPROFILE"); path != "" {
		// What the idle pairs hold, for go tool pprof -sample_index=inuse_space:
		// one file per kind, PATH.KIND, every allocation sampled (init).
		if f, err := os.Create(path + "." + conn); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	return idleCost{
		heap:   float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n),
		stack:  float64(int64(after.StackInuse)-int64(before.StackInuse)) / float64(n),
		slab:   float64(slabAfter-slabBefore) / float64(n),
		slabOK: slabOK && slabAfterOK,
	}
}

func init() {
	if os.Getenv("KTLS_IDLE_HEAPPROFILE") != "" {
		// Exact profiles: the default samples one allocation per 512 KiB,
		// too coarse for a few KiB per pair.
		runtime.MemProfileRate = 1
	}
}

func heapNow() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// checkEngineTB is checkEngine for a test or a benchmark, from any
// goroutine: it reports with Errorf.
func checkEngineTB(tb testing.TB, conn string, c net.Conn) {
	if k, ok := c.(*ktls.Conn); ok {
		want := conn[len("ktls-"):]
		if got := k.Backend(); got.TX != want || got.RX != want {
			tb.Errorf("%s: engines %+v", conn, got)
		}
	}
}

// idlePairs is how many pairs "many" is: 10,000, or as many as the file
// descriptor limit allows (two per pair, and a margin), raised to the hard
// limit first. KTLS_IDLE_PAIRS overrides it.
func idlePairs(tb testing.TB) int {
	if v, err := strconv.Atoi(os.Getenv("KTLS_IDLE_PAIRS")); err == nil && v > 0 {
		return v
	}
	want := 10000
	if max := raiseFileLimit()/2 - 128; max < want {
		tb.Logf("file descriptor limit: %d pairs, not %d", max, want)
		want = max
	}
	return want
}

// BenchmarkIdle reports heap-B/pair and stack-B/pair for one pair and for
// many at once (idlePairs), for each kind in idleConns: each op opens and
// measures that many pairs, and the medians over the ops are reported
// (ns/op is the time to open, measure and close them).
//
//	go test -run '^$' -bench Idle -benchtime 1x -count 5 ./benchmarks
func BenchmarkIdle(b *testing.B) {
	for _, s := range suites[:2] {
		for _, pairs := range []int{1, 0} {
			n := pairs
			name := "1"
			if n == 0 {
				n = idlePairs(b)
				name = "many"
			}
			// The kernel engine too, where there is kTLS (the VMs; it
			// fails there, and skips elsewhere: requireKernel): its
			// state is in the kernel's slab caches, which kernel-slab-B
			// reports for every kind, so that its row compares with
			// crypto/tls's sockets in the same run.
			for _, conn := range append(slices.Clone(idleConns), "ktls-kernel") {
				b.Run(fmt.Sprintf("suite=%s/pairs=%s/conn=%s", s.name, name, conn), func(b *testing.B) {
					requireKernel(b, conn, s.version, s.suite)
					var heap, stack, slab []float64
					for range b.N {
						c := measureIdle(b, conn, s.version, s.suite, n)
						heap, stack = append(heap, c.heap), append(stack, c.stack)
						if c.slabOK {
							slab = append(slab, c.slab)
						}
					}
					b.ReportMetric(median(heap), "heap-B/pair")
					b.ReportMetric(median(stack), "stack-B/pair")
					if len(slab) == b.N {
						b.ReportMetric(median(slab), "kernel-slab-B/pair")
					}
					b.ReportMetric(float64(n), "pairs")
				})
			}
		}
	}
}

// TestIdleHeap measures idle pairs of crypto/tls, ktls-stdlib and
// ktls-userspace, interleaved over a few rounds, for TLS 1.3 and TLS 1.2,
// and compares medians over many pairs, so that one GC's noise divides
// away.
//
//   - A ktls-userspace pair may hold no more than a crypto/tls pair (issue
//     18's target): once both directions moved, the connection drops
//     crypto/tls's Conn with its buffers and AEADs, and what the handoff
//     alone used (docs/ARCHITECTURE.md step 6; conn.dropTLSLocked). Its own
//     engine halves, Conn and the kept ConnectionState cost less. With TLS
//     1.3 it holds about 4.3 KiB less; with TLS 1.2 about 0.9 KiB less,
//     since an installed TLS 1.2 direction keeps no keys of its own
//     (conn.installedKeys; before that it was 7 B over at 10,000 pairs).
//     crypto/tls's own TLS 1.2 figure moves by some 500 B between runs.
//   - The same pair must hold at least dropGain less than a ktls-stdlib
//     pair, which keeps crypto/tls's Conn and the handoff's state: about
//     8.2 KiB less for TLS 1.3 and 4.1 KiB for TLS 1.2 (Go 1.26).
//     Both carry package conn's own costs, so this catches what the
//     comparison with crypto/tls, whose figure moves more, would not: the
//     record-boundary conn kept, say (about 600 B).
//   - A ktls-stdlib pair keeps crypto/tls's Conn and adds what package conn
//     keeps beside it for a connection crypto/tls goes on serving: its Conn,
//     the config clone crypto/tls runs with, the record-boundary conn under
//     it, the key log writer. That was about 3.9 KiB per pair (3.3 for TLS
//     1.2) when this was written; stdlibTolerance catches growth.
//
// Keeping the tls.Conn after the handoff costs over 10 KiB per pair, the
// record-boundary conn about 600 B, the key log's entries 700 B.
func TestIdleHeap(t *testing.T) {
	n, rounds := 300, 3
	if testing.Short() || testenv.InVM() {
		// Under TCG a handshake costs tens of milliseconds; the kernel
		// engines are not among the kinds compared here.
		n, rounds = 100, 1
	}
	const stdlibTolerance = 5 << 10
	for _, s := range suites[:2] {
		got := map[string][]float64{}
		for range rounds {
			for _, conn := range idleConns {
				got[conn] = append(got[conn], measureIdle(t, conn, s.version, s.suite, n).heap)
			}
		}
		base, std, us := median(got["crypto-tls"]), median(got["ktls-stdlib"]), median(got["ktls-userspace"])
		t.Logf("%s, %d pairs, heap per pair: crypto/tls %.0f B, ktls-stdlib %.0f B (%+.0f), ktls-userspace %.0f B (%+.0f)", s.name, n, base, std, std-base, us, us-base)
		dropGain := 7.5 * 1024
		if s.version == tls.VersionTLS12 {
			dropGain = 3.5 * 1024
		}
		if us > std-dropGain {
			t.Errorf("%s: idle ktls-userspace pair holds %.0f B, ktls-stdlib %.0f B: less than %.0f B saved by the drop", s.name, us, std, dropGain)
		}
		if us > base {
			t.Errorf("%s: idle ktls-userspace pair holds %.0f B, crypto/tls %.0f B: more", s.name, us, base)
		}
		if std > base+stdlibTolerance {
			t.Errorf("%s: idle ktls-stdlib pair holds %.0f B, crypto/tls %.0f B: more than %d B over", s.name, std, base, stdlibTolerance)
		}
	}
}
