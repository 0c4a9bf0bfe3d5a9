// Package ktlscaddy is a Caddy listener wrapper that serves a Caddy HTTP
// server's TLS connections through ktls, with the TLS configuration that
// Caddy's own connection policies produce (automatic certificates, client
// authentication, protocol and cipher choices unchanged).
//
// It is opt-in through Caddy's configuration only: a Caddy built with this
// package serves exactly as before until a server names the wrapper, first
// (the http app then puts its tls placeholder before it) or right after the
// tls placeholder:
//
//	{
//		servers {
//			listener_wrappers {
//				ktls
//			}
//		}
//	}
//
// or in JSON, in a server of the http app:
//
//	"listener_wrappers": [{"wrapper": "ktls"}]
//
// With wrappers that must see the TCP conn first, such as proxy_protocol:
// listener_wrappers { proxy_protocol; tls; ktls }.
//
// How it works. Caddy's http app wraps each listener up to its tls
// placeholder, then with crypto/tls's tls.NewListener and the config of the
// server's connection policies, then with the wrappers after the placeholder
// (modules/caddyhttp/app.go, (*App).Start). This wrapper comes right after:
// each conn it accepts is a *tls.Conn whose handshake has not started, since
// crypto/tls reads nothing before the first Read, Write or Handshake. It
// takes that conn's NetConn, the TCP conn under it, and runs ktls's server
// handshake there (ktls.Server) with a config built by the same call Caddy
// makes, the server's TLSConnPolicies.TLSConfig; the *tls.Conn is dropped
// unused. The server is the one Caddy names in the provisioning context
// (caddyhttp.ServerCtxKey), which the http app sets for each server while it
// loads that server's listener wrappers (modules/caddyhttp/app.go,
// (*App).Provision).
//
// What net/http makes of it. Caddy hands net/http any conn that is not a
// *tls.Conn inside its tlsStateConn, which hides ConnectionState from
// net/http (modules/caddyhttp/http2listener.go, (*http2Listener).Accept),
// on Go 1.26 and on Go 1.27 alike. So net/http treats the conn as
// unencrypted, serves HTTP/1.1 on it and HTTP/2 through its unencrypted
// HTTP/2 path (Caddy enables it whenever h2 is on), and Caddy fills
// Request.TLS from the conn's ConnectionState in (*Server).ServeHTTP
// (modules/caddyhttp/server.go). Request.TLS, the tls placeholders and the
// access log's tls fields are therefore complete, and ALPN "h2" gets
// HTTP/2. The same tlsStateConn hides io.ReaderFrom too, so net/http's
// (*response).ReadFrom never reaches the ktls conn: file responses are
// sealed by the connection's engine (the kernel's, with kTLS) but written
// through Write, not sendfile(2). The repository's README (section Caddy)
// says what hook in Caddy would change that.
//
// Each connection's engines are logged at debug level through Caddy's
// logger (logger "caddy.listeners.ktls", message "ktls handshake": tx, rx,
// reason), and when it closes ("ktls close": how many ReadFrom calls
// reached it).
package ktlscaddy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/selector"
)

func init() {
	caddy.RegisterModule(Wrapper{})
}

// Wrapper is the listener wrapper caddy.listeners.ktls.
type Wrapper struct {
	// Backend is a ktls engine spec, as ktls.WithBackend takes it: "auto"
	// (the default), "userspace", "kernel", "tx=kernel,rx=userspace", ...
	// The KTLS_BACKEND environment variable wins over it, as everywhere in
	// ktls.
	Backend string `json:"backend,omitempty"`
	// Strict fails the handshake when a forced engine cannot serve, rather
	// than falling back (ktls.WithStrict).
	Strict bool `json:"strict,omitempty"`

	ctx    caddy.Context
	srv    *caddyhttp.Server
	logger *zap.Logger
	opts   []ktls.Option
}

// CaddyModule returns the Caddy module information.
func (Wrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.ktls",
		New: func() caddy.Module { return new(Wrapper) },
	}
}

// errNotHTTP is Provision's answer outside an HTTP server's listener_wrappers.
var errNotHTTP = errors.New("ktlscaddy: the ktls listener wrapper belongs in the listener_wrappers of a server of the http app")

// Provision finds the HTTP server whose listener wrapper this is, checks its
// place among that server's wrappers and the engine options.
func (w *Wrapper) Provision(ctx caddy.Context) error {
	// The http app puts each server in the context while it loads that
	// server's listener wrappers (modules/caddyhttp/app.go, (*App).Provision).
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil {
		return errNotHTTP
	}
	if err := checkPlace(srv.ListenerWrappersRaw); err != nil {
		return err
	}
	if w.Backend != "" {
		w.opts = append(w.opts, ktls.WithBackend(w.Backend))
	}
	if w.Strict {
		w.opts = append(w.opts, ktls.WithStrict())
	}
	// A malformed spec (or KTLS_BACKEND) is an error now rather than at
	// every handshake. Candidates parses them as a connection does; a
	// *StrictError is about one suite on this host, not the configuration.
	_, err := ktls.Candidates(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, selector.TX, w.opts...)
	if err != nil {
		var strict *ktls.StrictError
		if !errors.As(err, &strict) {
			return fmt.Errorf("ktlscaddy: %w", err)
		}
	}
	w.ctx = ctx
	w.srv = srv
	w.logger = ctx.Logger()
	return nil
}

// checkPlace refuses a configuration where the wrapper would not get the
// *tls.Conn straight from crypto/tls's listener: it must be right after the
// tls placeholder, or first with no placeholder (the http app then puts the
// placeholder before it, modules/caddyhttp/app.go, (*App).Provision). A wrapper in between could read from the TLS conn, and so run its
// handshake, before ktls takes the TCP conn under it. raw is the server's
// ListenerWrappersRaw, which the http app still holds while it loads the
// wrappers (caddy.Context.LoadModule clears it afterwards); nil, it decides
// nothing, and Accept's checks still hold.
func checkPlace(raw []json.RawMessage) error {
	var names []string
	for _, r := range raw {
		var m struct {
			Wrapper string `json:"wrapper"`
		}
		if err := json.Unmarshal(r, &m); err != nil {
			return fmt.Errorf("ktlscaddy: reading listener_wrappers: %w", err)
		}
		names = append(names, m.Wrapper)
	}
	at := -1
	for i, n := range names {
		if n != "ktls" {
			continue
		}
		if at >= 0 {
			return errors.New("ktlscaddy: the ktls listener wrapper may appear once per server")
		}
		at = i
	}
	switch {
	case at < 0:
		return nil
	case at == 0 && slices.Contains(names, "tls"):
		return errors.New("ktlscaddy: the ktls listener wrapper must come right after the tls one, not before it: it takes the TLS connections crypto/tls's listener makes")
	case at > 0 && names[at-1] != "tls":
		return fmt.Errorf("ktlscaddy: the ktls listener wrapper must come right after the tls one (listener_wrappers { ...; tls; ktls }), or first, not after %q: it must take the TLS connection before anything reads from it", names[at-1])
	}
	return nil
}

// WrapListener wraps a listener of the server. Caddy calls it in
// (*App).Start, after it built the server's TLS config from the same
// connection policies.
func (w *Wrapper) WrapListener(ln net.Listener) net.Listener {
	if len(w.srv.TLSConnPolicies) == 0 {
		// No TLS on this server: tls.NewListener was not applied either
		// (modules/caddyhttp/app.go, useTLS).
		return ln
	}
	// The same call as Caddy's own for this server: a config whose
	// GetConfigForClient picks the first matching connection policy's
	// pre-built config, plus ECH keys when the tls app has them. Session
	// ticket keys live in those per-policy configs, so both configs share
	// them.
	cfg := w.srv.TLSConnPolicies.TLSConfig(w.ctx)
	return &listener{Listener: ln, w: w, config: cfg}
}

// UnmarshalCaddyfile sets up the wrapper from Caddyfile tokens:
//
//	ktls {
//		backend <spec>
//		strict
//	}
func (w *Wrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the wrapper's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "backend":
			if !d.NextArg() {
				return d.ArgErr()
			}
			w.Backend = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "strict":
			if d.NextArg() {
				return d.ArgErr()
			}
			w.Strict = true
		default:
			return d.Errf("unrecognized ktls option %q", d.Val())
		}
	}
	return nil
}

// listener is the wrapped listener of one server address.
type listener struct {
	net.Listener
	w      *Wrapper
	config *tls.Config
}

// Accept takes each *tls.Conn that crypto/tls's listener made before its
// handshake and gives ktls the conn under it. Anything else passes through
// untouched: a conn that is not a *tls.Conn (the server's plain HTTP port,
// where Caddy applies no TLS), or one whose handshake already ran.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c, nil
	}
	if tc.ConnectionState().HandshakeComplete {
		// Only a wrapper between tls and ktls could have got here, and
		// checkPlace refuses that; the conn's records are crypto/tls's now.
		l.w.logger.Warn("TLS connection already handshaken; left to crypto/tls",
			zap.String("remote", c.RemoteAddr().String()))
		return c, nil
	}
	// The handshake runs on the first Read, Write or Handshake, under the
	// deadlines net/http sets, as crypto/tls's would: never here, where a
	// slow client would hold up the accept loop.
	return &conn{Conn: ktls.Server(tc.NetConn(), l.config, l.w.opts...), logger: l.w.logger}, nil
}

// conn is a ktls connection that logs its engines once its handshake is
// over and, when it closes, how many io.ReaderFrom calls reached it (the
// calls that can become sendfile(2) on the kernel engine). Everything else
// is *ktls.Conn's: ConnectionState, NetConn, Backend, CloseWrite, WriteTo.
type conn struct {
	*ktls.Conn
	logger *zap.Logger

	logged    sync.Once
	closed    sync.Once
	readFroms atomic.Int64
}

// HandshakeContext runs the handshake if it has not run yet.
func (c *conn) HandshakeContext(ctx context.Context) error {
	err := c.Conn.HandshakeContext(ctx)
	c.logged.Do(func() { c.logHandshake(err) })
	return err
}

// Handshake runs the handshake if it has not run yet.
func (c *conn) Handshake() error { return c.HandshakeContext(context.Background()) }

// Read reads application data, after the handshake.
func (c *conn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// Write writes application data, after the handshake.
func (c *conn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// ReadFrom is *ktls.Conn's (sendfile on the kernel engine), counted.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	c.readFroms.Add(1)
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.Conn.ReadFrom(r)
}

// Close closes the connection and logs it once.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() {
		if ce := c.logger.Check(zapcore.DebugLevel, "ktls close"); ce != nil {
			ce.Write(zap.String("remote", c.RemoteAddr().String()),
				zap.Int64("read_from_calls", c.readFroms.Load()))
		}
	})
	return err
}

func (c *conn) logHandshake(err error) {
	if err != nil {
		if ce := c.logger.Check(zapcore.DebugLevel, "ktls handshake failed"); ce != nil {
			ce.Write(zap.String("remote", c.RemoteAddr().String()), zap.Error(err))
		}
		return
	}
	ce := c.logger.Check(zapcore.DebugLevel, "ktls handshake")
	if ce == nil {
		return
	}
	info := c.Backend()
	st := c.ConnectionState()
	ce.Write(zap.String("remote", c.RemoteAddr().String()),
		zap.String("tx", info.TX),
		zap.String("rx", info.RX),
		zap.String("reason", info.Reason),
		zap.String("version", tls.VersionName(st.Version)),
		zap.String("cipher_suite", tls.CipherSuiteName(st.CipherSuite)),
		zap.String("alpn", st.NegotiatedProtocol),
		zap.String("server_name", st.ServerName))
}

// Interface guards.
var (
	_ caddy.Provisioner     = (*Wrapper)(nil)
	_ caddy.ListenerWrapper = (*Wrapper)(nil)
	_ caddyfile.Unmarshaler = (*Wrapper)(nil)
	_ net.Conn              = (*conn)(nil)
	_ io.ReaderFrom         = (*conn)(nil)
)
