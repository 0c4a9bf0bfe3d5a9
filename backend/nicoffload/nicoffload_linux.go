//go:build linux

package nicoffload

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
)

var (
	_ backend.Backend      = (*engine)(nil)
	_ backend.Checker      = (*engine)(nil)
	_ backend.Sealer       = (*sealer)(nil)
	_ backend.FileSender   = (*sealer)(nil)
	_ backend.SocketSender = (*sealer)(nil)
	_ backend.Reporter     = (*sealer)(nil)
	_ backend.Opener       = (*opener)(nil)
	_ backend.Splicer      = (*opener)(nil)
	_ backend.Reporter     = (*opener)(nil)
	_ backend.IntoReader   = (*intoOpener)(nil)
)

type engine struct {
	opts   Options
	kernel backend.Backend
}

// New returns the nic engine. It installs kTLS through the kernel engine
// (TLS 1.2 only, so none of the kernel engine's TLS 1.3 options apply).
func New(opts Options) backend.Backend {
	return &engine{opts: opts, kernel: kernel.New(kernel.Options{})}
}

// Name returns backend.NIC.
func (e *engine) Name() string { return backend.NIC }

// Check reports, without side effects, whether the engine may serve a
// direction: a version and suite devices take, an interface on this host
// with the direction's offload feature on (a cached fact, see
// hostOffload), and kTLS for the suite (the kernel engine's cached probe).
// The egress device of a connection is known only at install time, so nil
// is a maybe, as the contract says.
func (e *engine) Check(tx bool, version, suite uint16) error {
	if err := offloadable(version, suite); err != nil {
		return err
	}
	if err := hostOffload(tx); err != nil {
		return err
	}
	if err := kernel.Probe(tx, version, suite); err != nil {
		return kernelError("needs kTLS", err)
	}
	return nil
}

// NewSealer installs kTLS on the TX direction of l if its egress device has
// tls-hw-tx-offload on, and reports what the kernel did (see the package
// documentation). Refused before the socket is touched: an error wrapping
// backend.ErrNotSupported.
func (e *engine) NewSealer(l backend.Link, p backend.Params) (backend.Sealer, error) {
	tcp, s, dev, err := e.prepare(true, l, p)
	if err != nil {
		return nil, err
	}
	half, r, err := e.install(true, tcp, s, dev, l, p)
	if err != nil {
		return nil, err
	}
	return &sealer{Sealer: half.(backend.Sealer), report: r}, nil
}

// NewOpener is NewSealer for RX (tls-hw-rx-offload). The kernel asks the
// same device for RX as for TX (tls_set_device_offload_rx,
// get_netdev_for_sock).
func (e *engine) NewOpener(l backend.Link, p backend.Params) (backend.Opener, error) {
	tcp, s, dev, err := e.prepare(false, l, p)
	if err != nil {
		return nil, err
	}
	half, r, err := e.install(false, tcp, s, dev, l, p)
	if err != nil {
		return nil, err
	}
	o := &opener{Opener: half.(backend.Opener), report: r}
	if ir, ok := half.(backend.IntoReader); ok {
		return &intoOpener{opener: o, ir: ir}, nil
	}
	return o, nil
}

// prepare decides, without touching the socket, whether the direction can
// be offloaded: the suite, the socket, its egress device and that device's
// feature. Every refusal wraps backend.ErrNotSupported.
func (e *engine) prepare(tx bool, l backend.Link, p backend.Params) (*net.TCPConn, sockInfo, device, error) {
	if err := offloadable(p.Version, p.CipherSuite); err != nil {
		return nil, sockInfo{}, device{}, err
	}
	tcp, ok := l.Conn.(*net.TCPConn)
	if !ok {
		// Package conn unwraps NetConn and Raw down to the *net.TCPConn
		// (docs/ARCHITECTURE.md, "Conns that arrive wrapped"); a socket
		// reached only through syscall.Conn has no address for egress.
		return nil, sockInfo{}, device{}, backend.NotSupported(backend.NIC, "device offload needs a *net.TCPConn, not %T", l.Conn)
	}
	s, err := socketOf(tcp)
	if err != nil {
		return nil, sockInfo{}, device{}, backend.NotSupported(backend.NIC, "%w", err)
	}
	dev, err := egress(s)
	if err != nil {
		return nil, sockInfo{}, device{}, backend.NotSupported(backend.NIC, "finding the egress device: %w", err)
	}
	if err := deviceOffers(dev, tx); err != nil {
		return nil, sockInfo{}, device{}, err
	}
	return tcp, s, dev, nil
}

// deviceOffers checks that dev, and every member of a bond (the kernel picks
// one per socket), has the direction's feature on.
func deviceOffers(dev device, tx bool) error {
	e, err := dialEthtool()
	if err != nil {
		return backend.NotSupported(backend.NIC, "%w", err)
	}
	defer e.Close()
	for _, l := range append([]link{dev.link}, dev.members...) {
		f, err := e.features(l.index)
		if err != nil {
			return backend.NotSupported(backend.NIC, "%s: %w", l.name, err)
		}
		feat, name := f.direction(tx)
		what := l.name
		if l.index == dev.index {
			what = dev.String()
		}
		switch {
		case feat.Active:
		case feat.Supported:
			return backend.NotSupported(backend.NIC, "%s: %s off (supported: ethtool -K %s %s on)", what, name, l.name, name)
		default:
			return backend.NotSupported(backend.NIC, "%s: no %s", what, name)
		}
	}
	return nil
}

// kernelError is the kernel engine's error err, met while nic was doing
// what. The kernel's refusal becomes nic's own, with the kernel's as Err
// (nothing was done: the connection tries its next candidate) and its text
// as before, "nic: what: kernel: reason: backend: not supported"; any other
// error stays a failure.
func kernelError(what string, err error) error {
	if ns, ok := errors.AsType[*backend.NotSupportedError](err); ok {
		return &backend.NotSupportedError{Engine: backend.NIC, Reason: what + ": " + ns.Engine + ": " + ns.Reason, Err: err}
	}
	return fmt.Errorf("nic: %s: %w", what, err)
}

// installMu serializes this process's installs, so that the
// /proc/net/tls_stat deltas around one are its own (other processes in the
// namespace can still blur them; statVerdict then says it cannot tell).
var installMu sync.Mutex

// install puts kTLS on the direction through the kernel engine and asks the
// kernel whether dev took it.
func (e *engine) install(tx bool, tcp *net.TCPConn, s sockInfo, dev device, l backend.Link, p backend.Params) (any, report, error) {
	installMu.Lock()
	defer installMu.Unlock()
	before := readTLSStat()
	var half any
	var err error
	if tx {
		half, err = e.kernel.NewSealer(l, p)
	} else {
		half, err = e.kernel.NewOpener(l, p)
	}
	if err != nil {
		// The kernel engine's own error says whether it did anything
		// (backend.ErrNotSupported when it did not).
		return nil, report{}, kernelError("installing kTLS", err)
	}
	after := readTLSStat()
	hw, how := verify(tx, s, before, after)
	dir := "rx"
	if tx {
		dir = "tx"
	}
	if !hw {
		return half, report{name: backend.Kernel, reason: "nic: the kernel kept " + dev.String() + " in software: " + how}, nil
	}
	r := report{name: backend.NIC, reason: dev.String() + " took " + dir + ": " + how}
	if tx && e.opts.ZeroCopySendfile {
		if err := setZeroCopyRO(tcp); err != nil {
			r.reason += "; TLS_TX_ZEROCOPY_RO not set: " + err.Error()
		} else {
			r.reason += "; zero-copy sendfile (TLS_TX_ZEROCOPY_RO)"
		}
	}
	return half, r, nil
}

// verify says whether the device took the socket's direction, and how that
// is known: sock_diag's TLS_INFO_TXCONF/RXCONF where the kernel gives it
// (CAP_NET_ADMIN), else the /proc/net/tls_stat counters around the install.
// When neither can tell, the half counts as software: nic is reported only
// on proof.
func verify(tx bool, s sockInfo, before, after map[string]int64) (hw bool, how string) {
	u, _, err := sockDiag(s)
	if err == nil && u.hasTLS {
		conf, field := u.rxConf, "rxconf"
		if tx {
			conf, field = u.txConf, "txconf"
		}
		return conf == tlsConfHW, field + " " + confName(conf)
	}
	why := "sock_diag gave no TLS_INFO (it does only with CAP_NET_ADMIN)"
	if err != nil {
		why = err.Error()
	}
	counter := statRXDevice
	if tx {
		counter = statTXDevice
	}
	if hw, ok := statVerdict(before, after, tx); ok {
		if hw {
			return true, procTLSStat + " " + counter + " +1 (" + why + ")"
		}
		return false, procTLSStat + " " + strings.Replace(counter, "Device", "Sw", 1) + " +1 (" + why + ")"
	}
	return false, "not verified, counted as software: " + why + "; " + procTLSStat + " " + counter +
		" moved by " + strconv.FormatInt(after[counter]-before[counter], 10) + " with other sockets"
}

// setZeroCopyRO sets TLS_TX_ZEROCOPY_RO (see Options.ZeroCopySendfile).
func setZeroCopyRO(tcp *net.TCPConn) error {
	rc, err := tcp.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_TLS, optTXZeroCopyRO, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt(TLS_TX_ZEROCOPY_RO): %w", serr)
	}
	return nil
}

// hostTTL is how long the host's offload fact is kept. Features change only
// with ethtool -K (and then only for new sockets, tls-offload.rst), so a
// minute between reads of every interface costs nothing and still sees an
// operator's change.
const hostTTL = time.Minute

// host caches, per direction, whether any interface has the offload feature
// on; mu guards it.
var host struct {
	mu     sync.Mutex
	at     time.Time
	tx, rx error
}

// hostOffload reports whether any interface of the calling thread's network
// namespace has the direction's feature on: nil, or an error wrapping
// backend.ErrNotSupported naming the interfaces. A conclusive answer is
// cached for hostTTL; one that could not read the features is not cached.
func hostOffload(tx bool) error {
	host.mu.Lock()
	defer host.mu.Unlock()
	if host.at.IsZero() || time.Since(host.at) > hostTTL {
		ifs, err := Interfaces()
		if err != nil {
			return backend.NotSupported(backend.NIC, "reading the interfaces' features: %w", err)
		}
		host.tx, host.rx = anyOffers(ifs, true), anyOffers(ifs, false)
		host.at = time.Now()
	}
	if tx {
		return host.tx
	}
	return host.rx
}

// report is what a half says it ended up as (backend.Reporter).
type report struct{ name, reason string }

// Engine returns backend.NIC when the device took the direction, else
// backend.Kernel, with the reason.
func (r report) Engine() (name, reason string) { return r.name, r.reason }

// sealer is the kernel engine's TX half with the report. It keeps the
// kernel half's sendfile and splice. It is never a backend.Rekeyer: the engine serves
// TLS 1.2 only, which has no KeyUpdate (RFC 8446 §4.6.3 is TLS 1.3's).
type sealer struct {
	backend.Sealer
	report
}

// SendFile is the kernel half's (with a device that took the socket and
// Options.ZeroCopySendfile, without an in-kernel copy); not handled when
// the kernel half cannot send files.
func (s *sealer) SendFile(f backend.File, off, n int64) (int64, uint64, bool, error) {
	if fs, ok := s.Sealer.(backend.FileSender); ok {
		return fs.SendFile(f, off, n)
	}
	return 0, 0, false, nil
}

// SpliceFrom is the kernel half's; where it has none, nothing is done and
// the caller copies (the backend.SocketSender contract's ErrNotSupported).
func (s *sealer) SpliceFrom(src syscall.RawConn, n int64) (int64, int, uint64, error, error) {
	if ss, ok := s.Sealer.(backend.SocketSender); ok {
		return ss.SpliceFrom(src, n)
	}
	return 0, 0, 0, nil, backend.NotSupported(backend.NIC, "the kernel half cannot splice")
}

// opener is the kernel engine's RX half with the report. It keeps the
// kernel half's splice and, as intoOpener, its reading into the caller's
// buffer; as sealer, it is never a backend.Rekeyer.
type opener struct {
	backend.Opener
	report
}

// SpliceTo is the kernel half's; where it has none, nothing is done and the
// caller copies (the backend.Splicer contract's ErrNotSupported).
func (o *opener) SpliceTo(dst syscall.RawConn) (int64, error, error) {
	if sp, ok := o.Opener.(backend.Splicer); ok {
		return sp.SpliceTo(dst)
	}
	return 0, nil, backend.NotSupported(backend.NIC, "the kernel half cannot splice")
}

// intoOpener is an opener whose kernel half reads into the caller's buffer.
type intoOpener struct {
	*opener
	ir backend.IntoReader
}

// ReadRecordInto is the kernel half's.
func (o *intoOpener) ReadRecordInto(b []byte) (uint8, int, error) { return o.ir.ReadRecordInto(b) }
