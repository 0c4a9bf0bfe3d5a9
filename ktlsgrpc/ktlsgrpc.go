// Package ktlsgrpc is gRPC transport credentials over ktls: what grpc-go's
// own TLS credentials (google.golang.org/grpc/credentials, NewTLS and its
// helpers) do, with each connection's record layer moved into the best engine
// the host has (Linux kTLS where the kernel has it), as ktls.Client and
// ktls.Server do.
//
// It is a module of its own (github.com/ktls-go/ktls/ktlsgrpc), so that
// programs that use ktls without gRPC do not get grpc-go in their module
// graph.
//
// # Use
//
//	creds := ktlsgrpc.NewTLS(&tls.Config{Certificates: certs}) // as credentials.NewTLS
//	s := grpc.NewServer(grpc.Creds(creds))
//
//	creds := ktlsgrpc.NewClientTLSFromCert(pool, "")          // as credentials.NewClientTLSFromCert
//	cc, err := grpc.NewClient("dns:///example.com:443", grpc.WithTransportCredentials(creds))
//
// # What it does as grpc-go does
//
// Each behaviour follows grpc-go v1.85.0's credentials/tls.go:
//
//   - The configuration (applyDefaults there): "h2" is appended to NextProtos
//     unless present; MinVersion becomes TLS 1.2 unless MinVersion is set or
//     MaxVersion is below 1.2 (RFC 7540 section 9.2); an unset CipherSuites
//     becomes crypto/tls's secure suites minus those RFC 7540 appendix A
//     forbids. A GetConfigForClient's configs get the same defaults.
//   - ALPN is enforced: a handshake that negotiated no protocol is refused on
//     either side with grpc-go's error ("credentials: cannot check peer:
//     missing selected ALPN property. ..."), unless the environment variable
//     GRPC_ENFORCE_ALPN_ENABLED is "false" (read once, at start, as grpc-go's
//     internal/envconfig does), in which case it is logged and allowed.
//   - The AuthInfo is exactly credentials.TLSInfo, so that existing
//     peer.AuthInfo.(credentials.TLSInfo) assertions keep working: the
//     connection state, security level PrivacyAndIntegrity, and the peer's
//     SPIFFE ID where its leaf certificate has a valid one.
//   - The client takes the server name from the authority gRPC passes (which
//     carries OverrideServerName's value through Info().ServerName), and its
//     handshake honours the context's deadline and cancellation.
//   - The returned conn implements syscall.Conn with the raw socket's
//     SyscallConn, so that channelz can read the socket's options.
//   - Info, Clone and OverrideServerName behave as grpc-go's.
//
// # Which engines a connection got
//
// gRPC hides the conn from handlers, and credentials.TLSInfo has no room for
// more, so [OnHandshake] registers a function that receives each
// *ktls.Conn once its handshake succeeded (and ALPN was accepted), before
// gRPC uses it: Conn.Backend says which engine each direction got and why.
// Its RemoteAddr is the address a handler sees in peer.FromContext(ctx).Addr,
// which ties a request to its connection. [WithOptions] passes ktls options
// (ktls.WithBackend, ktls.WithStrict, ...) to every connection.
package ktlsgrpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/grpclog"

	"github.com/ktls-go/ktls"
)

var logger = grpclog.Component("ktlsgrpc")

// enforceALPN is grpc-go's internal/envconfig.EnforceALPNEnabled: true unless
// GRPC_ENFORCE_ALPN_ENABLED is "false" (any case), read once when the
// program starts, as grpc-go reads it. The same variable switches both, so a
// program that turned enforcement off for grpc-go's credentials gets the same
// from these.
var enforceALPN = !strings.EqualFold(os.Getenv("GRPC_ENFORCE_ALPN_ENABLED"), "false")

// alpnFailureHelpMessage is grpc-go's (credentials/tls.go), so that a program
// matching the refusal's text sees the same one.
const alpnFailureHelpMessage = "If you upgraded from a grpc-go version earlier than 1.67, your TLS connections may have stopped working due to ALPN enforcement. For more details, see: https://github.com/grpc/grpc-go/issues/434"

// An Option changes how the credentials make their connections.
type Option func(*options)

type options struct {
	ktls        []ktls.Option
	onHandshake func(*ktls.Conn)
}

// WithOptions passes ktls options to every connection the credentials make,
// for example ktls.WithBackend("userspace") or ktls.WithStrict(). The
// environment's KTLS_BACKEND still wins, as it does for ktls.Dial.
func WithOptions(opts ...ktls.Option) Option {
	return func(o *options) { o.ktls = append(o.ktls, opts...) }
}

// OnHandshake registers f to receive each connection once its handshake and
// ALPN check succeeded, before gRPC reads or writes it: f(c).Backend() says
// which engine each direction got. f runs in the goroutine of the handshake,
// which gRPC waits for, so it should return quickly; it must not read, write
// or close c. A connection refused (handshake error, missing ALPN) is not
// passed to f. A later OnHandshake replaces an earlier one.
func OnHandshake(f func(c *ktls.Conn)) Option {
	return func(o *options) { o.onHandshake = f }
}

// creds is credentials.TransportCredentials over ktls, the counterpart of
// grpc-go's tlsCreds (credentials/tls.go).
type creds struct {
	config *tls.Config
	opts   options
}

var _ credentials.TransportCredentials = (*creds)(nil)

// NewTLS returns transport credentials with the configuration c, as
// credentials.NewTLS: c is cloned, and the clone gets grpc-go's defaults
// (see the package documentation).
func NewTLS(c *tls.Config, opts ...Option) credentials.TransportCredentials {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return newCreds(c, o)
}

func newCreds(c *tls.Config, o options) *creds {
	// As grpc-go's NewTLS: the defaults apply to the configs that
	// GetConfigForClient returns too, so that a server choosing its
	// configuration per client still offers h2 and TLS 1.2 at least.
	config := applyDefaults(c)
	if config.GetConfigForClient != nil {
		old := config.GetConfigForClient
		config.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cfg, err := old(hello)
			if err != nil || cfg == nil {
				return cfg, err
			}
			return applyDefaults(cfg), nil
		}
	}
	o.ktls = slices.Clone(o.ktls)
	return &creds{config: config, opts: o}
}

// tls12ForbiddenCipherSuites are the suites of crypto/tls.CipherSuites that
// RFC 7540 appendix A forbids for HTTP/2, the list grpc-go removes
// (credentials/tls.go, tls12ForbiddenCipherSuites).
var tls12ForbiddenCipherSuites = map[uint16]bool{
	tls.TLS_RSA_WITH_AES_128_CBC_SHA:         true,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA:         true,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256:      true,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384:      true,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: true,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: true,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA:   true,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA:   true,
}

// applyDefaults returns a clone of c with grpc-go's defaults
// (credentials/tls.go, applyDefaults).
func applyDefaults(c *tls.Config) *tls.Config {
	var config *tls.Config
	if c == nil {
		config = &tls.Config{}
	} else {
		config = c.Clone()
	}
	if !slices.Contains(config.NextProtos, "h2") {
		// A new slice: the caller's NextProtos may share its array.
		config.NextProtos = append(slices.Clip(config.NextProtos), "h2")
	}
	// RFC 7540 section 9.2: HTTP/2 over TLS needs TLS 1.2 or later. A
	// MaxVersion below 1.2 is the user's explicit choice, left alone.
	if config.MinVersion == 0 && (config.MaxVersion == 0 || config.MaxVersion >= tls.VersionTLS12) {
		config.MinVersion = tls.VersionTLS12
	}
	if config.CipherSuites == nil {
		for _, cs := range tls.CipherSuites() {
			if !tls12ForbiddenCipherSuites[cs.ID] {
				config.CipherSuites = append(config.CipherSuites, cs.ID)
			}
		}
	}
	return config
}

// Info returns grpc-go's ProtocolInfo for TLS (credentials/tls.go,
// tlsCreds.Info): the protocol "tls", the version "1.2" as grpc-go reports it
// whatever is negotiated, and the configured server name, which gRPC uses as
// the channel's default authority.
func (c *creds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{
		SecurityProtocol: "tls",
		SecurityVersion:  "1.2",
		ServerName:       c.config.ServerName,
	}
}

// ClientHandshake runs the client's handshake on rawConn with ktls, bounded
// by ctx, as grpc-go's tlsCreds.ClientHandshake (credentials/tls.go).
func (c *creds) ClientHandshake(ctx context.Context, authority string, rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// A clone per connection, so that connections to several endpoints do
	// not overwrite each other's ServerName.
	cfg := c.config.Clone()
	// grpc-go verifies the name of the authority, which gRPC derives from
	// Info().ServerName when OverrideServerName set one, else from the
	// target, without its port.
	serverName, _, err := net.SplitHostPort(authority)
	if err != nil {
		serverName = authority
	}
	cfg.ServerName = serverName

	conn := ktls.Client(rawConn, cfg, c.opts.ktls...)
	// HandshakeContext closes the conn when ctx ends first; grpc-go then
	// returns ctx.Err(), and so does this.
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, err
	}
	// The client offered only what NextProtos holds, h2 among them, and
	// crypto/tls refuses a server's choice outside it; an empty result means
	// a server without ALPN, which HTTP/2 over TLS requires (RFC 7540
	// section 3.3).
	if conn.ConnectionState().NegotiatedProtocol == "" {
		if enforceALPN {
			conn.Close()
			return nil, nil, fmt.Errorf("credentials: cannot check peer: missing selected ALPN property. %s", alpnFailureHelpMessage)
		}
		logger.Warningf("Allowing TLS connection to server %q with ALPN disabled. TLS connections to servers with ALPN disabled will be disallowed in future grpc-go releases", cfg.ServerName)
	}
	return c.done(rawConn, conn)
}

// ServerHandshake runs the server's handshake on rawConn with ktls, as
// grpc-go's tlsCreds.ServerHandshake (credentials/tls.go). gRPC passes no
// context here; it bounds the handshake with a deadline on rawConn
// (grpc.ConnectionTimeout).
func (c *creds) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn := ktls.Server(rawConn, c.config, c.opts.ktls...)
	if err := conn.Handshake(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	// A client without ALPN: crypto/tls accepts it and negotiates nothing;
	// HTTP/2 over TLS requires ALPN, and grpc-go refuses it.
	if conn.ConnectionState().NegotiatedProtocol == "" {
		if enforceALPN {
			conn.Close()
			return nil, nil, fmt.Errorf("credentials: cannot check peer: missing selected ALPN property. %s", alpnFailureHelpMessage)
		}
		if logger.V(2) {
			logger.Info("Allowing TLS connection from client with ALPN disabled. TLS connections with ALPN disabled will be disallowed in future grpc-go releases")
		}
	}
	return c.done(rawConn, conn)
}

// done builds the AuthInfo of a connection whose handshake succeeded, hands
// the conn to OnHandshake's function, and wraps it for channelz.
func (c *creds) done(rawConn net.Conn, conn *ktls.Conn) (net.Conn, credentials.AuthInfo, error) {
	state := conn.ConnectionState()
	info := credentials.TLSInfo{
		State:          state,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}
	if len(state.PeerCertificates) > 0 {
		info.SPIFFEID = spiffeIDFromCert(state.PeerCertificates[0])
	}
	if c.opts.onHandshake != nil {
		c.opts.onHandshake(conn)
	}
	return wrapSyscallConn(rawConn, conn), info, nil
}

// Clone returns credentials with a clone of the configuration and the same
// options, as grpc-go's tlsCreds.Clone (which calls NewTLS on its
// configuration).
func (c *creds) Clone() credentials.TransportCredentials {
	return newCreds(c.config, c.opts)
}

// OverrideServerName sets the configuration's ServerName, as grpc-go's
// tlsCreds.OverrideServerName: Info().ServerName then returns it, and gRPC
// uses it as the authority the client verifies. Like grpc-go's, it changes
// these credentials in place; grpc-go deprecates it in favour of
// grpc.WithAuthority.
func (c *creds) OverrideServerName(serverNameOverride string) error {
	c.config.ServerName = serverNameOverride
	return nil
}

// syscallConn is the conn gRPC gets: reads and writes go through the
// *ktls.Conn, and SyscallConn reaches the raw socket, as grpc-go's
// internal/credentials/syscallconn.go (WrapSyscallConn) does for crypto/tls:
// channelz reads the socket's options through it.
type syscallConn struct {
	net.Conn
	sys syscall.Conn
}

func (c *syscallConn) SyscallConn() (syscall.RawConn, error) { return c.sys.SyscallConn() }

// wrapSyscallConn returns conn with rawConn's SyscallConn, or conn itself if
// rawConn has none, as grpc-go's WrapSyscallConn.
func wrapSyscallConn(rawConn net.Conn, conn *ktls.Conn) net.Conn {
	sys, ok := rawConn.(syscall.Conn)
	if !ok {
		return conn
	}
	return &syscallConn{Conn: conn, sys: sys}
}

// NewClientTLSFromCert returns client credentials that verify servers with
// the roots in cp, as credentials.NewClientTLSFromCert. A non-empty
// serverNameOverride replaces the name verified and sent (for tests; prefer
// grpc.WithAuthority).
func NewClientTLSFromCert(cp *x509.CertPool, serverNameOverride string, opts ...Option) credentials.TransportCredentials {
	return NewTLS(&tls.Config{ServerName: serverNameOverride, RootCAs: cp}, opts...)
}

// NewClientTLSFromFile is NewClientTLSFromCert with the roots read from a PEM
// file, as credentials.NewClientTLSFromFile.
func NewClientTLSFromFile(certFile, serverNameOverride string, opts ...Option) (credentials.TransportCredentials, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	cp := x509.NewCertPool()
	if !cp.AppendCertsFromPEM(b) {
		// grpc-go's message (credentials/tls.go, NewClientTLSFromFile).
		return nil, fmt.Errorf("credentials: failed to append certificates")
	}
	return NewClientTLSFromCert(cp, serverNameOverride, opts...), nil
}

// NewServerTLSFromCert returns server credentials that present cert, as
// credentials.NewServerTLSFromCert.
func NewServerTLSFromCert(cert *tls.Certificate, opts ...Option) credentials.TransportCredentials {
	return NewTLS(&tls.Config{Certificates: []tls.Certificate{*cert}}, opts...)
}

// NewServerTLSFromFile returns server credentials that present the PEM
// certificate and key in the files, as credentials.NewServerTLSFromFile.
func NewServerTLSFromFile(certFile, keyFile string, opts ...Option) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return NewServerTLSFromCert(&cert, opts...), nil
}
