//go:build linux

package kernel

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inode returns the inode of fd, or 0 when fd is not open.
func inode(fd int) uint64 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return 0
	}
	return st.Ino
}

// TestPipeSlot: an empty pipe serves the next call; one that may hold bytes
// is closed and the next call gets a new, empty one; Close while a call holds
// the pipe leaves it open until the call gives it back, and every later take
// fails. Needs no kTLS: the slot is plain pipes.
func TestPipeSlot(t *testing.T) {
	var s pipeSlot
	p, err := s.take()
	if err != nil {
		t.Fatal(err)
	}
	ino := inode(p.r)
	if ino == 0 || inode(p.w) != ino {
		t.Fatalf("take gave fds %d and %d, not the two ends of one pipe", p.r, p.w)
	}
	if p.size < spliceRound {
		t.Logf("the kernel gave the pipe %d bytes, not %d", p.size, pipeSize)
	}
	if _, err := s.take(); err == nil {
		t.Fatal("a second take while the pipe is in use succeeded")
	}
	s.give(true, true)
	p2, err := s.take()
	if err != nil || p2 != p || inode(p2.r) != ino {
		t.Fatalf("take after an empty give = %v, %v; want the same pipe", p2, err)
	}

	// A pipe given back with bytes in it is never reused.
	if _, err := unix.Write(p.w, []byte("left over")); err != nil {
		t.Fatal(err)
	}
	r, w := p.r, p.w
	s.give(false, true)
	if inode(r) == ino || inode(w) == ino {
		t.Fatal("a pipe given back holding bytes is still open")
	}
	p3, err := s.take()
	if err != nil {
		t.Fatal(err)
	}
	if inode(p3.r) == ino {
		t.Fatal("take reused a pipe that held bytes")
	}
	// TIOCINQ is FIONREAD, which a pipe answers (fs/pipe.c, pipe_ioctl).
	if n, err := unix.IoctlGetInt(p3.r, unix.TIOCINQ); err != nil || n != 0 {
		t.Fatalf("the new pipe holds %d bytes, %v; want 0", n, err)
	}
	ino3 := inode(p3.r)

	// The direction ended: closed though empty.
	s.give(true, false)
	if inode(p3.r) == ino3 {
		t.Fatal("a pipe given back at the end of the direction is still open")
	}

	// Close during a call: the pipe stays open under the call.
	p4, err := s.take()
	if err != nil {
		t.Fatal(err)
	}
	ino4 := inode(p4.r)
	s.close()
	if inode(p4.r) != ino4 || inode(p4.w) != ino4 {
		t.Fatal("Close closed the pipe under the call using it")
	}
	s.give(true, true)
	if inode(p4.r) == ino4 || inode(p4.w) == ino4 {
		t.Fatal("the pipe Close found in use is still open after the call gave it back")
	}
	if _, err := s.take(); err != errPipeClosed {
		t.Fatalf("take after Close = %v; want errPipeClosed", err)
	}
	s.close() // twice is harmless
}

// TestPipeSlotNoReuse: with reusePipes off (the benchmarks' baseline) every
// call gets a pipe of its own.
func TestPipeSlotNoReuse(t *testing.T) {
	defer reusePipes.Store(reusePipes.Swap(false))
	var s pipeSlot
	defer s.close()
	p, err := s.take()
	if err != nil {
		t.Fatal(err)
	}
	ino := inode(p.r)
	s.give(true, true)
	if inode(p.r) == ino {
		t.Fatal("the pipe outlived its call with reusePipes off")
	}
}

// TestPipeSlotDropped: a half dropped without Close (a connection the
// program forgot) does not leak its pipe: the cleanup closes it once the
// pipe is unreachable. A pipe closed by Close has no cleanup left to run.
func TestPipeSlotDropped(t *testing.T) {
	s := new(pipeSlot)
	p, err := s.take()
	if err != nil {
		t.Fatal(err)
	}
	r, w, ino := p.r, p.w, inode(p.r)
	s.give(true, true)
	p, s = nil, nil
	for i := 0; inode(r) == ino || inode(w) == ino; i++ {
		if i == 100 {
			t.Fatal("the pipe of an unreachable half is still open")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
