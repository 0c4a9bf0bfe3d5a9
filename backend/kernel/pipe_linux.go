//go:build linux

package kernel

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
)

// reusePipes keeps a half's splice pipe from one SpliceTo or SpliceFrom call
// to the next. Off, every call makes its own pipe and closes it, as before
// pipeSlot existed; BenchmarkSplicePipe (splicepipe_bench_linux_test.go)
// compares the two in one run.
var reusePipes atomic.Bool

func init() { reusePipes.Store(true) }

// pipesMade counts the pipes newSplicePipe made, for the tests that check a
// half makes one pipe for many calls.
var pipesMade atomic.Int64

// splicePipe is the pipe(2) that splice rounds pass through: splice(2)
// needs a pipe at one end (fs/splice.c), so socket to socket is socket to
// pipe, then pipe to socket. Both ends are non-blocking but r, which SpliceTo
// makes blocking for a blocking destination (see SpliceTo); blocking says
// which r is now, so that a reused pipe changes its mode only when a call
// needs the other one.
type splicePipe struct {
	r, w     int
	size     int // what the kernel gave F_SETPIPE_SZ (F_GETPIPE_SZ)
	blocking bool
	cleanup  runtime.Cleanup
}

// newSplicePipe makes a pipe and asks the kernel for pipeSize, best effort:
// a smaller pipe only makes rounds shorter (see pipeSize). The pipe-size
// limits are per user (/proc/sys/fs/pipe-user-pages-soft, fs/pipe.c
// pipe_set_size), so a refusal is not an error.
func newSplicePipe() (*splicePipe, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, backend.NotSupported(backend.Kernel, "pipe2: %w", err)
	}
	pipesMade.Add(1)
	unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, pipeSize) // best effort, see pipeSize
	size, err := unix.FcntlInt(uintptr(p[1]), unix.F_GETPIPE_SZ, 0)
	if err != nil || size <= 0 {
		size = spliceRound
	}
	sp := &splicePipe{r: p[0], w: p[1], size: size}
	// A connection that is dropped without Close (its socket is closed by
	// net's own finalizer) must not leak the pipe it kept; the standard
	// library's pooled splice pipes have the same cleanup
	// (src/internal/poll/splice_linux.go, newPoolPipe). close stops it first:
	// the numbers may belong to other files by the time the pipe is
	// unreachable.
	sp.cleanup = runtime.AddCleanup(sp, closeFDs, p)
	return sp, nil
}

func closeFDs(p [2]int) {
	unix.Close(p[0])
	unix.Close(p[1])
}

// setBlocking makes r blocking or not, with no system call when it already
// is.
func (p *splicePipe) setBlocking(b bool) error {
	if p.blocking == b {
		return nil
	}
	if err := unix.SetNonblock(p.r, !b); err != nil {
		return err
	}
	p.blocking = b
	return nil
}

func (p *splicePipe) close() {
	p.cleanup.Stop()
	closeFDs([2]int{p.r, p.w})
}

// errPipeClosed is what take returns once the half is closed.
var errPipeClosed = errors.New("kernel: the half is closed")

// pipeSlot holds a half's splice pipe between its calls: made on the first
// splice, closed by the half's Close (or when the direction ends, or when it
// may hold bytes). Without it every call paid for pipe2, two fcntls and two
// closes, and the kernel for a pipe inode, two files and the 1 MiB pipe's
// slot array; SpliceFrom returns each time its source is empty, so a proxy's
// plain-to-TLS direction made a pipe per burst of the backend.
//
// A pipe is reused only when it is empty: every call accounts for the bytes
// it put in the pipe, and a call that cannot prove the pipe empty when it
// ends (the read-back of what the destination did not take failed, keep and
// hold) gives it back dirty, and it is closed, never reused: bytes left in it
// would come out of the next call in front of that call's own, in the wrong
// place in the stream.
//
// Close may run while a call uses the pipe (backend.Opener: Close does not
// wait for a call in flight). It must not close the descriptors under that
// call, whose splice(2) would then reach whatever file took their numbers
// next; so it only marks the slot, and the call closes the pipe when it gives
// it back. Package conn serializes a half's calls, so a slot has at most one
// user; mu protects the fields against Close.
//
// The price: a connection that has spliced keeps its pipes while idle, up to
// one per direction. An empty pipe holds no data pages, but its slot array
// (pipeSize / 4 KiB entries of struct pipe_buffer), inode and two files stay
// allocated, and its slots count against the user's pipe-user-pages-soft
// (fs/pipe.c, account_pipe_buffers); past that limit the kernel refuses
// F_SETPIPE_SZ and gives new pipes of that user two slots. SpliceTo's call
// already held its pipe while it waited for the socket, so it is SpliceFrom's
// pipe that is new while idle.
type pipeSlot struct {
	mu     sync.Mutex
	p      *splicePipe
	inUse  bool
	closed bool
}

// take returns the slot's pipe, made on first use (or for every call when
// reusePipes is off); errPipeClosed once the half is closed.
func (s *pipeSlot) take() (*splicePipe, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errPipeClosed
	}
	if s.inUse {
		// Package conn serializes a half's calls (backend.Opener).
		return nil, errors.New("kernel: internal error: two splice calls at once on one half")
	}
	if s.p == nil {
		p, err := newSplicePipe()
		if err != nil {
			return nil, err
		}
		s.p = p
	}
	s.inUse = true
	return s.p, nil
}

// give hands the pipe back after a call. empty says the call accounted for
// every byte it put in: only then may the pipe serve again. keep false
// closes it anyway (the direction ended). A pipe that Close found in use is
// closed here.
func (s *pipeSlot) give(empty, keep bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUse = false
	if s.p != nil && (!empty || !keep || s.closed || !reusePipes.Load()) {
		s.p.close()
		s.p = nil
	}
}

// close closes the pipe, or leaves that to the call using it, and makes
// every later take fail. It may run more than once.
func (s *pipeSlot) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.p != nil && !s.inUse {
		s.p.close()
		s.p = nil
	}
}
