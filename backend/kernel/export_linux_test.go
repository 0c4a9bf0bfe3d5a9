//go:build linux

package kernel

import "golang.org/x/sys/unix"

// Test hooks for package kernel_test.

// PipesMade is how many splice pipes this process made so far.
func PipesMade() int64 { return pipesMade.Load() }

// SetReusePipes turns pipe reuse on or off (reusePipes) and returns the
// function that restores it.
func SetReusePipes(on bool) (restore func()) {
	old := reusePipes.Swap(on)
	return func() { reusePipes.Store(old) }
}

// HalfPipe returns the inode of the pipe a kernel half keeps between its
// splice calls and the bytes it holds (FIONREAD); ok is false when it keeps
// none.
func HalfPipe(h any) (ino uint64, queued int, ok bool) {
	var s *pipeSlot
	switch h := h.(type) {
	case *opener:
		s = &h.pipe
	case *sealer:
		s = &h.pipe
	case *rekeyingSealer:
		s = &h.pipe
	default:
		return 0, 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return 0, 0, false
	}
	var st unix.Stat_t
	if err := unix.Fstat(s.p.r, &st); err != nil {
		return 0, 0, false
	}
	n, err := unix.IoctlGetInt(s.p.r, unix.TIOCINQ) // FIONREAD, which a pipe answers (fs/pipe.c, pipe_ioctl)
	if err != nil {
		return 0, 0, false
	}
	return st.Ino, n, true
}

// ReadBuf returns the size of the read buffer a kernel opener holds, and
// whether that buffer is all zeros; 0 when it holds none.
func ReadBuf(h any) (size int, zero bool) {
	o, ok := h.(*opener)
	if !ok || o.bufp == nil {
		return 0, true
	}
	for _, c := range *o.bufp {
		if c != 0 {
			return len(*o.bufp), false
		}
	}
	return len(*o.bufp), true
}

// HeldReadBuf returns the opener's buffer itself, to look at after it went
// back to its pool; nil when it holds none.
func HeldReadBuf(h any) []byte {
	if o, ok := h.(*opener); ok && o.bufp != nil {
		return *o.bufp
	}
	return nil
}
