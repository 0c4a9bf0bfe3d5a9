package kernel_test

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// TestKernelHandoff checks, against stock crypto/tls in both roles and for
// every suite Go negotiates, with a session cache on the client (so a TLS 1.3
// server sends a ticket, and the client drains it before RX moves), that:
// both directions are in the kernel; the kernel's record sequence numbers
// right after the install are those the handoff computed (TLS 1.2: the
// Finished went out and came in under the traffic key, so 1; TLS 1.3: 0,
// except the server's TX after its ticket, and the client's RX after the
// ticket it read); data moves intact; /proc/net/tls_stat counts the sockets.
func TestKernelHandoff(t *testing.T) {
	for _, sc := range ktlstest.InteropSuites {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ktlstest.RequireKTLS(t, sc.Version, sc.Suite)
			before, err := testenv.TLSStat()
			if err != nil {
				t.Fatal(err)
			}
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg, ktlstest.KernelStrict()...)
			wantTX, wantRX := uint64(1), uint64(1)
			if sc.Version == tls.VersionTLS13 {
				wantTX, wantRX = 0, 0
				if !ktlsClient {
					wantTX = 1 // the NewSessionTicket crypto/tls sent
				}
			}
			if got, err := testenv.KTLSRecSeq(k.NetConn(), true); err != nil || got != wantTX {
				t.Errorf("TX rec_seq after the handoff = %d, %v; want %d", got, err, wantTX)
			}
			if !(ktlsClient && sc.Version == tls.VersionTLS13) {
				// The TLS 1.3 client installs RX after its first read.
				if got, err := testenv.KTLSRecSeq(k.NetConn(), false); err != nil || got != wantRX {
					t.Errorf("RX rec_seq after the handoff = %d, %v; want %d", got, err, wantRX)
				}
			}
			if ktlsClient && sc.Version == tls.VersionTLS13 {
				// One record from the server: the client drains the
				// ticket (record 0) in crypto/tls, installs RX at 1,
				// and the kernel opens the data record.
				go s.Write([]byte("hello"))
				buf := make([]byte, 5)
				if _, err := io.ReadFull(k, buf); err != nil {
					t.Fatal(err)
				}
				if got, err := testenv.KTLSRecSeq(k.NetConn(), false); err != nil || got != 2 {
					t.Errorf("RX rec_seq after the ticket and one record = %d, %v; want 2", got, err)
				}
			}
			testenv.Exchange(t, k, s, 1<<20)
			ktlstest.WantBackend(t, k, "kernel", "kernel")
			after, err := testenv.TLSStat()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []string{"TlsTxSw", "TlsRxSw"} {
				if after[c] <= before[c] {
					t.Errorf("/proc/net/tls_stat %s: %d before, %d after: the kernel did not take the socket", c, before[c], after[c])
				}
			}
			ktlstest.CloseBoth(t, k, s)
		}))
	}
}

// TestKernelResumption resumes sessions with both directions in the kernel:
// for the TLS 1.3 client, the ticket reached crypto/tls's cache before RX
// moved.
func TestKernelResumption(t *testing.T) {
	for _, sc := range []ktlstest.SuiteCase{{Version: tls.VersionTLS13, Suite: 0}, {Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}} {
		t.Run(sc.String(), ktlstest.Roles(func(t *testing.T, ktlsClient bool) {
			ktlstest.RequireKTLS(t, sc.Version, sc.Suite)
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i := range 2 {
				k, s := ktlstest.PairWithStock(t, ktlsClient, ccfg, scfg, ktlstest.KernelStrict()...)
				// The server speaks first, so a TLS 1.3 client reads its
				// ticket before the test closes.
				if ktlsClient {
					testenv.Exchange(t, s, k, 1000)
				} else {
					testenv.Exchange(t, k, s, 1000)
				}
				if got := k.ConnectionState().DidResume; got != (i == 1) {
					t.Fatalf("connection %d: DidResume = %v", i, got)
				}
				ktlstest.WantBackend(t, k, "kernel", "kernel")
				ktlstest.CloseBoth(t, k, s)
			}
		}))
	}
}

// countingFile is an *os.File whose Read counts the bytes that pass through
// user space. It keeps Stat and SyscallConn, so sendfile can still take it;
// it hides WriteTo, as os.File's own fallback does.
type countingFile struct {
	*os.File
	read int64
}

func (f *countingFile) Read(b []byte) (int, error) {
	n, err := f.File.Read(b)
	f.read += int64(n)
	return n, err
}

// WriteTo does what os.File.WriteTo does when it cannot splice: io.Copy
// from the file without its WriteTo, which lands in the writer's ReadFrom.
func (f *countingFile) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, fileWithoutWriteTo{countingFile: f})
}

// fileWithoutWriteTo hides WriteTo the way package os does: two WriteTo at
// the same depth cancel out, every other method stays.
type fileWithoutWriteTo struct {
	*countingFile
	noWriteTo
}

type noWriteTo struct{}

func (noWriteTo) WriteTo(io.Writer) (int64, error) { panic("not reached") }

// TestKernelSendfile serves a file with io.Copy(conn, file) from a ktls
// server with TX in the kernel to a stock crypto/tls client, which checks it
// by hash: 256 MiB, about 35 s in the emulated VM. Evidence that sendfile
// ran: the file is never read through user space (no byte passes
// countingFile.Read). The copy also works from an *io.SectionReader (its
// first 32 MiB), and from io.LimitedReaders nested in one another (as Caddy
// hands net/http's own to io.Copy; its first 4 MiB), each left with what
// reading would leave.
func TestKernelSendfile(t *testing.T) {
	const size = 256 << 20
	ktlstest.RequireKTLS(t, tls.VersionTLS13, 0)
	path := filepath.Join(t.TempDir(), "file")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// nested is a small prefix: the peer's user-space decryption under
	// emulation costs about a second per MiB, and the path is sendfile's
	// either way.
	const nested = 4 << 20
	h, hs, hn := sha256.New(), sha256.New(), sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h, hs, hn), rand.Reader, nested); err != nil {
		t.Fatal(err)
	}
	nestedSum := hn.Sum(nil)
	if _, err := io.CopyN(io.MultiWriter(f, h, hs), rand.Reader, 32<<20-nested); err != nil {
		t.Fatal(err)
	}
	sectionSum := hs.Sum(nil)
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size-32<<20); err != nil {
		t.Fatal(err)
	}
	want := h.Sum(nil)
	f.Close()

	for _, name := range []string{"file", "section", "nested"} {
		t.Run(name, func(t *testing.T) {
			ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
			k, s := ktlstest.PairWithStock(t, false, ccfg, scfg, ktls.WithBackend("tx=kernel,rx=userspace"), ktls.WithStrict())
			ktlstest.WantBackend(t, k, "kernel", "userspace")
			file, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			cf := &countingFile{File: file}
			type result struct {
				n   int64
				err error
			}
			res := make(chan result, 1)
			start := time.Now()
			want, n := want, int64(size)
			switch name {
			case "section":
				n, want = 32<<20, sectionSum
			case "nested":
				n, want = nested, nestedSum
			}
			inner := &io.LimitedReader{R: cf, N: n + 5}
			outer := &io.LimitedReader{R: inner, N: n}
			go func() {
				var r result
				switch name {
				case "file":
					r.n, r.err = io.Copy(k, cf)
				case "section":
					r.n, r.err = io.Copy(k, io.NewSectionReader(cf, 0, n))
				case "nested":
					r.n, r.err = io.Copy(k, outer)
				}
				k.CloseWrite()
				res <- r
			}()
			h := sha256.New()
			got, err := io.Copy(h, s)
			if err != nil {
				t.Fatalf("the client read %d bytes: %v", got, err)
			}
			r := <-res
			if r.err != nil || r.n != n || got != n {
				t.Fatalf("io.Copy = %d, %v; the client read %d; want %d", r.n, r.err, got, n)
			}
			if string(h.Sum(nil)) != string(want) {
				t.Fatal("the file arrived changed")
			}
			if cf.read != 0 {
				t.Errorf("%d bytes of the file went through user space; sendfile did not run", cf.read)
			}
			if name == "nested" && (outer.N != 0 || inner.N != 5) {
				t.Errorf("after the copy the limits are %d and %d, want 0 and 5", outer.N, inner.N)
			}
			t.Logf("%d MiB in %v", n>>20, time.Since(start))
			k.Close()
			s.Close()
		})
	}
}

// TestKernelSplice copies from a ktls client with RX in the kernel into a
// pipe with io.Copy, which is WriteTo and splice(2), after the TLS 1.3
// server's session ticket and up to its close_notify, for both versions.
// The evidence that splice ran: the same copy through a writer that hides
// the pipe (so WriteTo copies through Read and write(2)) adds at least the
// data to the process's write(2) count, and the splice run does not.
func TestKernelSplice(t *testing.T) {
	size := 16 << 20
	if testing.Short() {
		size = 8 << 20
	}
	data := testenv.Pattern(size, 7)
	for _, tc := range []ktlstest.SuiteCase{
		{Version: tls.VersionTLS13, Suite: tls.TLS_AES_128_GCM_SHA256},
		{Version: tls.VersionTLS12, Suite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
	} {
		t.Run(tc.String(), func(t *testing.T) {
			ktlstest.RequireKTLS(t, tc.Version, tc.Suite)
			var wchar [2]int64
			for i, mode := range []string{"splice", "copy"} {
				ccfg, scfg := testpki.Configs(tc.Version, tc.Suite)
				ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				k, s := ktlstest.PairWithStock(t, true, ccfg, scfg, ktlstest.KernelStrict()...)
				ktlstest.WantBackend(t, k, "kernel", "kernel")
				pr, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				sum := make(chan [32]byte, 1)
				go func() {
					h := sha256.New()
					io.Copy(h, pr)
					pr.Close()
					sum <- [32]byte(h.Sum(nil))
				}()
				werr := make(chan error, 1)
				go func() {
					_, err := s.Write(data)
					if err == nil {
						err = s.Close()
					}
					werr <- err
				}()
				before := testenv.ProcWchar(t)
				var n int64
				if mode == "splice" {
					n, err = io.Copy(pw, k)
				} else {
					n, err = io.Copy(struct{ io.Writer }{pw}, k)
				}
				wchar[i] = testenv.ProcWchar(t) - before
				pw.Close()
				if err != nil || n != int64(size) {
					t.Fatalf("%s: io.Copy = %d, %v; want %d, nil", mode, n, err, size)
				}
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
				if <-sum != sha256.Sum256(data) {
					t.Fatalf("%s: the data arrived changed", mode)
				}
				k.Close()
			}
			t.Logf("write(2) bytes during the copy: %d with splice, %d without", wchar[0], wchar[1])
			if wchar[1]-wchar[0] < int64(size/2) {
				t.Fatalf("write(2) counted %d bytes with splice and %d without, for %d bytes copied: splice did not run", wchar[0], wchar[1], size)
			}
		})
	}
}
