package benchmarks

import (
	"fmt"
	"io"
	"testing"
)

var bulkSizes = []int{1 << 10, 16 << 10, 1 << 20}

// BenchmarkSend: the side under test writes size bytes per op; stock
// crypto/tls reads and discards.
func BenchmarkSend(b *testing.B) {
	for _, s := range suites {
		for _, size := range bulkSizes {
			for _, conn := range conns {
				b.Run(fmt.Sprintf("suite=%s/size=%s/conn=%s", s.name, sizeName(size), conn), func(b *testing.B) {
					w, r := pair(b, conn, "peer", s.version, s.suite)
					defer r.Close()
					defer w.Close()
					done := make(chan struct{})
					go func() {
						io.Copy(io.Discard, r)
						close(done)
					}()
					buf := make([]byte, size)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					b.ResetTimer()
					m := startMeter()
					for range b.N {
						if _, err := w.Write(buf); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					m.report(b, int64(b.N)*int64(size))
					w.Close()
					<-done
				})
			}
		}
	}
}

// BenchmarkReceive: stock crypto/tls writes 64 KiB at a time as fast as it
// can; the side under test reads size bytes per op.
func BenchmarkReceive(b *testing.B) {
	for _, s := range suites {
		for _, size := range bulkSizes {
			for _, conn := range conns {
				b.Run(fmt.Sprintf("suite=%s/size=%s/conn=%s", s.name, sizeName(size), conn), func(b *testing.B) {
					r, w := pair(b, conn, "peer", s.version, s.suite)
					stop := make(chan struct{})
					done := make(chan struct{})
					go func() {
						defer close(done)
						buf := make([]byte, 64<<10)
						for {
							select {
							case <-stop:
								return
							default:
							}
							if _, err := w.Write(buf); err != nil {
								return
							}
						}
					}()
					buf := make([]byte, size)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					b.ResetTimer()
					m := startMeter()
					for range b.N {
						if _, err := io.ReadFull(r, buf); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					m.report(b, int64(b.N)*int64(size))
					close(stop)
					r.Close()
					w.Close()
					<-done
				})
			}
		}
	}
}
