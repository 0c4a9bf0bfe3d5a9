// Package bufpool is the pool of byte buffers that the engines and package
// conn take a buffer from for one call and give back before they wait, so
// that an idle connection holds none (issue 18; docs/ARCHITECTURE.md, the
// data path): the user-space record layer's seal and read buffers, the
// kernel engine's read buffer, and ReadFrom's copy buffer.
package bufpool

import (
	"sync"
	"sync/atomic"
)

// Pool is a sync.Pool of buffers of one size with a few kept aside that no
// GC drops. A half puts its buffer back each time it waits for the peer and
// takes one when bytes arrive, often on another P: a sync.Pool alone keeps
// the buffer in the old P's private slot, which no other P takes, and drops
// it at the second GC, so a connection that streams with short waits would
// allocate a new buffer now and then (measured on the user-space engine:
// bytes allocated per MiB received grew by half). Pointers, so that Get and
// Put do not allocate.
type Pool struct {
	size int
	gets atomic.Int64 // buffers handed out, for the tests
	mu   sync.Mutex
	kept []*[]byte
	pool sync.Pool
}

// New returns a pool of buffers of size bytes that keeps up to keep of them
// across garbage collections.
func New(size, keep int) *Pool {
	p := &Pool{size: size, kept: make([]*[]byte, 0, keep)}
	p.pool.New = func() any { b := make([]byte, size); return &b }
	return p
}

// Size is the length of the pool's buffers.
func (p *Pool) Size() int { return p.size }

// Gets is how many buffers Get handed out so far.
func (p *Pool) Gets() int64 { return p.gets.Load() }

// Get returns a buffer of Size bytes. Its contents are whatever the last
// holder left: holders clear what they wrote before they Put it.
func (p *Pool) Get() *[]byte {
	p.gets.Add(1)
	p.mu.Lock()
	if n := len(p.kept); n > 0 {
		b := p.kept[n-1]
		p.kept[n-1] = nil
		p.kept = p.kept[:n-1]
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	return p.pool.Get().(*[]byte)
}

// Put takes back a buffer of the pool's size, whole; others are left to the
// GC.
func (p *Pool) Put(b *[]byte) {
	if len(*b) != p.size {
		return
	}
	p.mu.Lock()
	if len(p.kept) < cap(p.kept) {
		p.kept = append(p.kept, b)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.pool.Put(b)
}
