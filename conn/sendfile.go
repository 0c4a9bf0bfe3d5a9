package conn

import (
	"errors"
	"io"
	"syscall"

	"github.com/ktls-go/ktls/backend"
)

// sendFileChunk bounds one SendFile call, so that a TLS 1.3 key that is
// about to wear out is updated between calls (RFC 8446 §5.5): 1 GiB is at
// least 65536 records, far inside the margin between defaultKeyUpdateAfter
// (2^24 records) and the limit (2^24.5).
const sendFileChunk = 1 << 30

// fileSource is what ReadFrom can hand a FileSender: the file, where to start
// (-1: its current offset), how much (-1: to EOF), and how to tell r what was
// consumed.
type fileSource struct {
	f       backend.File
	off, n  int64
	consume func(int64)
}

// fileOf unwraps r into a file, the way net.TCPConn's sendfile path does
// (net/sendfile.go), and also takes an *io.SectionReader, whose reads are at
// an offset and leave the file's own offset alone.
//
// Unlike net's, it unwraps io.LimitedReaders nested in one another: Caddy's
// idle-timeout response writer hands io.Copy a LimitedReader of the
// LimitedReader net/http made of the file (net/http/server.go,
// (*response).ReadFrom), and net's single unwrap would copy such a file
// through the process. The tightest limit bounds the send, and every
// reader's N drops by what was sent, as reading through them would.
func fileOf(r io.Reader) (fileSource, bool) {
	var lrs []*io.LimitedReader
	for {
		l, ok := r.(*io.LimitedReader)
		if !ok {
			break
		}
		if l.N <= 0 {
			return fileSource{}, false
		}
		lrs, r = append(lrs, l), l.R
	}
	var src fileSource
	switch v := r.(type) {
	case backend.File:
		src = fileSource{f: v, off: -1, n: -1, consume: func(int64) {}}
	case *io.SectionReader:
		outer, base, size := v.Outer()
		f, ok := outer.(backend.File)
		if !ok {
			return fileSource{}, false
		}
		pos, err := v.Seek(0, io.SeekCurrent)
		if err != nil || pos >= size {
			return fileSource{}, false
		}
		src = fileSource{f: f, off: base + pos, n: size - pos, consume: func(w int64) { v.Seek(w, io.SeekCurrent) }}
	default:
		return fileSource{}, false
	}
	for _, lr := range lrs {
		if src.n < 0 || lr.N < src.n {
			src.n = lr.N
		}
	}
	if len(lrs) > 0 {
		inner := src.consume
		src.consume = func(w int64) {
			inner(w)
			for _, lr := range lrs {
				lr.N -= w
			}
		}
	}
	return src, true
}

// sendFile sends r through fs if r is a file; handled false means nothing
// was sent and the caller copies.
func (c *Conn) sendFile(fs backend.FileSender, r io.Reader) (int64, bool, error) {
	src, ok := fileOf(r)
	if !ok {
		return 0, false, nil
	}
	c.out.mu.Lock()
	defer c.unlockOut()
	if c.out.err != nil {
		return 0, true, c.out.err
	}
	if c.out.closeNotifySent {
		return 0, true, errShutdown
	}
	var total int64
	for src.n != 0 {
		want := int64(sendFileChunk)
		if src.n > 0 {
			want = min(want, src.n)
		}
		// The records left under the key are not a bound here: how many
		// records a file takes is the kernel's to decide, and
		// sendFileChunk keeps within the margin instead.
		if _, err := c.beforeDataLocked(); err != nil {
			return total, true, err
		}
		off := src.off
		if off >= 0 {
			off += total
		}
		w, records, handled, err := fs.SendFile(src.f, off, want)
		if !handled {
			// r reflects what was sent; the caller copies the rest.
			return total, false, nil
		}
		src.consume(w)
		total += w
		c.out.records += records
		if src.n > 0 {
			src.n -= w
		}
		if err != nil {
			return total, true, c.out.setErrorLocked(c.resetOr(err))
		}
		if w < want {
			break // end of file
		}
	}
	return total, true, nil
}

// copyLent is ReadFrom's copy through a Sealer that seals from a buffer lent
// to it (backend.LentWriter), buf, of 4 full records and one byte more: each
// Read of r is sealed and sent before the next, so that no record waits for
// more data, as with io.CopyBuffer; r is read without out.mu held, as
// io.CopyBuffer reads it outside Write.
func (c *Conn) copyLent(lw backend.LentWriter, r io.Reader, buf []byte) (int64, error) {
	data := buf[:len(buf)-1]
	var n int64
	for {
		nr, rerr := r.Read(data)
		if nr < 0 || nr > len(data) {
			// As io.CopyBuffer.
			return n, errInvalidRead
		}
		if nr > 0 {
			nw, werr := c.writeMoved(data[:nr], lw)
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// lendFor says whether ReadFrom copies r through copyLent rather than
// io.CopyBuffer, which hands the copy to r's WriteTo where it has one. An
// in-memory reader's WriteTo (bytes.Reader, strings.Reader) writes from
// where its bytes are, one copy less than copyLent. A file's or socket's
// (syscall.Conn) moves bytes itself only to a socket and otherwise is
// io.Copy with a 32 KiB buffer of its own, allocated for each call
// (os.genericWriteTo, net.genericWriteTo): half copyLent's batch, and 32 KiB
// for every response of a server that calls ReadFrom(file) itself.
// (io.Copy(conn, file) calls the file's WriteTo first, which hands ReadFrom
// the file without its WriteTo: that one is lent the buffer too.)
func lendFor(r io.Reader) bool {
	if _, ok := r.(io.WriterTo); !ok {
		return true
	}
	_, ok := r.(syscall.Conn)
	return ok
}

// errInvalidRead is io.CopyBuffer's answer to a Read that returned a count
// out of range.
var errInvalidRead = errors.New("ktls: invalid Read result")
