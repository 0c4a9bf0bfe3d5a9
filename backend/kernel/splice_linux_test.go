package kernel_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

func rawConn(t testing.TB, c syscall.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// spliceAll reads ms through o, application data with SpliceTo into dst
// (whose bytes the caller collects) and control records with ReadRecord,
// until the stream ends. It returns the control records in order.
func spliceAll(t *testing.T, o backend.Opener, dst syscall.RawConn) (spliced int64, controls []msg) {
	t.Helper()
	sp := o.(backend.Splicer)
	for {
		n, readErr, writeErr := sp.SpliceTo(dst)
		spliced += n
		if writeErr != nil {
			t.Fatalf("SpliceTo: writing: %v", writeErr)
		}
		if readErr == io.EOF {
			return spliced, controls
		}
		if readErr != nil {
			t.Fatalf("SpliceTo: reading: %v", readErr)
		}
		typ, data, err := o.ReadRecord()
		if err != nil {
			t.Fatalf("ReadRecord after SpliceTo stopped: %v", err)
		}
		if typ == backend.TypeApplicationData {
			t.Fatalf("SpliceTo stopped before %d bytes of application data", len(data))
		}
		controls = append(controls, msg{typ, bytes.Clone(data)})
	}
}

// userspaceToKernel connects a userspace sealer on one end of a TCP pair to
// a kernel opener on the other, both keyed for s from sequence number seq;
// the opener is closed when the test ends.
func userspaceToKernel(t *testing.T, s keyschedule.Suite, seq uint64) (a, b net.Conn, us backend.Sealer, o backend.Opener) {
	t.Helper()
	a, b = testenv.TCPPair(t)
	p := randomParams(s, seq)
	us, err := newUserspaceSealer(a, p)
	if err != nil {
		t.Fatal(err)
	}
	o, err = kernel.New(kernel.Options{}).NewOpener(backend.Link{Conn: b}, clone(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return a, b, us, o
}

// splitMessages returns the application data of ms, concatenated, and the
// other messages in order.
func splitMessages(ms []msg) (data []byte, controls []msg) {
	for _, m := range ms {
		if m.typ == backend.TypeApplicationData {
			data = append(data, m.data...)
		} else {
			controls = append(controls, m)
		}
	}
	return data, controls
}

func checkControls(t *testing.T, got, want []msg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d control records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].typ != want[i].typ || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("control record %d: type %d %x, want type %d %x", i, got[i].typ, got[i].data, want[i].typ, want[i].data)
		}
	}
}

// TestSpliceTo has the userspace engine seal data with control records in
// between (a ticket-shaped handshake message, a warning alert) for every
// suite, and the kernel engine splice the data into a regular file, a pipe,
// a blocking pipe that Go does not poll (see blockingPipe) and a TCP socket,
// handing the control records to ReadRecord.
func TestSpliceTo(t *testing.T) {
	for _, s := range suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			require(t, false, s)
			for _, dst := range []string{"file", "pipe", "blocking-pipe", "tcp"} {
				t.Run(dst, func(t *testing.T) { testSpliceTo(t, s, dst) })
			}
		})
	}
}

func testSpliceTo(t *testing.T, s keyschedule.Suite, dst string) {
	a, b, us, o := userspaceToKernel(t, s, 77)
	ms := messages()
	wantData, wantControls := splitMessages(ms)
	go func() {
		writeAll(us, ms)
		a.Close()
	}()
	b.SetReadDeadline(time.Now().Add(time.Minute))

	rc, collect := spliceDst(t, dst)
	n, controls := spliceAll(t, o, rc)
	checkControls(t, controls, wantControls)
	if n != int64(len(wantData)) {
		t.Fatalf("SpliceTo moved %d bytes, want %d", n, len(wantData))
	}
	if got := collect(); !bytes.Equal(got, wantData) {
		t.Fatalf("%d bytes arrived through splice, %d sent, or they differ", len(got), len(wantData))
	}
}

// spliceDst makes a destination of a kind: its raw conn, and a function that
// closes it and returns what arrived.
func spliceDst(t *testing.T, kind string) (syscall.RawConn, func() []byte) {
	t.Helper()
	// reader collects the other end of a pipe or a socket.
	reader := func(r io.ReadCloser, w io.Closer) func() []byte {
		type result struct {
			b   []byte
			err error
		}
		res := make(chan result, 1)
		go func() {
			b, err := io.ReadAll(r)
			res <- result{b, err}
		}()
		return func() []byte {
			w.Close()
			r := <-res
			if r.err != nil {
				t.Fatal(r.err)
			}
			return r.b
		}
	}
	switch kind {
	case "file":
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return rawConn(t, f), func() []byte {
			b, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	case "pipe":
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		return rawConn(t, w), reader(r, w)
	case "blocking-pipe":
		r, w := blockingPipe(t)
		return rawConn(t, w), reader(slowReader{r}, w)
	default:
		c, d := testenv.TCPPair(t)
		return rawConn(t, c.(syscall.Conn)), reader(d, c)
	}
}

// blockingPipe returns a pipe whose write end Go does not poll, as an
// inherited stdout that is a blocking pipe: os.NewFile leaves a descriptor
// without O_NONBLOCK blocking and out of the netpoller (src/os/file_unix.go,
// newFileFromNewFile and newFile: kindNewFile is pollable only when already
// non-blocking). It holds one page (F_SETPIPE_SZ), so that a writer finds it
// full. Both ends are closed when the test ends, the write end first: a read
// blocked in read(2) ends only at the EOF that gives.
func blockingPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w = os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1")
	t.Cleanup(func() { w.Close(); r.Close() })
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Fatal(err)
	}
	// Only a file outside the netpoller answers ErrNoDeadline
	// (src/internal/poll/fd_poll_runtime.go, setDeadlineImpl).
	if err := w.SetWriteDeadline(time.Now().Add(time.Hour)); !errors.Is(err, os.ErrNoDeadline) {
		t.Fatalf("SetWriteDeadline on the blocking pipe = %v; want ErrNoDeadline: the test needs a file Go does not poll", err)
	}
	return r, w
}

// slowReader sleeps before each read, so that a small pipe is full whenever
// its writer comes back.
type slowReader struct{ io.ReadCloser }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return s.ReadCloser.Read(p)
}

// TestSpliceToStalled lets the destination stop taking bytes (a pipe nobody
// reads, with a write deadline): SpliceTo returns the timeout, and the bytes
// it had taken from the socket come first from ReadRecord, so nothing is lost
// or reordered.
func TestSpliceToStalled(t *testing.T) {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	require(t, false, s)
	a, b, us, o := userspaceToKernel(t, s, 5)
	data := make([]byte, 1<<20)
	rand.Read(data)
	wait := goWrite(t, us, []msg{{backend.TypeApplicationData, data}}, a)
	defer wait()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	w.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	b.SetReadDeadline(time.Now().Add(time.Minute))
	n, readErr, writeErr := o.(backend.Splicer).SpliceTo(rawConn(t, w))
	if readErr != nil || !errors.Is(writeErr, os.ErrDeadlineExceeded) {
		t.Fatalf("SpliceTo into a full pipe = %d, %v, %v; want the pipe's timeout", n, readErr, writeErr)
	}
	if n == 0 || n >= int64(len(data)) {
		t.Fatalf("SpliceTo moved %d bytes before the pipe filled", n)
	}
	w.Close()
	got, err := io.ReadAll(r)
	if err != nil || int64(len(got)) != n {
		t.Fatalf("the pipe holds %d bytes, %v; SpliceTo said %d", len(got), err, n)
	}
	for len(got) < len(data) {
		typ, d, err := o.ReadRecord()
		if err != nil || typ != backend.TypeApplicationData {
			t.Fatalf("ReadRecord after %d bytes: type %d, %v", len(got), typ, err)
		}
		got = append(got, d...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes were lost or reordered around the stalled splice")
	}
}

// TestSpliceToNotSupported: destinations splice cannot write as a stream
// are refused before anything is read.
func TestSpliceToNotSupported(t *testing.T) {
	s, _ := keyschedule.Lookup(tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
	require(t, false, s)
	a, b, us, o := userspaceToKernel(t, s, 9)
	ms := []msg{{backend.TypeApplicationData, []byte("still here")}}
	wait := goWrite(t, us, ms, a)
	defer wait()
	appendFile, err := os.OpenFile(filepath.Join(t.TempDir(), "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer appendFile.Close()
	dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	for name, f := range map[string]*os.File{"O_APPEND file": appendFile, os.DevNull: dev} {
		n, readErr, writeErr := o.(backend.Splicer).SpliceTo(rawConn(t, f))
		if n != 0 || readErr != nil || !errors.Is(writeErr, backend.ErrNotSupported) {
			t.Errorf("SpliceTo(%s) = %d, %v, %v; want ErrNotSupported", name, n, readErr, writeErr)
		}
	}
	b.SetReadDeadline(time.Now().Add(time.Minute))
	readAll(t, o, ms)
}

// TestSpliceToTampered: a bad record met by splice gives the alert
// ReadRecord gives, and a record header with the wrong version (a sticky
// error splice consumes, answering EINVAL as for a control record) does not
// leave the caller waiting for a record that is not coming.
func TestSpliceToTampered(t *testing.T) {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384)
	require(t, false, s)
	p := randomParams(s, 40)
	prot, err := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
	if err != nil {
		t.Fatal(err)
	}
	good := prot.Seal(nil, 40, backend.TypeApplicationData, []byte("genuine"))
	for _, tc := range []struct {
		name string
		mut  func(r []byte)
		want error
	}{
		{"tampered tag", func(r []byte) { r[len(r)-1] ^= 1 }, tls.AlertError(20)},
		{"wrong version", func(r []byte) { r[2] = 1 }, tls.AlertError(70)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testenv.TCPPair(t)
			o, err := kernel.New(kernel.Options{}).NewOpener(backend.Link{Conn: b}, clone(p))
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			r := bytes.Clone(good)
			tc.mut(r)
			if _, err := a.Write(r); err != nil {
				t.Fatal(err)
			}
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			defer pw.Close()
			b.SetReadDeadline(time.Now().Add(30 * time.Second))
			n, readErr, writeErr := o.(backend.Splicer).SpliceTo(rawConn(t, pw))
			if n != 0 || writeErr != nil || !errors.Is(readErr, tc.want) {
				t.Fatalf("SpliceTo = %d, %v, %v; want %v", n, readErr, writeErr, tc.want)
			}
		})
	}
}

// TestReadRecordInto reads the messages of TestSpliceTo with ReadRecordInto,
// the kernel decrypting into the caller's buffer, for every suite: the data
// and the control records between it arrive intact and in order.
func TestReadRecordInto(t *testing.T) {
	for _, s := range suites() {
		t.Run(suiteName(s), func(t *testing.T) {
			require(t, false, s)
			a, b, us, o := userspaceToKernel(t, s, 123)
			ms := messages()
			wantData, wantControls := splitMessages(ms)
			wait := goWrite(t, us, ms, a)
			defer wait()
			b.SetReadDeadline(time.Now().Add(time.Minute))
			buf := make([]byte, backend.MaxPlaintext)
			var data []byte
			var controls []msg
			for len(data) < len(wantData) || len(controls) < len(wantControls) {
				typ, n, err := o.(backend.IntoReader).ReadRecordInto(buf)
				if err != nil {
					t.Fatalf("ReadRecordInto after %d bytes and %d control records: %v", len(data), len(controls), err)
				}
				if typ == backend.TypeApplicationData {
					data = append(data, buf[:n]...)
				} else {
					controls = append(controls, msg{typ, bytes.Clone(buf[:n])})
				}
			}
			checkControls(t, controls, wantControls)
			if !bytes.Equal(data, wantData) {
				t.Fatalf("%d bytes of application data arrived, %d sent, or they differ", len(data), len(wantData))
			}
		})
	}
}
