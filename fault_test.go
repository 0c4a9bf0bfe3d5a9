package ktls_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// Faults under load (docs/ARCHITECTURE.md, test layer 5): many connections at once against stock
// crypto/tls, on every engine that serves here (inside the VMs: kernel and
// afalg too, see ktlstest.Engines), mixed versions and suites, random write
// sizes, sendfile and splice, and injected faults: the peer resets the
// connection mid-transfer, Close from another goroutine during Read, Write
// and the handshake (and so, at random, the handoff), read deadlines that
// expire mid-transfer, tampered records. It asserts that every byte one side
// reports written and the other read is the same (hashes), that every failure
// is an error and no operation outlives its deadline, that the stock peer
// never rejects a record ktls sent (a "local error" there: a reused or
// skipped sequence number would show so), and that no goroutine or file
// descriptor (AF_ALG sockets included) is left at the end.

var faultOnly = flag.String("ktls.faultkind", "", "run only this kind of connection in TestFaultsUnderLoad (none, sendfile, splice, deadline, reset, close-read, close-write, close-handshake, tamper)")

var faultConns = flag.Int("ktls.faults", 0, "connections per engine in TestFaultsUnderLoad (0: 1000 for auto and 200 per forced engine, 100 with -short; a quarter of that with -short outside the VMs)")

type faultKind int

const (
	faultNone           faultKind = iota // data both ways, checked by hash
	faultSendfile                        // io.Copy(conn, file section)
	faultSplice                          // io.Copy(tcp, conn)
	faultDeadline                        // read deadlines expire while the peer trickles
	faultReset                           // the peer resets TCP mid-transfer
	faultCloseRead                       // Close during a blocked Read
	faultCloseWrite                      // Close during a blocked Write
	faultCloseHandshake                  // Close at a random moment of the handshake
	faultTamper                          // the peer's record has a bit flipped
	numFaultKinds
)

var faultNames = [...]string{"none", "sendfile", "splice", "deadline", "reset", "close-read", "close-write", "close-handshake", "tamper"}

// faultLimit bounds every operation of a connection; one that runs past it
// fails the test as a hang. All connections start at once, and the last ones
// finished after 92 s in an unloaded amd64 guest: 5 minutes leaves a loaded
// CI machine more than twice that.
const faultLimit = 5 * time.Minute

// faultStall is how long a reader that renews short deadlines may go without
// a byte while the peer trickles its data.
const faultStall = time.Minute

func TestFaultsUnderLoad(t *testing.T) {
	engines := append([]string{"auto"}, ktlstest.Engines(t)...)
	file := faultFile(t)
	keep := keeper(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	baseG, baseFD := runtime.NumGoroutine(), testenv.OpenFDs(t)
	for i, eng := range engines {
		n := *faultConns
		if n == 0 {
			// 1000 at once with the engines auto picks; fewer for each
			// forced one, which the matrix's time budget pays for too.
			n = 200
			if testing.Short() {
				n = 100
			}
			if eng == "auto" {
				n = 1000
			}
			if testing.Short() && !testenv.InVM() {
				// scripts/test-cross: CPUs emulated by qemu-user.
				n /= 4
			}
		}
		if raceEnabled {
			// The race detector allows 8128 goroutines at once.
			n = min(n, 200)
		}
		t.Run(eng, func(t *testing.T) {
			var opts []ktls.Option
			if eng != "auto" {
				opts = append(opts, ktls.WithBackend(eng))
			}
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			var wg sync.WaitGroup
			errs := make(chan error, n)
			counts := make([]int, numFaultKinds)
			for c := range n {
				kind := faultKind(c % int(numFaultKinds))
				if *faultOnly != "" {
					kind = faultKindNamed(t, *faultOnly)
				}
				counts[kind]++
				f := newFault(rng, kind, file)
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := f.run(keep, opts); err != nil {
						errs <- fmt.Errorf("connection %d (%s, %s, ktls %s): %w", c, faultNames[kind], tls.VersionName(f.version), f.role(), err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			failed := 0
			for err := range errs {
				if failed++; failed <= 20 {
					t.Error(err)
				}
			}
			if failed > 20 {
				t.Errorf("... and %d more", failed-20)
			}
			t.Logf("%d connections at once: %v", n, counts)
		})
	}
	if t.Failed() {
		return
	}
	waitBaseline(t, baseG, baseFD, 20*time.Second, "after the faults")
}

func faultKindNamed(t *testing.T, name string) faultKind {
	for k, n := range faultNames {
		if n == name {
			return faultKind(k)
		}
	}
	t.Fatalf("-ktls.faultkind=%s: not one of %v", name, faultNames)
	return 0
}

// faultFile is a file for the sendfile connections to send sections of.
func faultFile(t *testing.T) *os.File {
	t.Helper()
	name := filepath.Join(t.TempDir(), "faults")
	if err := os.WriteFile(name, testenv.Pattern(1<<20, 7), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// fault is one connection's plan, drawn before it runs (rand.Rand is not
// safe for concurrent use).
type fault struct {
	kind       faultKind
	version    uint16
	suite      uint16 // TLS 1.2 only; TLS 1.3's is crypto/tls's choice
	ktlsClient bool
	toPeer     []byte // what ktls writes
	toKTLS     []byte // what the peer writes
	chunks     []int  // write sizes, cycled
	file       *os.File
	off, n     int64         // the file section
	delay      time.Duration // before the Close or the reset
	tamperAt   int           // records the peer writes intact before the flipped one
}

var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
}

func newFault(rng *rand.Rand, kind faultKind, file *os.File) *fault {
	f := &fault{kind: kind, ktlsClient: rng.IntN(2) == 0, file: file}
	f.version = tls.VersionTLS13
	if rng.IntN(2) == 0 {
		f.version = tls.VersionTLS12
		f.suite = tls12Suites[rng.IntN(len(tls12Suites))]
	}
	size := func() int {
		if rng.IntN(20) == 0 {
			return 64<<10 + rng.IntN(192<<10)
		}
		return rng.IntN(24 << 10)
	}
	f.toPeer = testenv.Pattern(size(), byte(rng.Uint32()))
	f.toKTLS = testenv.Pattern(size(), byte(rng.Uint32()))
	for range 4 {
		f.chunks = append(f.chunks, 1+rng.IntN(1<<uint(1+rng.IntN(16))))
	}
	f.off = rng.Int64N(1 << 19)
	f.n = int64(size())
	f.delay = time.Duration(rng.IntN(3000)) * time.Microsecond
	f.tamperAt = rng.IntN(3)
	return f
}

func (f *fault) role() string {
	if f.ktlsClient {
		return "client"
	}
	return "server"
}

// run runs the connection and returns what went wrong, if anything.
func (f *fault) run(keep func(...any), opts []ktls.Option) error {
	rc, rs, err := testenv.Loopback()
	if err != nil {
		return err
	}
	ccfg, scfg := testpki.Configs(f.version, f.suite)
	var flip *ktlstest.FlipConn
	var k *ktls.Conn
	var p *tls.Conn
	if f.ktlsClient {
		flip = &ktlstest.FlipConn{Conn: rs}
		k, p = ktls.Client(rc, ccfg, opts...), tls.Server(flip, scfg)
	} else {
		flip = &ktlstest.FlipConn{Conn: rc}
		k, p = ktls.Server(rs, scfg, opts...), tls.Client(flip, ccfg)
	}
	keep(k, p)
	defer p.Close()
	defer k.Close()
	limit := time.Now().Add(faultLimit)
	k.SetDeadline(limit)
	p.SetDeadline(limit)

	if f.kind == faultCloseHandshake {
		return f.closeHandshake(k, p)
	}
	perr := make(chan error, 1)
	go func() { perr <- p.Handshake() }()
	if err := k.Handshake(); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if err := <-perr; err != nil {
		return fmt.Errorf("peer handshake: %w", err)
	}
	var errsMu sync.Mutex
	var errs []error
	check := func(what string, err error) {
		if err != nil {
			errsMu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			errsMu.Unlock()
		}
	}
	switch f.kind {
	case faultNone, faultSendfile, faultSplice, faultDeadline:
		var wg sync.WaitGroup
		wg.Add(4)
		go func() { // ktls -> peer
			defer wg.Done()
			want := f.toPeer
			if f.kind == faultSendfile {
				want = make([]byte, f.n)
				n, _ := f.file.ReadAt(want, f.off)
				want = want[:n]
				sent, err := io.Copy(k, io.NewSectionReader(f.file, f.off, int64(len(want))))
				check("sendfile", err)
				if sent != int64(len(want)) {
					check("sendfile", fmt.Errorf("sent %d of %d bytes", sent, len(want)))
				}
				wg.Done()
			} else {
				go func() { defer wg.Done(); check("write", f.write(k, want)) }()
			}
			check("peer read", readAll(p, want, 0))
		}()
		go func() { // peer -> ktls
			defer wg.Done()
			trickle := time.Duration(0)
			if f.kind == faultDeadline {
				trickle = time.Millisecond
			}
			go func() {
				defer wg.Done()
				check("peer write", f.writeSlowly(p, f.toKTLS, trickle))
				if f.kind == faultSplice {
					p.CloseWrite()
				}
			}()
			switch f.kind {
			case faultSplice:
				check("splice", spliceOut(k, f.toKTLS))
			case faultDeadline:
				check("read with deadlines", readWithDeadlines(k, f.toKTLS))
			default:
				check("read", readAll(k, f.toKTLS, 0))
			}
		}()
		wg.Wait()
	case faultReset:
		ktlstest.SmallBuffers(rc, rs)
		go func() {
			time.Sleep(f.delay)
			flip.Conn.(*net.TCPConn).SetLinger(0)
			flip.Conn.Close() // RST, perhaps in the middle of a record
		}()
		werr := make(chan error, 1)
		// More than the socket buffers hold; the peer reads nothing.
		go func() { werr <- f.write(k, ktlstest.BigWrite) }()
		// The reader may see the end of the stream rather than the reset:
		// the kernel reports a socket's error to one call only
		// (sock_error), and the writer may take it first. crypto/tls then
		// returns io.EOF too.
		_, rerr := io.Copy(io.Discard, k)
		we := <-werr
		if we == nil && !ktlstest.WriteFails(k) {
			check("write after reset", errors.New("Writes go on succeeding after the peer reset the connection"))
		}
		return errors.Join(append(errs, notHang(rerr), notHang(we))...)
	case faultCloseRead, faultCloseWrite:
		ktlstest.SmallBuffers(rc, rs)
		done := make(chan error, 1)
		go func() {
			if f.kind == faultCloseRead {
				_, err := k.Read(make([]byte, 100))
				done <- err
			} else {
				// More than the socket buffers hold; the peer reads nothing.
				_, err := k.Write(ktlstest.BigWrite)
				done <- err
			}
		}()
		time.Sleep(f.delay)
		k.Close()
		err := <-done
		if err == nil {
			check("operation ended by Close", errors.New("succeeded"))
		}
		check("operation ended by Close", notHang(err))
		// The peer may see close_notify, EOF or a reset, never a record
		// it cannot open.
		p.SetReadDeadline(time.Now().Add(testenv.Prompt))
		_, perr := io.Copy(io.Discard, p)
		check("peer after Close", peerAccepts(perr))
		return errors.Join(errs...)
	case faultTamper:
		// Records of 4 KiB: tamperAt of them intact (the socket buffers
		// take them), then the flipped one and the rest.
		f.toKTLS, f.chunks = testenv.Pattern(64<<10, 3), []int{4 << 10}
		intact := f.toKTLS[:f.tamperAt*4<<10]
		if err := f.write(p, intact); err != nil {
			return fmt.Errorf("peer write: %w", err)
		}
		flip.ArmFlip()
		go f.write(p, f.toKTLS[len(intact):])
		err := readAll(k, f.toKTLS, 0)
		if err == nil {
			check("read of a tampered stream", errors.New("succeeded"))
		} else if !errors.Is(err, errMismatchPrefix) && !strings.Contains(err.Error(), "bad record MAC") {
			check("read of a tampered stream", fmt.Errorf("%w; want bad_record_mac", err))
		}
		check("read of a tampered stream", notHang(err))
		return errors.Join(errs...)
	}
	if len(errs) == 0 {
		cerr := k.Close()
		p.SetReadDeadline(time.Now().Add(testenv.Prompt))
		_, perr := p.Read(make([]byte, 1))
		if perr != io.EOF {
			check("peer after close_notify", fmt.Errorf("read %v, want EOF (close_notify)", perr))
		}
		check("close", cerr)
	}
	return errors.Join(errs...)
}

// closeHandshake closes the connection at a random moment of its handshake:
// before, during crypto/tls's part, or during the handoff. A handshake that
// returned after Close returned must have failed.
func (f *fault) closeHandshake(k *ktls.Conn, p *tls.Conn) error {
	go p.Handshake()
	hs := make(chan error, 1)
	go func() { hs <- k.Handshake() }()
	time.Sleep(f.delay)
	k.Close()
	var err error
	select {
	case err = <-hs:
	case <-time.After(faultLimit):
		return errors.New("the handshake outlived Close")
	}
	if _, werr := k.Write([]byte("x")); werr == nil {
		return errors.New("Write after Close succeeded")
	}
	p.SetReadDeadline(time.Now().Add(testenv.Prompt))
	_, perr := io.Copy(io.Discard, p)
	return errors.Join(notHang(err), peerAccepts(perr))
}

// write writes b in the fault's chunk sizes.
func (f *fault) write(w io.Writer, b []byte) error {
	return f.writeSlowly(w, b, 0)
}

func (f *fault) writeSlowly(w io.Writer, b []byte, pause time.Duration) error {
	for i := 0; len(b) > 0; i++ {
		n := min(f.chunks[i%len(f.chunks)], len(b))
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		time.Sleep(pause)
	}
	return nil
}

var errMismatchPrefix = errors.New("the bytes read before the failure differ from those sent")

// readAll reads len(want) bytes and compares their hash with want's; on an
// error it checks that what came before it is a prefix of want.
func readAll(r io.Reader, want []byte, _ int) error {
	got := make([]byte, 0, len(want))
	buf := make([]byte, 32<<10)
	for len(got) < len(want) {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if len(got) > len(want) {
			return fmt.Errorf("read %d bytes, more than the %d sent", len(got), len(want))
		}
		if err != nil {
			if !bytes.Equal(got, want[:len(got)]) {
				return errMismatchPrefix
			}
			return fmt.Errorf("after %d of %d bytes: %w", len(got), len(want), err)
		}
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		return testenv.ErrMismatch
	}
	return nil
}

// readWithDeadlines reads with a read deadline a few milliseconds ahead,
// renewed after every timeout: a timeout is not fatal (as in crypto/tls), and
// no byte may be lost or repeated across one.
func readWithDeadlines(k *ktls.Conn, want []byte) error {
	got := make([]byte, 0, len(want))
	buf := make([]byte, 4<<10)
	progress := time.Now()
	timeouts := 0
	for len(got) < len(want) {
		k.SetReadDeadline(time.Now().Add(time.Duration(1+len(got)%5) * time.Millisecond))
		n, err := k.Read(buf)
		got = append(got, buf[:n]...)
		if n > 0 {
			progress = time.Now()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			timeouts++
			if time.Since(progress) > faultStall {
				return fmt.Errorf("no byte for %v across %d read timeouts, after %d of %d bytes (rx: %s)", faultStall, timeouts, len(got), len(want), k.Backend().RX)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", len(got), len(want), err)
		}
	}
	k.SetReadDeadline(time.Now().Add(faultLimit))
	if !bytes.Equal(got, want) {
		return testenv.ErrMismatch
	}
	return nil
}

// spliceOut copies the connection into a loopback TCP conn, as a proxy does
// (the kernel engine splices), and checks what comes out the other end.
func spliceOut(k *ktls.Conn, want []byte) error {
	a, b, err := testenv.Loopback()
	if err != nil {
		return err
	}
	defer a.Close()
	defer b.Close()
	a.SetDeadline(time.Now().Add(faultLimit))
	b.SetDeadline(time.Now().Add(faultLimit))
	done := make(chan error, 1)
	go func() { done <- readAll(b, want, 0) }()
	n, err := io.Copy(a, k)
	if err != nil {
		return fmt.Errorf("io.Copy after %d bytes: %w", n, err)
	}
	if n != int64(len(want)) {
		return fmt.Errorf("io.Copy moved %d bytes, want %d", n, len(want))
	}
	return <-done
}

// notHang fails an error that is a timeout of faultLimit: the operation hung.
func notHang(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("hung until the deadline: %w", err)
	}
	return nil
}

// peerAccepts checks the stock peer's error: it may be EOF, a reset or a
// closed conn, never a local error, which crypto/tls reports when it rejects
// what it received (a record that does not open is bad_record_mac).
func peerAccepts(err error) error {
	if err != nil && strings.Contains(err.Error(), "local error") {
		return fmt.Errorf("the stock peer rejected what ktls sent: %w", err)
	}
	return notHang(err)
}
