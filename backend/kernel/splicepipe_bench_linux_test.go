package kernel_test

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// threadCPU is the calling thread's user plus system time
// (getrusage(RUSAGE_THREAD)): a benchmark locked to its thread measures its
// own splice calls, the kernel's crypto in them included, and not its peers'.
func threadCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// splicePipeRounds is how many times BenchmarkSplicePipe runs each variant,
// alternating, so that a busy machine's drift falls on both alike (vmtest
// has no -count).
const splicePipeRounds = 6

// BenchmarkSplicePipe compares a splice pipe per call (reusePipes off: the
// code before pipeSlot) with one per half kept between calls (pipe=reuse),
// in one run, alternating. dir=to is SpliceTo, kTLS RX into a TCP socket, of
// a stream a userspace sealer writes as fast as it can; dir=from is
// SpliceFrom, a TCP socket into kTLS TX, of bursts of burst bytes written to
// the source one after the other, each moved before the next is written, as
// a proxy's backend answers. One op is 1 MiB. Metrics: the splicing thread's
// CPU per GiB (the kernel's crypto included), its calls and the pipes made
// per MiB. Each pipe not made saves pipe2, two fcntls (F_SETPIPE_SZ,
// F_GETPIPE_SZ) and two closes.
func BenchmarkSplicePipe(b *testing.B) {
	s := tls13AES128()
	testenv.RequireKernelFeature(b, testenv.KTLSFeature(s.Version, s.ID), kernel.Probe(false, s.Version, s.ID))
	testenv.RequireKernelFeature(b, testenv.KTLSFeature(s.Version, s.ID), kernel.Probe(true, s.Version, s.ID))
	for range splicePipeRounds {
		for _, reuse := range []bool{false, true} {
			name := "pipe=percall"
			if reuse {
				name = "pipe=reuse"
			}
			b.Run("dir=to/"+name, func(b *testing.B) {
				defer kernel.SetReusePipes(reuse)()
				benchSpliceTo(b, s, false, false)
			})
			if reuse {
				// Not splice: recvmsg into a buffer and write(2),
				// what WriteTo did before it could splice (and
				// what nginx with kTLS does), for scale; and the
				// same with TLS_RX_EXPECT_NO_PAD, where the kernel
				// decrypts into the buffer itself (tls_sw.c,
				// tls_rx_one_record: zero copy for TLS 1.3 only
				// then).
				b.Run("dir=to/pipe=none-recvmsg", func(b *testing.B) { benchSpliceTo(b, s, true, false) })
				b.Run("dir=to/pipe=none-recvmsg-nopad", func(b *testing.B) { benchSpliceTo(b, s, true, true) })
			}
			for _, burst := range []int{16 << 10, 256 << 10} {
				b.Run(fmt.Sprintf("dir=from/burst=%dK/%s", burst>>10, name), func(b *testing.B) {
					defer kernel.SetReusePipes(reuse)()
					benchSpliceFrom(b, s, burst)
				})
			}
		}
	}
}

// discard reads c to its end in a goroutine; the returned function closes c
// and waits for it.
func discard(c net.Conn) func() {
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		close(done)
	}()
	return func() { c.Close(); <-done }
}

func reportSplice(b *testing.B, moved int64, cpu time.Duration, calls int, pipes int64) {
	mib := float64(moved) / (1 << 20)
	b.ReportMetric(cpu.Seconds()/(mib/1024), "cpu-s/GiB")
	b.ReportMetric(float64(calls)/mib, "calls/MiB")
	b.ReportMetric(float64(pipes)/mib, "pipes/MiB")
}

// benchSpliceTo moves b.N MiB from a userspace sealer to a TCP socket
// through a kernel opener: with SpliceTo, or, with copy, with ReadRecordInto
// (recvmsg) into a 256 KiB buffer and the socket's Write, the opener made
// with Options.RXExpectNoPad when noPad.
func benchSpliceTo(b *testing.B, s keyschedule.Suite, copy, noPad bool) {
	const op = 1 << 20
	a, r := testenv.TCPPair(b)
	p := randomParams(s, 0)
	us, err := newUserspaceSealer(a, p)
	if err != nil {
		b.Fatal(err)
	}
	o, err := kernel.New(kernel.Options{RXExpectNoPad: noPad}).NewOpener(backend.Link{Conn: r}, clone(p))
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	dst, dstR := testenv.TCPPair(b)
	defer discard(dstR)()
	total := int64(b.N) * op
	werr := make(chan error, 1)
	go func() {
		chunk := testenv.Pattern(64<<10, 5)
		var err error
		for sent := int64(0); sent < total && err == nil; sent += int64(len(chunk)) {
			_, err = us.WriteRecords(backend.TypeApplicationData, chunk[:min(int64(len(chunk)), total-sent)])
		}
		a.Close()
		werr <- err
	}()
	sp := o.(backend.Splicer)
	drc := rawConn(b, dst.(syscall.Conn))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.SetBytes(op)
	b.ResetTimer()
	made, c0 := kernel.PipesMade(), threadCPU(b)
	var moved int64
	calls := 0
	var buf []byte
	if copy {
		buf = make([]byte, 256<<10)
	}
	for copy {
		typ, n, err := o.(backend.IntoReader).ReadRecordInto(buf)
		calls++
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if typ != backend.TypeApplicationData {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			b.Fatal(err)
		}
		moved += int64(n)
	}
	for !copy {
		n, readErr, writeErr := sp.SpliceTo(drc)
		moved += n
		calls++
		if writeErr != nil {
			b.Fatal(writeErr)
		}
		if readErr == io.EOF {
			break
		}
		if readErr != nil {
			b.Fatal(readErr)
		}
		if _, _, err := o.ReadRecord(); err != nil {
			b.Fatal(err)
		}
	}
	cpu := threadCPU(b) - c0
	b.StopTimer()
	if err := <-werr; err != nil {
		b.Fatal(err)
	}
	if moved != total {
		b.Fatalf("SpliceTo moved %d bytes, want %d", moved, total)
	}
	reportSplice(b, moved, cpu, calls, kernel.PipesMade()-made)
}

func benchSpliceFrom(b *testing.B, s keyschedule.Suite, burst int) {
	const op = 1 << 20
	a, r := testenv.TCPPair(b)
	ks, err := kernel.New(kernel.Options{}).NewSealer(backend.Link{Conn: a}, randomParams(s, 0))
	if err != nil {
		b.Fatal(err)
	}
	defer ks.Close()
	defer discard(r)()
	src, srcW := testenv.TCPPair(b)
	data := testenv.Pattern(burst, 6)
	ss := ks.(backend.SocketSender)
	srcRC := rawConn(b, src.(syscall.Conn))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.SetBytes(op)
	b.ResetTimer()
	made := kernel.PipesMade()
	var cpu time.Duration
	var moved int64
	calls := 0
	for range b.N * op / burst {
		if _, err := srcW.Write(data); err != nil {
			b.Fatal(err)
		}
		c0 := threadCPU(b)
		for got := 0; got < burst; {
			m, held, _, readErr, writeErr := ss.SpliceFrom(srcRC, int64(burst-got))
			calls++
			got += int(m)
			moved += m
			if held != 0 || readErr != nil || writeErr != nil {
				b.Fatalf("SpliceFrom = %d, held %d, %v, %v", m, held, readErr, writeErr)
			}
		}
		cpu += threadCPU(b) - c0
	}
	b.StopTimer()
	reportSplice(b, moved, cpu, calls, kernel.PipesMade()-made)
}
