package stats

import (
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/ktls-go/ktls/backend"
)

// TestEngineNames checks the names against package backend's.
func TestEngineNames(t *testing.T) {
	if !slices.Equal(EngineNames[:], backend.Names) {
		t.Errorf("EngineNames = %q, backend.Names = %q", EngineNames, backend.Names)
	}
}

// TestShardLayout checks the padding the package comment promises: a shard
// is a whole number of 128-byte blocks, and a lone counter a whole line.
func TestShardLayout(t *testing.T) {
	if s := unsafe.Sizeof(Shard{}); s%shardAlign != 0 || s < hotCounters*8 {
		t.Errorf("Shard is %d bytes, want a multiple of %d holding %d counters", s, shardAlign, hotCounters)
	}
	if s := unsafe.Sizeof(padded{}); s != cacheLine {
		t.Errorf("padded is %d bytes, want %d", s, cacheLine)
	}
}

// TestConcurrentCounts adds from many goroutines (run with -race) and checks
// the sums.
func TestConcurrentCounts(t *testing.T) {
	before := Read()
	const workers, each = 16, 1000
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			sh := Pick()
			for range each {
				sh.Sent[Kernel].Add(3)
				sh.Received[Userspace].Add(2)
				sh.SpliceTo.Add(1)
				Installed(RX, NIC)
				Fallback(TX, Wrapped)
			}
			HandshakeFailed()
		})
	}
	wg.Wait()
	after := Read()
	for _, c := range []struct {
		name         string
		before, want uint64
		got          uint64
	}{
		{"sent kernel", before.Bytes[TX][Kernel], 3 * workers * each, after.Bytes[TX][Kernel]},
		{"received userspace", before.Bytes[RX][Userspace], 2 * workers * each, after.Bytes[RX][Userspace]},
		{"splice to", before.SpliceTo, workers * each, after.SpliceTo},
		{"rx nic conns", before.Conns[RX][NIC], workers * each, after.Conns[RX][NIC]},
		{"tx wrapped fallbacks", before.Fallbacks[TX][Wrapped], workers * each, after.Fallbacks[TX][Wrapped]},
		{"handshake failures", before.HandshakeFailures, workers, after.HandshakeFailures},
	} {
		if c.got-c.before != c.want {
			t.Errorf("%s moved by %d, want %d", c.name, c.got-c.before, c.want)
		}
	}
}

func TestEngineIndex(t *testing.T) {
	for i, n := range EngineNames {
		if got := EngineIndex(n); got != uint8(i) {
			t.Errorf("EngineIndex(%q) = %d, want %d", n, got, i)
		}
	}
	if got := EngineIndex("nonsense"); got != Stdlib {
		t.Errorf("EngineIndex(nonsense) = %d, want Stdlib", got)
	}
}

// BenchmarkAdd is the data path's cost: one add per call, from every
// core, into each goroutine's own shard (as connections do) and, for
// comparison, all into one counter.
func BenchmarkAdd(b *testing.B) {
	b.Run("shard", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			sh := Pick()
			for pb.Next() {
				sh.Sent[Userspace].Add(1)
			}
		})
	})
	b.Run("one-counter", func(b *testing.B) {
		sh := Pick()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				sh.Sent[Userspace].Add(1)
			}
		})
	})
}
