package nicoffload

import (
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/netlink"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

func TestMain(m *testing.M) { testenv.MainWithLeakCheck(m) }

// capture writes a real message to $KTLS_NIC_CAPTURE/name in hex, for
// testdata (how the captured files were made), and logs it inside the VM,
// whose files do not come back.
func capture(t *testing.T, name string, b []byte) {
	t.Helper()
	dir := os.Getenv("KTLS_NIC_CAPTURE")
	if dir == "" {
		return
	}
	var sb strings.Builder
	for i := 0; i < len(b); i += 32 {
		sb.WriteString(hex.EncodeToString(b[i:min(i+32, len(b))]) + "\n")
	}
	if testenv.InVM() {
		t.Logf("capture %s:\n%s", name, sb.String())
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tls12Params returns fresh parameters of the suite every mainline
// offloading device takes.
func tls12Params(t testing.TB) backend.Params {
	s, ok := keyschedule.Lookup(tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
	if !ok {
		t.Fatal("no TLS 1.2 AES-128-GCM suite in keyschedule")
	}
	return testenv.RandomParams(s, 1)
}

// ulpOf reads the socket's upper-layer protocol ("" for none).
func ulpOf(t *testing.T, c net.Conn) string {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var name string
	rc.Control(func(fd uintptr) {
		name, _ = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_ULP)
	})
	return name
}

// TestEgressLoopback looks up, on this machine's real kernel, the device of
// a loopback connection (lo, IPv4 and IPv6) and its features: lo offloads
// nothing.
func TestEgressLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				if testenv.InVM() {
					// The harness's guests bring lo up with both
					// addresses.
					t.Fatalf("no %s in the VM: %v", addr, err)
				}
				t.Skipf("no %s here: %v", addr, err)
			}
			l.Close()
			c, _ := testenv.TCPPairAt(t, addr)
			s, err := socketOf(c.(*net.TCPConn))
			if err != nil {
				t.Fatal(err)
			}
			if s.cookie == 0 {
				t.Error("no SO_COOKIE")
			}
			d, err := egress(s)
			if err != nil {
				t.Fatal(err)
			}
			if d.name != "lo" || d.flags&iffLoopback == 0 || d.kind != "" || d.String() != "lo" {
				t.Errorf("egress = %+v, want lo", d)
			}
			if name, err := Egress(c.(*net.TCPConn)); err != nil || name != "lo" {
				t.Errorf("Egress = %q, %v", name, err)
			}
			f, err := DeviceFeatures(d.index)
			if err != nil || f != (Features{}) {
				t.Errorf("DeviceFeatures(lo) = %+v, %v; want none", f, err)
			}
			if addr == "127.0.0.1:0" {
				rt, err := netlink.Dial(unix.NETLINK_ROUTE, "NETLINK_ROUTE")
				if err != nil {
					t.Fatal(err)
				}
				defer rt.Close()
				msgs, err := rt.Execute(rtmGetRoute, 0, routeRequest(s, uint32(os.Geteuid())))
				if err != nil || len(msgs) != 1 {
					t.Fatalf("RTM_GETROUTE: %v, %v", msgs, err)
				}
				capture(t, "rtm-newroute-127.0.0.1.hex", msgs[0].Data)
				msgs, err = rt.Execute(rtmGetLink, 0, linkRequest(1))
				if err != nil || len(msgs) != 1 {
					t.Fatalf("RTM_GETLINK 1: %v, %v", msgs, err)
				}
				capture(t, "rtm-newlink-lo.hex", msgs[0].Data)
				_, raw, err := sockDiag(s)
				if err != nil {
					t.Fatalf("sock_diag of a plain socket: %v", err)
				}
				capture(t, "sock-diag-tcp.hex", raw)
			}
		})
	}
}

// TestInterfaces lists the interfaces: lo is there, up, a loopback, with
// its features read and none of kTLS's on.
func TestInterfaces(t *testing.T) {
	ifs, err := Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, i := range ifs {
		if i.Name == "lo" {
			found = true
			if !i.Up || !i.Loopback || i.Err != nil || i.Features != (Features{}) || i.Summary() != "no kTLS offload" {
				t.Errorf("lo: %+v (%s)", i, i.Summary())
			}
		}
	}
	if !found {
		t.Errorf("no lo in %+v", ifs)
	}
}

// TestRefusedBeforeTouching checks that the engine refuses a loopback
// connection, whose device (lo) has no offload, with a reason that names
// the device and the feature, and leaves the socket as it was: no ULP, so
// the kernel engine can still take it.
func TestRefusedBeforeTouching(t *testing.T) {
	c, _ := testenv.TCPPairAt(t, "127.0.0.1:0")
	e := New(Options{})
	p := tls12Params(t)
	if _, err := e.NewSealer(backend.Link{Conn: c}, p); !errors.Is(err, backend.ErrNotSupported) || !strings.Contains(err.Error(), "nic: lo: no tls-hw-tx-offload") {
		t.Errorf("NewSealer over lo = %v", err)
	}
	if _, err := e.NewOpener(backend.Link{Conn: c}, p); !errors.Is(err, backend.ErrNotSupported) || !strings.Contains(err.Error(), "nic: lo: no tls-hw-rx-offload") {
		t.Errorf("NewOpener over lo = %v", err)
	}
	p.Version, p.CipherSuite = tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256
	if _, err := e.NewSealer(backend.Link{Conn: c}, p); !errors.Is(err, backend.ErrNotSupported) || !strings.Contains(err.Error(), "TLS 1.2 only") {
		t.Errorf("NewSealer TLS 1.3 = %v", err)
	}
	if _, err := e.NewSealer(backend.Link{Conn: struct{ net.Conn }{c}}, tls12Params(t)); !errors.Is(err, backend.ErrNotSupported) {
		t.Errorf("NewSealer over a wrapped conn = %v", err)
	}
	if ulp := ulpOf(t, c); ulp != "" {
		t.Errorf("the socket got ULP %q from a refused install", ulp)
	}
}

// TestCheck: on a machine with no offloading interface (the VM's, and any
// without such a NIC) the Checker refuses, naming the feature; TLS 1.3 and
// ChaCha20-Poly1305 are refused everywhere.
func TestCheck(t *testing.T) {
	e := New(Options{}).(backend.Checker)
	if err := e.Check(true, tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256); !errors.Is(err, backend.ErrNotSupported) {
		t.Errorf("Check(TLS 1.3) = %v", err)
	}
	if err := e.Check(false, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256); !errors.Is(err, backend.ErrNotSupported) {
		t.Errorf("Check(ChaCha20-Poly1305) = %v", err)
	}
	ifs, err := Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, tx := range []bool{true, false} {
		if anyOffers(ifs, tx) == nil {
			t.Skipf("an interface here offloads kTLS: %+v", ifs)
		}
		err := e.Check(tx, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
		_, feat := Features{}.direction(tx)
		if !errors.Is(err, backend.ErrNotSupported) || !strings.Contains(err.Error(), "no interface has "+feat+" on (") {
			t.Errorf("Check(tx %v) = %v", tx, err)
		}
	}
}

// TestSoftwareReportsKernel installs kTLS through the engine's install step
// on a loopback socket (past the device check, which lo fails), as it would
// on a device that offers offload but keeps the socket in software, and
// checks that sock_diag reports software mode and the halves say kernel,
// with the reason; that they keep the kernel halves' sendfile, splice and
// reading into the caller's buffer; and that records go through them.
func TestSoftwareReportsKernel(t *testing.T) {
	testenv.RequireKernelFeature(t, testenv.FeatureKTLS, kernel.Probe(true, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256))
	testenv.RequireKernelFeature(t, testenv.FeatureKTLS, kernel.Probe(false, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256))
	c, srv := testenv.TCPPairAt(t, "127.0.0.1:0")
	softwareOn(t, c, srv, "lo")
}

// softwareOn runs TestSoftwareReportsKernel's checks on a connected pair
// whose client end routes through the device named dev.
func softwareOn(t *testing.T, c, srv net.Conn, dev string) {
	t.Helper()
	e := New(Options{ZeroCopySendfile: true}).(*engine)
	s, err := socketOf(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	d, err := egress(s)
	if err != nil {
		t.Fatal(err)
	}
	if d.name != dev {
		t.Fatalf("egress %s, want %s", d, dev)
	}
	tx, rx := tls12Params(t), tls12Params(t)
	halfTX, rTX, err := e.install(true, c.(*net.TCPConn), s, d, backend.Link{Conn: c}, testenv.CloneParams(tx))
	if err != nil {
		t.Fatal(err)
	}
	halfRX, rRX, err := e.install(false, c.(*net.TCPConn), s, d, backend.Link{Conn: c}, testenv.CloneParams(rx))
	if err != nil {
		t.Fatal(err)
	}
	u, raw, err := sockDiag(s)
	if err != nil {
		t.Fatal(err)
	}
	if d.name == "lo" {
		capture(t, "sock-diag-ktls-sw.hex", raw)
	}
	if u.name != "tls" || !u.hasTLS || u.txConf != tlsConfSW || u.rxConf != tlsConfSW || u.version != tls.VersionTLS12 || u.cipher != testCipherAESGCM128 || u.zeroCopyRO {
		t.Errorf("sock_diag = %+v, want tls, TLS 1.2 AES-GCM-128, txconf sw, rxconf sw", u)
	}
	for _, tc := range []struct {
		r    report
		want string
	}{{rTX, "txconf sw"}, {rRX, "rxconf sw"}} {
		want := "nic: the kernel kept " + d.String() + " in software: " + tc.want
		if tc.r.name != backend.Kernel || tc.r.reason != want {
			t.Errorf("report = %+v, want kernel, %q", tc.r, want)
		}
	}

	// The halves as NewSealer and NewOpener return them.
	se := backend.Sealer(&sealer{Sealer: halfTX.(backend.Sealer), report: rTX})
	op := backend.Opener(&intoOpener{opener: &opener{Opener: halfRX.(backend.Opener), report: rRX}, ir: halfRX.(backend.IntoReader)})
	if name, _ := se.(backend.Reporter).Engine(); name != backend.Kernel {
		t.Errorf("sealer Engine = %s", name)
	}
	if _, ok := se.(backend.FileSender); !ok {
		t.Error("the sealer lost FileSender")
	}
	if _, ok := se.(backend.SocketSender); !ok {
		t.Error("the sealer lost SocketSender")
	}
	if _, ok := op.(backend.Splicer); !ok {
		t.Error("the opener lost Splicer")
	}
	if _, ok := op.(backend.IntoReader); !ok {
		t.Error("the opener lost IntoReader")
	}
	if _, ok := se.(backend.Rekeyer); ok {
		t.Error("a TLS 1.2 sealer is a Rekeyer")
	}

	// Records both ways, against the kernel engine on the other end.
	k := kernel.New(kernel.Options{})
	peerRX, err := k.NewOpener(backend.Link{Conn: srv}, testenv.CloneParams(tx))
	if err != nil {
		t.Fatal(err)
	}
	peerTX, err := k.NewSealer(backend.Link{Conn: srv}, testenv.CloneParams(rx))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	srv.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := se.WriteRecords(backend.TypeApplicationData, []byte("to the server")); err != nil {
		t.Fatal(err)
	}
	if typ, data, err := peerRX.ReadRecord(); err != nil || typ != backend.TypeApplicationData || string(data) != "to the server" {
		t.Errorf("server read %d %q, %v", typ, data, err)
	}
	if _, err := peerTX.WriteRecords(backend.TypeApplicationData, []byte("to the client")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, backend.MaxPlaintext)
	if typ, n, err := op.(backend.IntoReader).ReadRecordInto(buf); err != nil || typ != backend.TypeApplicationData || string(buf[:n]) != "to the client" {
		t.Errorf("client read %d %q, %v", typ, buf[:n], err)
	}

	// TLS_TX_ZEROCOPY_RO is the device path's: the kernel (5.19, 6.1 in
	// the VM) takes the option on a software socket too, and sock_diag
	// shows it only when txconf is hw (tls_get_info).
	if err := setZeroCopyRO(c.(*net.TCPConn)); err != nil {
		t.Errorf("TLS_TX_ZEROCOPY_RO: %v", err)
	}
	if u, _, err := sockDiag(s); err != nil || u.zeroCopyRO {
		t.Errorf("sock_diag after TLS_TX_ZEROCOPY_RO = %+v, %v", u, err)
	}
}

// TestKernelError: the kernel's refusal becomes nic's own, with the text it
// always had and the kernel's refusal still found by errors.As; any other
// kernel error stays a failure.
func TestKernelError(t *testing.T) {
	refusal := backend.NotSupported(backend.Kernel, "setsockopt(TCP_ULP, \"tls\"): %w", unix.ENOENT)
	err := kernelError("installing kTLS", refusal)
	ns, ok := errors.AsType[*backend.NotSupportedError](err)
	if !ok || ns.Engine != backend.NIC || !errors.Is(err, unix.ENOENT) || !errors.Is(err, backend.ErrNotSupported) {
		t.Errorf("kernelError(%v) = %#v, want nic's refusal wrapping the kernel's", refusal, err)
	}
	if got, want := err.Error(), "nic: installing kTLS: kernel: setsockopt(TCP_ULP, \"tls\"): no such file or directory: backend: not supported"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	failure := errors.New("kernel: probe: loopback pair: EMFILE")
	if err := kernelError("needs kTLS", failure); errors.Is(err, backend.ErrNotSupported) || err.Error() != "nic: needs kTLS: "+failure.Error() {
		t.Errorf("kernelError(%v) = %v, want a failure", failure, err)
	}
}
