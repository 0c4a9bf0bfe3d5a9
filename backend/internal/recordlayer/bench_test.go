package recordlayer

import (
	"fmt"
	"testing"

	"github.com/ktls-go/ktls/internal/testing/testenv"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/record"
)

var benchSizes = []int{64, 1024, backend.MaxPlaintext, 4 * backend.MaxPlaintext}

// BenchmarkWriteRecords/<suite>/<size>: one WriteRecords call into a
// connection that drops the bytes (framing, sealing and batching; no
// syscall).
func BenchmarkWriteRecords(b *testing.B) {
	for _, s := range keyschedule.Suites() {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s.Name(), n), func(b *testing.B) {
				sealer, err := goEngine().NewSealer(backend.Link{Conn: discardConn{}}, randomParams(s, 0))
				if err != nil {
					b.Fatal(err)
				}
				data := make([]byte, n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, err := sealer.WriteRecords(backend.TypeApplicationData, data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkWriteRecordsLent is BenchmarkWriteRecords through
// WriteRecordsLent (backend.LentWriter), as conn's ReadFrom calls it.
func BenchmarkWriteRecordsLent(b *testing.B) {
	for _, s := range keyschedule.Suites() {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s.Name(), n), func(b *testing.B) {
				sealer, err := goEngine().NewSealer(backend.Link{Conn: discardConn{}}, randomParams(s, 0))
				if err != nil {
					b.Fatal(err)
				}
				data := make([]byte, n, n+1)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if _, err := sealer.(backend.LentWriter).WriteRecordsLent(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkReadRecord/<suite>/<size>: one ReadRecord from an in-memory
// connection serving records of size bytes (read-ahead, framing, opening; no
// syscall). The records are sealed once at sequence number 0 and replayed,
// the benchmark rewinding the Opener's count before each call.
func BenchmarkReadRecord(b *testing.B) {
	for _, s := range keyschedule.Suites() {
		for _, n := range benchSizes[:3] {
			b.Run(fmt.Sprintf("%s/%d", s.Name(), n), func(b *testing.B) {
				op := replayOpener(b, s, n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					op.seq = 0
					if _, _, err := op.ReadRecord(); err != nil {
						b.Fatal(err)
					}
				}
			})
			// into: ReadRecordInto a 64 KiB buffer, against copy:
			// ReadRecord and a copy into it, what conn does without
			// backend.IntoReader.
			for _, mode := range []string{"copy", "into"} {
				b.Run(fmt.Sprintf("%s/%d/%s", s.Name(), n, mode), func(b *testing.B) {
					op := replayOpener(b, s, n)
					buf := make([]byte, 64<<10)
					b.SetBytes(int64(n))
					b.ReportAllocs()
					for i := 0; i < b.N; i++ {
						op.seq = 0
						if mode == "into" {
							if _, _, err := op.ReadRecordInto(buf); err != nil {
								b.Fatal(err)
							}
							continue
						}
						_, d, err := op.ReadRecord()
						if err != nil {
							b.Fatal(err)
						}
						copy(buf, d)
					}
				})
			}
		}
	}
}

// replayOpener returns an Opener of suite s over an in-memory connection
// that serves one record of n bytes, sealed at sequence number 0, again and
// again: a benchmark rewinds the Opener's count before each call.
func replayOpener(b *testing.B, s keyschedule.Suite, n int) *opener {
	p := randomParams(s, 0)
	prot, err := record.NewProtector(p.Version, p.CipherSuite, p.Key, p.IV)
	if err != nil {
		b.Fatal(err)
	}
	rec := prot.Seal(nil, 0, backend.TypeApplicationData, make([]byte, n))
	conn := &streamConn{next: func() []byte { return rec }}
	o, err := goEngine().NewOpener(backend.Link{Conn: conn}, p)
	if err != nil {
		b.Fatal(err)
	}
	return o.(*opener)
}

// BenchmarkTCP/<suite>: 1 MiB writes through a Sealer, over loopback TCP, to
// an Opener: the engine end to end, syscalls included.
func BenchmarkTCP(b *testing.B) {
	for _, s := range keyschedule.Suites() {
		b.Run(s.Name(), func(b *testing.B) {
			a, c := testenv.TCPPair(b)
			p := randomParams(s, 0)
			sealer, opener := newHalves(b, a, c, p, nil)
			const n = 1 << 20
			data := make([]byte, n)
			b.SetBytes(n)
			b.ReportAllocs()
			errc := make(chan error, 1)
			go func() {
				for i := 0; i < b.N; i++ {
					if _, err := sealer.WriteRecords(backend.TypeApplicationData, data); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for got := 0; got < b.N*n; {
				_, d, err := opener.ReadRecord()
				if err != nil {
					b.Fatal(err)
				}
				got += len(d)
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}
