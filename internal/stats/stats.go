// Package stats holds ktls's process-wide counters: package conn updates
// them, the root package reads them (ktls.Stats) and documents each one.
//
// It sits on the foundation floor (docs/ARCHITECTURE.md, "Rooms") so that
// conn, which never imports upwards, can count, and so that the counters
// exist once per process whatever imports them.
//
// Cost, the reason for the layout (docs/ARCHITECTURE.md, "Counters"):
//
//   - The data path (Read, Write, sendfile, splice) adds to a counter once
//     per call, never per byte or per record, with one atomic add and no
//     lock.
//   - Those counters live in shards: each connection takes one shard, round
//     robin, when it is made, and keeps it. Connections busy on different
//     cores then add to different cache lines, rather than all to one line
//     that every core would have to own in turn (both contention and false
//     sharing). Each shard is padded to a multiple of 128 bytes, two cache
//     lines, as the adjacent-line prefetcher of x86 pairs them.
//   - Counters moved once per connection (engines chosen, fallbacks,
//     handshake failures) are plain atomics, each padded apart.
//
// A snapshot (Read) sums the shards; it is not atomic across counters, so
// two counters read in one snapshot may differ by a call in flight.
package stats

import "sync/atomic"

// Engine indexes, in the order of backend.Names.
const (
	Kernel = iota
	NIC
	AFALG
	Userspace
	Stdlib
	NumEngines
)

// EngineNames are the engines' names by index: package backend's names
// (backend.Names), spelled out because internal/ imports nothing above it
// (docs/ARCHITECTURE.md, "Rooms"); TestEngineNames checks them.
var EngineNames = [NumEngines]string{"kernel", "nic", "afalg", "userspace", "stdlib"}

// EngineIndex returns the index of engine name; an unknown name (none
// should reach here) counts as Stdlib rather than panic on a data path.
func EngineIndex(name string) uint8 {
	for i, n := range EngineNames {
		if n == name {
			return uint8(i)
		}
	}
	return Stdlib
}

// Class is a fallback's reason class; ktls.FallbackCounters documents each.
type Class int

// The classes, in the order a direction is checked against them: a
// direction that fell back counts once, in the first class that applies.
const (
	FIPS Class = iota
	Suite
	Uncertain
	Paired
	Wrapped
	Forced
	Refused
	Unavailable
	Strict
	NumClasses
)

const (
	cacheLine = 64
	// shardAlign is what a shard is padded to: two cache lines.
	shardAlign = 2 * cacheLine
	// hotCounters is the number of counters in a Shard.
	hotCounters = 2*NumEngines + 5
	// NumShards is how many shards there are: enough that the connections
	// of a busy server spread over as many cache lines as it has busy
	// cores, small enough that a snapshot sums them in well under a
	// microsecond.
	NumShards = 32
)

// Shard holds the counters the data path adds to. A connection adds only
// to its own shard (Pick).
type Shard struct {
	// Sent and Received are application data bytes, by engine index.
	Sent, Received [NumEngines]atomic.Uint64
	// Sendfile, SpliceTo and SpliceFrom are the bytes of the zero-copy
	// paths: ReadFrom a file, WriteTo a socket/pipe/file, ReadFrom a
	// socket.
	Sendfile, SpliceTo, SpliceFrom atomic.Uint64
	// KeyUpdatesSent and KeyUpdatesReceived count TLS 1.3 KeyUpdates.
	KeyUpdatesSent, KeyUpdatesReceived atomic.Uint64
	_                                  [(shardAlign - hotCounters*8%shardAlign) % shardAlign]byte
}

// padded is an atomic counter alone on its cache line.
type padded struct {
	atomic.Uint64
	_ [cacheLine - 8]byte
}

var (
	// shards are the data path's counters. The leading pad keeps the first
	// shard off the line of whatever the linker puts before it.
	hot struct {
		_      [shardAlign]byte
		shards [NumShards]Shard
	}
	next padded

	// The once-per-connection counters.
	conns             [2][NumEngines]padded // [0] TX, [1] RX
	fallbacks         [2][NumClasses]padded
	handshakeFailures padded
)

// Pick returns the shard of a new connection, round robin.
func Pick() *Shard {
	return &hot.shards[next.Add(1)%NumShards]
}

// Direction indexes for Installed and Fallback.
const (
	TX = 0
	RX = 1
)

// Installed counts a direction dir (TX or RX) of a connection settled on
// engine.
func Installed(dir int, engine uint8) { conns[dir][engine].Add(1) }

// Fallback counts a direction dir that fell back, in class c.
func Fallback(dir int, c Class) { fallbacks[dir][c].Add(1) }

// HandshakeFailed counts a handshake that failed.
func HandshakeFailed() { handshakeFailures.Add(1) }

// Snapshot is every counter at one moment (per counter; see the package
// comment).
type Snapshot struct {
	Conns             [2][NumEngines]uint64
	Bytes             [2][NumEngines]uint64 // [TX] sent, [RX] received
	Fallbacks         [2][NumClasses]uint64
	HandshakeFailures uint64
	Sendfile          uint64
	SpliceTo          uint64
	SpliceFrom        uint64
	KeyUpdatesSent    uint64
	KeyUpdatesRecv    uint64
}

// Read sums the counters.
func Read() Snapshot {
	var s Snapshot
	for d := range 2 {
		for e := range NumEngines {
			s.Conns[d][e] = conns[d][e].Load()
		}
		for c := range NumClasses {
			s.Fallbacks[d][c] = fallbacks[d][c].Load()
		}
	}
	s.HandshakeFailures = handshakeFailures.Load()
	for i := range hot.shards {
		sh := &hot.shards[i]
		for e := range NumEngines {
			s.Bytes[TX][e] += sh.Sent[e].Load()
			s.Bytes[RX][e] += sh.Received[e].Load()
		}
		s.Sendfile += sh.Sendfile.Load()
		s.SpliceTo += sh.SpliceTo.Load()
		s.SpliceFrom += sh.SpliceFrom.Load()
		s.KeyUpdatesSent += sh.KeyUpdatesSent.Load()
		s.KeyUpdatesRecv += sh.KeyUpdatesReceived.Load()
	}
	return s
}
