// Package ktls is a drop-in replacement for crypto/tls's Dial, Listen, Client
// and Server that makes TLS cheap.
//
// The handshake runs in the standard library's crypto/tls with the
// *tls.Config the program passes, unchanged. Then each connection's record
// layer moves, per direction, into the best engine the host offers: Linux
// kernel TLS, kernel TLS with NIC offload, the kernel crypto API (AF_ALG), or
// ktls's own pure-Go record layer; crypto/tls's own record layer ("stdlib")
// stays the last resort, used whenever keys or sequence numbers are not known
// with certainty or the suite has no AEAD.
//
// The environment variable KTLS_BACKEND forces an engine for both directions
// ("userspace") or per direction ("tx=kernel,rx=userspace"); it wins over
// WithBackend, so an operator can force an engine without a rebuild. With
// KTLS_STRICT=1 (or WithStrict), a forced engine that cannot serve fails the
// handshake instead of falling back. Conn.Backend says what a connection got
// and why.
//
// In FIPS 140-3 mode (crypto/fips140.Enabled: GODEBUG=fips140=on or only, or
// a program built with GOFIPS140) every connection stays on crypto/tls's own
// record layer, the only one inside the Go Cryptographic Module: auto chooses
// stdlib, and a forced engine falls back to stdlib, or fails the handshake
// with a *StrictError in strict mode, with the reason in Conn.Backend.
//
// # Conns that arrive wrapped
//
// A conn wrapped by a PROXY-protocol reader, a multiplexer or a proxy may
// still get kernel TLS. ktls follows NetConn() net.Conn (as crypto/tls.Conn
// has) and Raw() net.Conn (as github.com/pires/go-proxyproto's Conn has) to
// a *net.TCPConn, or takes a syscall.Conn whose descriptor is a TCP socket.
// The kernel takes a direction only where ktls proves that no byte of it is
// held above the socket:
//
//   - writes: the bytes the socket took from the process (TCP_INFO's
//     counters, Linux 4.19, and SIOCOUTQ) equal those crypto/tls wrote
//     through the wrapper;
//   - reads: the bytes the process read from the socket (TCP_INFO's
//     tcpi_bytes_received, Linux 4.1, minus SIOCINQ) equal those crypto/tls
//     read through the wrapper; or, where the wrapper read more (a PROXY
//     header), a Read of the wrapper under a read deadline already past
//     returns a timeout and no bytes. Bytes it does return are kept: they go
//     to the user-space engine first, and RX stays in user space.
//
// Otherwise the direction stays in ktls's user-space engine, which reads and
// writes through the wrapper, and Conn.Backend says why. The wrapper's
// deadlines must reach the socket; the checks clear the read and write
// deadlines set before the handshake, so set them again after it.
// RemoteAddr, LocalAddr and Close stay the wrapper's. docs/ARCHITECTURE.md,
// "Conns that arrive wrapped", has the details.
package ktls

import (
	"context"
	"crypto/fips140"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/afalg"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/backend/nicoffload"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/conn"
	"github.com/ktls-go/ktls/internal/cpufacts"
	"github.com/ktls-go/ktls/selector"
)

// Conn is a TLS connection with crypto/tls.Conn's method set, plus Backend
// and io.ReaderFrom.
type Conn = conn.Conn

// BackendInfo says which engine protects each direction of a connection
// (kernel, nic, afalg, userspace or stdlib) and why: Reason in one line
// (String), TXDetail, RXDetail and BothStdlib in parts.
type BackendInfo = conn.BackendInfo

// DirectionInfo is how the engine of one direction was chosen
// (BackendInfo.TXDetail, BackendInfo.RXDetail).
type DirectionInfo = conn.DirectionInfo

// EngineChoice is one engine chosen for a direction, and why.
type EngineChoice = conn.EngineChoice

// Refusal is a candidate engine that declined a direction, and why.
type Refusal = conn.Refusal

// ErrKeyUpdateUnsupported is returned when the peer updates its TLS 1.3 keys
// and the engine that holds the connection's receiving side cannot follow.
var ErrKeyUpdateUnsupported = conn.ErrKeyUpdateUnsupported

// StrictError is the handshake error when a forced engine cannot serve under
// KTLS_STRICT=1 or WithStrict.
type StrictError = selector.StrictError

// An Option changes how ktls picks engines for a connection.
type Option func(*options)

type options struct {
	spec    string
	specSet bool
	strict  bool
	noPad   bool
	zcRO    bool
}

// WithBackend forces engines with the grammar of KTLS_BACKEND: "auto", one
// engine name for both directions (kernel, nic, afalg, userspace, stdlib),
// or "tx=NAME,rx=NAME". KTLS_BACKEND, when set, wins.
func WithBackend(spec string) Option {
	return func(o *options) { o.spec, o.specSet = spec, true }
}

// WithStrict makes the handshake fail with a *StrictError when a forced
// engine cannot serve, as KTLS_STRICT=1 does.
func WithStrict() Option {
	return func(o *options) { o.strict = true }
}

// WithRXExpectNoPad lets the kernel engine set TLS_RX_EXPECT_NO_PAD on TLS
// 1.3 connections (Linux 6.0): the kernel then decrypts straight into the
// reader's buffer, betting that the peer does not pad its records. Use it
// only with peers you trust: a peer that pads makes the kernel decrypt each
// such record twice, which the kernel's documentation calls "an attack
// vector to doubling the TLS processing cost". Kernels without the option
// ignore it.
func WithRXExpectNoPad() Option {
	return func(o *options) { o.noPad = true }
}

// WithNICZeroCopySendfile lets the nic engine set TLS_TX_ZEROCOPY_RO
// (Linux 5.19) on a sending socket the device took: sendfile then hands the
// page cache's pages to the device without the kernel copying them first.
//
// The hazard: a file must not change while it is served. The device reads
// the pages when it transmits and again for every TCP retransmission, so a
// file written to before the peer acknowledged its bytes reaches the peer
// as records that fail authentication, and the peer drops the connection
// (Documentation/networking/tls.rst, TLS_TX_ZEROCOPY_RO). Use it only for
// files nothing writes while they are served: immutable objects,
// content-addressed blobs. It does nothing for a connection the kernel
// keeps in software, or on the other engines; BackendInfo's reason says
// whether it was set. Off by default.
func WithNICZeroCopySendfile() Option {
	return func(o *options) { o.zcRO = true }
}

// connOptions resolves the options and the environment into what a
// connection needs. This is the one place that wires the engines.
func connOptions(opts []Option) conn.Options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	var out conn.Options
	var prog selector.Spec
	if o.specSet {
		var err error
		if prog, err = selector.ParseSpec(o.spec); err != nil {
			out.PolicyErr = err
			return out
		}
	}
	out.Policy, out.PolicyErr = selector.Resolve(prog, o.strict, os.Getenv)
	out.CPU = cpufacts.Detect()
	// FIPS 140-3 mode (GODEBUG=fips140=on or only, or a binary built with
	// GOFIPS140; https://go.dev/doc/security/fips140) is set at start-up and
	// "can't be changed after the program has started" (crypto/fips140.Enabled),
	// so reading it per connection costs a load and can never disagree with
	// an earlier read. In it only crypto/tls's own record layer is inside the
	// Go Cryptographic Module, and the selector keeps every direction on
	// stdlib (selector.Facts.FIPS). The engines are then not wired in at all:
	// none could be chosen, and each handoff would otherwise ask their probes
	// for nothing.
	out.FIPS = fips140.Enabled()
	if !out.FIPS {
		out.Backends = []backend.Backend{
			kernel.New(kernel.Options{RXExpectNoPad: o.noPad}),
			nicoffload.New(nicoffload.Options{ZeroCopySendfile: o.zcRO}),
			afalg.New(),
			userspace.New(),
		}
	}
	return out
}

// Client returns a client-side connection over c, as tls.Client. The
// handshake runs on first use or on Handshake.
func Client(c net.Conn, config *tls.Config, opts ...Option) *Conn {
	return conn.Client(c, config, connOptions(opts))
}

// Server returns a server-side connection over c, as tls.Server. c may wrap
// the accepted *net.TCPConn (a PROXY-protocol reader, a multiplexer): see
// "Conns that arrive wrapped" in the package documentation for when the
// kernel still takes it.
func Server(c net.Conn, config *tls.Config, opts ...Option) *Conn {
	return conn.Server(c, config, connOptions(opts))
}

type listener struct {
	net.Listener
	config *tls.Config
	opts   conn.Options
}

// Accept waits for the next connection and returns it as a *Conn whose
// handshake has not run yet.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return conn.Server(c, l.config, l.opts), nil
}

// NewListener returns a listener whose Accept returns server-side *Conn, as
// tls.NewListener. The options and KTLS_BACKEND are read once, here. inner
// may wrap the conns it accepts, as a PROXY-protocol listener does; see
// "Conns that arrive wrapped" in the package documentation.
func NewListener(inner net.Listener, config *tls.Config, opts ...Option) net.Listener {
	return &listener{Listener: inner, config: config, opts: connOptions(opts)}
}

// Listen listens on laddr and returns a listener of *Conn, as tls.Listen.
func Listen(network, laddr string, config *tls.Config, opts ...Option) (net.Listener, error) {
	if config == nil || len(config.Certificates) == 0 &&
		config.GetCertificate == nil && config.GetConfigForClient == nil {
		return nil, errors.New("tls: neither Certificates, GetCertificate, nor GetConfigForClient set in Config")
	}
	o := connOptions(opts)
	if o.PolicyErr != nil {
		return nil, o.PolicyErr
	}
	l, err := net.Listen(network, laddr)
	if err != nil {
		return nil, err
	}
	return &listener{Listener: l, config: config, opts: o}, nil
}

// Dial connects to addr and runs the handshake, as tls.Dial.
func Dial(network, addr string, config *tls.Config, opts ...Option) (*Conn, error) {
	return dial(context.Background(), new(net.Dialer), network, addr, config, connOptions(opts))
}

// DialWithDialer connects with dialer and runs the handshake, as
// tls.DialWithDialer: dialer.Timeout and dialer.Deadline bound the whole of
// it.
func DialWithDialer(dialer *net.Dialer, network, addr string, config *tls.Config, opts ...Option) (*Conn, error) {
	return dial(context.Background(), dialer, network, addr, config, connOptions(opts))
}

func dial(ctx context.Context, nd *net.Dialer, network, addr string, config *tls.Config, o conn.Options) (*Conn, error) {
	if o.PolicyErr != nil {
		return nil, o.PolicyErr
	}
	if nd.Timeout != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, nd.Timeout)
		defer cancel()
	}
	if !nd.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, nd.Deadline)
		defer cancel()
	}
	raw, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if config == nil {
		config = &tls.Config{}
	}
	// As crypto/tls: with no ServerName, verify the host dialled.
	if config.ServerName == "" {
		host := addr
		if i := strings.LastIndex(host, ":"); i >= 0 {
			host = host[:i]
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		config = config.Clone()
		config.ServerName = host
	}
	c := conn.Client(raw, config, o)
	if err := c.HandshakeContext(ctx); err != nil {
		// The Conn, not only raw: what the handshake installed is closed
		// with it.
		c.Close()
		return nil, err
	}
	return c, nil
}

// Dialer dials TLS connections, as tls.Dialer.
type Dialer struct {
	// NetDialer is the dialer for the TCP connection; nil means a zero
	// net.Dialer.
	NetDialer *net.Dialer
	// Config is the TLS configuration; nil means the zero config, as in
	// tls.Dialer.
	Config *tls.Config
	// Options choose engines for the connections.
	Options []Option
}

// Dial connects and runs the handshake.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// DialContext connects and runs the handshake; ctx bounds both. The
// returned net.Conn is a *Conn.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := d.NetDialer
	if nd == nil {
		nd = new(net.Dialer)
	}
	c, err := dial(ctx, nd, network, addr, d.Config, connOptions(d.Options))
	if err != nil {
		// Like tls.Dialer, do not return a typed nil in the interface.
		return nil, err
	}
	return c, nil
}
