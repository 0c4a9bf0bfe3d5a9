package kernel_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// wantFDs fails the test unless the process has want descriptors open,
// waiting up to testenv.Prompt for them to get there.
func wantFDs(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(testenv.Prompt)
	for {
		n := testenv.OpenFDs(t)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d fds open, want %d:\n%s", what, n, want, testenv.FDTable())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tls13AES128() keyschedule.Suite {
	s, _ := keyschedule.Lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	return s
}

// TestSpliceToReusesPipe: SpliceTo stops at every control record, and each
// call after the first takes the pipe the first one made, empty; the end of
// the stream closes it.
func TestSpliceToReusesPipe(t *testing.T) {
	s := tls13AES128()
	require(t, false, s)
	a, b, us, o := userspaceToKernel(t, s, 9)
	ms := messages()
	ms = append(ms, msg{backend.TypeApplicationData, testenv.Pattern(300_000, 3)}, msg{backend.TypeAlert, []byte{1, 0}})
	wantData, wantControls := splitMessages(ms)
	go func() {
		writeAll(us, ms)
		a.Close()
	}()
	b.SetReadDeadline(time.Now().Add(time.Minute))
	rc, collect := spliceDst(t, "tcp")
	sp := o.(backend.Splicer)
	made := kernel.PipesMade()
	var ino uint64
	var controls []msg
	var spliced int64
	for {
		n, readErr, writeErr := sp.SpliceTo(rc)
		spliced += n
		if writeErr != nil || readErr != nil && readErr != io.EOF {
			t.Fatalf("SpliceTo = %d, %v, %v", n, readErr, writeErr)
		}
		if readErr == io.EOF {
			break
		}
		i, queued, ok := kernel.HalfPipe(o)
		if !ok || queued != 0 {
			t.Fatalf("after a SpliceTo that stopped at a control record: pipe kept %v, holding %d bytes; want kept, empty", ok, queued)
		}
		if ino != 0 && i != ino {
			t.Fatal("SpliceTo made a new pipe though the last one was empty")
		}
		ino = i
		typ, data, err := o.ReadRecord()
		if err != nil || typ == backend.TypeApplicationData {
			t.Fatalf("ReadRecord after SpliceTo stopped: type %d, %v", typ, err)
		}
		controls = append(controls, msg{typ, bytes.Clone(data)})
	}
	checkControls(t, controls, wantControls)
	if got := collect(); spliced != int64(len(wantData)) || !bytes.Equal(got, wantData) {
		t.Fatalf("%d bytes spliced, %d arrived, %d sent, or they differ", spliced, len(got), len(wantData))
	}
	if n := kernel.PipesMade() - made; n != 1 {
		t.Fatalf("%d SpliceTo calls made %d pipes; want 1", len(controls)+1, n)
	}
	if _, _, ok := kernel.HalfPipe(o); ok {
		t.Fatal("the pipe outlived the end of the stream")
	}
}

// TestSpliceToStalledReusesPipe: a destination that stops taking bytes
// leaves some in the pipe; they are read back (ReadRecord returns them), the
// pipe is empty again, and the next SpliceTo carries the rest through it,
// after those bytes and in order.
func TestSpliceToStalledReusesPipe(t *testing.T) {
	s := tls13AES128()
	require(t, false, s)
	a, b, us, o := userspaceToKernel(t, s, 5)
	data := testenv.Pattern(4<<20, 7)
	go func() {
		writeAll(us, []msg{{backend.TypeApplicationData, data}})
		a.Close()
	}()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	w.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	b.SetReadDeadline(time.Now().Add(time.Minute))
	sp := o.(backend.Splicer)
	made := kernel.PipesMade()
	n, readErr, writeErr := sp.SpliceTo(rawConn(t, w))
	if readErr != nil || !errors.Is(writeErr, os.ErrDeadlineExceeded) {
		t.Fatalf("SpliceTo into a full pipe = %d, %v, %v; want the pipe's timeout", n, readErr, writeErr)
	}
	ino, queued, ok := kernel.HalfPipe(o)
	if !ok || queued != 0 {
		t.Fatalf("after the stall: pipe kept %v, holding %d bytes; want kept, empty", ok, queued)
	}
	w.Close()
	got, err := io.ReadAll(r)
	if err != nil || int64(len(got)) != n {
		t.Fatalf("the destination holds %d bytes, %v; SpliceTo said %d", len(got), err, n)
	}
	// What the destination did not take comes first, from memory.
	typ, kept, err := o.ReadRecord()
	if err != nil || typ != backend.TypeApplicationData || len(kept) == 0 {
		t.Fatalf("ReadRecord after the stall: type %d, %d bytes, %v; want the bytes read back", typ, len(kept), err)
	}
	got = append(got, kept...)
	rc, collect := spliceDst(t, "tcp")
	m, readErr, writeErr := sp.SpliceTo(rc)
	if readErr != io.EOF || writeErr != nil {
		t.Fatalf("SpliceTo of the rest = %d, %v, %v; want EOF", m, readErr, writeErr)
	}
	rest := collect()
	if int64(len(rest)) != m {
		t.Fatalf("SpliceTo said %d bytes, %d arrived", m, len(rest))
	}
	got = append(got, rest...)
	if !bytes.Equal(got, data) {
		t.Fatalf("%d of %d bytes arrived, or they were reordered around the stall (%d through the stalled pipe, %d read back, %d after)", len(got), len(data), n, len(kept), m)
	}
	if made := kernel.PipesMade() - made; made != 1 {
		t.Fatalf("%d pipes made for the two calls; want 1: the pipe emptied by the read-back serves again", made)
	}
	t.Logf("pipe %d: %d bytes before the stall, %d read back, %d after", ino, n, len(kept), m)
}

// TestSplicePipeClosed: each half keeps one pipe (two descriptors) however
// many calls it makes, and Close closes it, also when Close runs while a
// call uses it: then the call closes it when it returns, not Close under it.
func TestSplicePipeClosed(t *testing.T) {
	s := tls13AES128()
	require(t, false, s)
	require(t, true, s)
	a, b, us, o := userspaceToKernel(t, s, 3)
	_, ks, uo := kernelToUserspace(t, s)
	src, srcW := testenv.TCPPair(t)
	dst, dstR := testenv.TCPPair(t)
	copied := make(chan struct{})
	go func() {
		io.Copy(io.Discard, dstR)
		close(copied)
	}()
	defer func() { dst.Close(); <-copied }()
	b.SetReadDeadline(time.Now().Add(time.Minute))
	base := testenv.OpenFDs(t)

	// RX: twice data up to an alert; SpliceTo stops at each.
	wait := goWrite(t, us, []msg{
		{backend.TypeApplicationData, testenv.Pattern(100_000, 1)}, {backend.TypeAlert, []byte{1, 0}},
		{backend.TypeApplicationData, testenv.Pattern(100_000, 2)}, {backend.TypeAlert, []byte{1, 0}},
	}, a)
	sp := o.(backend.Splicer)
	drc := rawConn(t, dst.(syscall.Conn))
	for i := range 2 {
		if n, readErr, writeErr := sp.SpliceTo(drc); n != 100_000 || readErr != nil || writeErr != nil {
			t.Fatalf("SpliceTo %d = %d, %v, %v; want 100000 bytes up to the alert", i, n, readErr, writeErr)
		}
		if typ, _, err := o.ReadRecord(); typ != backend.TypeAlert || err != nil {
			t.Fatalf("ReadRecord = type %d, %v; want the alert", typ, err)
		}
	}
	wait()
	wantFDs(t, base+2, "RX's pipe kept after two SpliceTo calls")

	// TX: three bursts of the source, three calls or more.
	got := make(chan error, 1)
	go func() {
		_, _, err := readRecords(uo, 3*50_000)
		got <- err
	}()
	ss := ks.(backend.SocketSender)
	srcRC := rawConn(t, src.(syscall.Conn))
	var sent int64
	for i := range 3 {
		if _, err := srcW.Write(testenv.Pattern(50_000, byte(i))); err != nil {
			t.Fatal(err)
		}
		for want := int64(i+1) * 50_000; sent < want; {
			m, held, _, readErr, writeErr := ss.SpliceFrom(srcRC, want-sent)
			sent += m
			if held != 0 || readErr != nil || writeErr != nil {
				t.Fatalf("SpliceFrom = %d, held %d, %v, %v", m, held, readErr, writeErr)
			}
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	wantFDs(t, base+4, "a pipe kept by each half")

	o.Close()
	ks.Close()
	wantFDs(t, base, "both halves closed")

	// Close while a call uses the pipe: the pipe stays open under it.
	a2, b2, _, o2 := userspaceToKernel(t, s, 3)
	defer a2.Close()
	base = testenv.OpenFDs(t)
	b2.SetReadDeadline(time.Now().Add(time.Second))
	type result struct{ readErr, writeErr error }
	res := make(chan result, 1)
	go func() {
		_, readErr, writeErr := o2.(backend.Splicer).SpliceTo(drc)
		res <- result{readErr, writeErr}
	}()
	wantFDs(t, base+2, "the pipe of a SpliceTo waiting for data")
	o2.Close()
	time.Sleep(50 * time.Millisecond)
	if n := testenv.OpenFDs(t); n != base+2 {
		t.Fatalf("Close during SpliceTo: %d fds open, want %d: the pipe was closed under the call", n, base+2)
	}
	r := <-res
	var ne net.Error
	if !errors.As(r.readErr, &ne) || !ne.Timeout() || r.writeErr != nil {
		t.Fatalf("SpliceTo that Close found waiting = %v, %v; want the read timeout", r.readErr, r.writeErr)
	}
	wantFDs(t, base, "the call Close found using the pipe returned")
	if _, readErr, _ := o2.(backend.Splicer).SpliceTo(drc); !errors.Is(readErr, net.ErrClosed) {
		t.Fatalf("SpliceTo after Close: %v; want net.ErrClosed", readErr)
	}
	if _, _, _, _, writeErr := ss.SpliceFrom(srcRC, 1); !errors.Is(writeErr, net.ErrClosed) {
		t.Fatalf("SpliceFrom after Close: %v; want net.ErrClosed", writeErr)
	}
}
