package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ktls-go/ktls/proxy"
)

// proxyFile is the configuration file of `ktls proxy -config FILE`: JSON,
// whose keys are the flags' names, with durations as Go writes them ("10s",
// "5m"). Unknown keys are errors.
type proxyFile struct {
	HandshakeTimeout duration       `json:"handshake-timeout"`
	IdleTimeout      duration       `json:"idle-timeout"`
	MaxConns         int            `json:"max-conns"`
	Grace            duration       `json:"grace"`
	Listeners        []fileListener `json:"listeners"`
}

// fileListener is one listener of the file; its keys are the flags' names.
type fileListener struct {
	Mode          string `json:"mode"` // "server" (default) or "client"
	Listen        string `json:"listen"`
	Backend       string `json:"backend"` // server mode: default backend
	Cert          string `json:"cert"`
	Key           string `json:"key"`
	ClientCA      string `json:"client-ca"`
	ProxyProtocol bool   `json:"proxy-protocol"`
	// Routes pick a backend, and optionally a certificate, by the
	// client's server name (SNI), in server mode.
	Routes  []fileRoute `json:"routes"`
	Connect string      `json:"connect"` // client mode: the remote server
	CA      string      `json:"ca"`
	SNI     string      `json:"sni"`
}

type fileRoute struct {
	SNI     string `json:"sni"`
	Backend string `json:"backend"`
	Cert    string `json:"cert"`
	Key     string `json:"key"`
}

// duration is a time.Duration that JSON spells as time.ParseDuration does.
type duration struct {
	time.Duration
	set bool
}

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"10s\": %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration, d.set = v, true
	return nil
}

// parseProxyFile reads the configuration file.
func parseProxyFile(b []byte) (*proxyFile, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f proxyFile
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	if len(f.Listeners) == 0 {
		return nil, errors.New("no listeners")
	}
	for i, l := range f.Listeners {
		if err := l.check(); err != nil {
			return nil, fmt.Errorf("listeners[%d]: %w", i, err)
		}
	}
	return &f, nil
}

// check says what a listener lacks, or has that its mode does not take.
func (l *fileListener) check() error {
	if l.Listen == "" {
		return errors.New("no listen address")
	}
	switch l.Mode {
	case "", "server":
		if l.Backend == "" && len(l.Routes) == 0 {
			return errors.New("server mode needs a backend or routes")
		}
		if (l.Cert == "") != (l.Key == "") {
			return errors.New("cert and key go together")
		}
		if l.Cert == "" && !slices.ContainsFunc(l.Routes, func(r fileRoute) bool { return r.Cert != "" }) {
			return errors.New("server mode needs cert and key")
		}
		if l.Connect != "" || l.CA != "" || l.SNI != "" {
			return errors.New("connect, ca and sni are for client mode")
		}
		for _, r := range l.Routes {
			if r.SNI == "" || (r.Backend == "" && l.Backend == "") {
				return errors.New("a route needs sni, and a backend unless the listener has one")
			}
			if (r.Cert == "") != (r.Key == "") {
				return fmt.Errorf("route %s: cert and key go together", r.SNI)
			}
		}
	case "client":
		if l.Connect == "" {
			return errors.New("client mode needs connect")
		}
		if l.Backend != "" || l.Cert != "" || l.Key != "" || l.ClientCA != "" || l.ProxyProtocol || len(l.Routes) != 0 {
			return errors.New("backend, cert, key, client-ca, proxy-protocol and routes are for server mode")
		}
	default:
		return fmt.Errorf("mode %q: server or client", l.Mode)
	}
	return nil
}

// built is a listener ready to serve, and the certificates SIGHUP reloads.
type built struct {
	addr string
	l    *proxy.Listener
	keys []*proxy.KeyPair
}

// build loads the files a listener names.
func (l *fileListener) build() (*built, error) {
	if l.Mode == "client" {
		cfg := &tls.Config{ServerName: l.SNI}
		if l.CA != "" {
			pool, err := proxy.LoadCertPool(l.CA)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = pool
		}
		return &built{addr: l.Listen, l: &proxy.Listener{Mode: proxy.ClientMode, TLSConfig: cfg, Backend: l.Connect}}, nil
	}
	b := &built{addr: l.Listen, l: &proxy.Listener{Backend: l.Backend, ProxyProtocol: l.ProxyProtocol}}
	var def *proxy.KeyPair
	if l.Cert != "" {
		kp, err := proxy.LoadKeyPair(l.Cert, l.Key)
		if err != nil {
			return nil, err
		}
		def = kp
		b.keys = append(b.keys, kp)
	}
	byName := map[string]*proxy.KeyPair{}
	for _, r := range l.Routes {
		name := strings.TrimSuffix(strings.ToLower(r.SNI), ".")
		if r.Backend != "" {
			if b.l.Backends == nil {
				b.l.Backends = map[string]string{}
			}
			b.l.Backends[name] = r.Backend
		}
		if r.Cert != "" {
			kp, err := proxy.LoadKeyPair(r.Cert, r.Key)
			if err != nil {
				return nil, err
			}
			byName[name] = kp
			b.keys = append(b.keys, kp)
		}
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The certificate of the client's server name, else the
		// listener's; each is read again on SIGHUP (KeyPair.Reload).
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if kp, ok := byName[strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")]; ok {
				return kp.Certificate(), nil
			}
			if def == nil {
				return nil, fmt.Errorf("no certificate for server name %q", hello.ServerName)
			}
			return def.Certificate(), nil
		},
	}
	if l.ClientCA != "" {
		pool, err := proxy.LoadCertPool(l.ClientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	b.l.TLSConfig = cfg
	return b, nil
}

// proxySettings is what the command line, or the file it names, asks for.
type proxySettings struct {
	handshakeTimeout, idleTimeout, grace time.Duration
	maxConns                             int
	listeners                            []fileListener
}

// parseProxyArgs reads the command line, and the file of -config.
func parseProxyArgs(args []string, stderr io.Writer) (st *proxySettings, code int, ok bool) {
	fs := newFlags("proxy", stderr)
	var l fileListener
	config := fs.String("config", "", "a JSON file of several listeners (see the usage above); the listener flags are then not allowed")
	fs.StringVar(&l.Mode, "mode", "server", "server: accept TLS, connect to a plain backend; client: accept plain TCP, connect with TLS")
	fs.StringVar(&l.Listen, "listen", "", "the address to listen on, host:port or unix:/path")
	fs.StringVar(&l.Backend, "backend", "", "server mode: the plain backend, host:port or unix:/path")
	fs.StringVar(&l.Cert, "cert", "", "server mode: the certificate chain, PEM (read again on SIGHUP)")
	fs.StringVar(&l.Key, "key", "", "server mode: the private key, PEM (read again on SIGHUP)")
	fs.StringVar(&l.ClientCA, "client-ca", "", "server mode: require client certificates signed by these CAs, PEM")
	fs.BoolVar(&l.ProxyProtocol, "proxy-protocol", false, "server mode: send a PROXY protocol v2 header to the backend")
	fs.StringVar(&l.Connect, "connect", "", "client mode: the remote TLS server, host:port")
	fs.StringVar(&l.CA, "ca", "", "client mode: verify the server against these CAs, PEM (default: the system's)")
	fs.StringVar(&l.SNI, "sni", "", "client mode: the server name to send and verify (default: the host of -connect)")
	st = &proxySettings{}
	fs.DurationVar(&st.handshakeTimeout, "handshake-timeout", 10*time.Second, "bound on the TLS handshake and the backend's dial (0: none)")
	fs.DurationVar(&st.idleTimeout, "idle-timeout", 5*time.Minute, "close a connection with no byte either way for this long (0: never)")
	fs.IntVar(&st.maxConns, "max-conns", 0, "connections open at once; more are accepted and closed at once (0: no limit)")
	fs.DurationVar(&st.grace, "grace", 30*time.Second, "on SIGTERM or SIGINT, how long open connections may go on before they are closed")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return nil, code, false
	}
	usageErr := func(format string, a ...any) (*proxySettings, int, bool) {
		fmt.Fprintf(stderr, "ktls proxy: "+format+"\n", a...)
		fs.Usage()
		return nil, 2, false
	}
	if *config == "" {
		if l.Mode == "server" {
			l.Mode = ""
		}
		if err := l.check(); err != nil {
			return usageErr("%v", err)
		}
		st.listeners = []fileListener{l}
		return st, 0, true
	}
	listenerFlag := ""
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "config", "handshake-timeout", "idle-timeout", "max-conns", "grace":
		default:
			listenerFlag = f.Name
		}
	})
	if listenerFlag != "" {
		return usageErr("-%s and -config: the file says what each listener does", listenerFlag)
	}
	b, err := os.ReadFile(*config)
	if err != nil {
		fmt.Fprintf(stderr, "ktls proxy: %v\n", err)
		return nil, 1, false
	}
	f, err := parseProxyFile(b)
	if err != nil {
		fmt.Fprintf(stderr, "ktls proxy: %s: %v\n", *config, err)
		return nil, 1, false
	}
	// The file's settings win over the flags' defaults.
	if f.HandshakeTimeout.set {
		st.handshakeTimeout = f.HandshakeTimeout.Duration
	}
	if f.IdleTimeout.set {
		st.idleTimeout = f.IdleTimeout.Duration
	}
	if f.Grace.set {
		st.grace = f.Grace.Duration
	}
	if f.MaxConns != 0 {
		st.maxConns = f.MaxConns
	}
	st.listeners = f.Listeners
	return st, 0, true
}

// proxyCmd is `ktls proxy`: the proxy in the foreground, logging to stderr,
// until SIGTERM or SIGINT (then a graceful stop of up to -grace); SIGHUP
// reads the certificates again.
func proxyCmd(args []string, stderr io.Writer) int {
	st, code, ok := parseProxyArgs(args, stderr)
	if !ok {
		return code
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	var bs []*built
	for _, fl := range st.listeners {
		b, err := fl.build()
		if err != nil {
			log.Error("ktls proxy: " + err.Error())
			return 1
		}
		bs = append(bs, b)
	}
	p := &proxy.Proxy{
		HandshakeTimeout: st.handshakeTimeout,
		IdleTimeout:      st.idleTimeout,
		MaxConns:         st.maxConns,
		Logger:           log,
	}
	// Listen on every address before serving any, so that a wrong one
	// fails the command before it takes a connection.
	lns := make([]net.Listener, len(bs))
	for i, b := range bs {
		ln, err := proxy.Listen(b.addr)
		if err != nil {
			log.Error("ktls proxy: " + err.Error())
			for _, ln := range lns[:i] {
				ln.Close()
			}
			return 1
		}
		lns[i] = ln
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var wg sync.WaitGroup
	serveErr := make(chan error, len(bs))
	for i, b := range bs {
		// A plain line, not slog's quoted one, for scripts that wait
		// for it and take the address from its end.
		fmt.Fprintf(stderr, "ktls proxy: listening on %s\n", lns[i].Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Serve(lns[i], b.l); !errors.Is(err, proxy.ErrServerClosed) {
				serveErr <- err
			}
		}()
	}
	code = 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-serveErr:
			log.Error("ktls proxy: " + err.Error())
			code = 1
			break loop
		case <-hup:
			reloadKeys(bs, log)
		}
	}
	stop()
	log.Info("ktls proxy: stopping", "active", p.Stats().Active, "grace", st.grace.String())
	sctx, cancel := context.WithTimeout(context.Background(), st.grace)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		log.Warn("ktls proxy: grace period over; open connections were closed")
	}
	wg.Wait()
	s := p.Stats()
	attrs := []any{"accepted", s.Accepted, "rejected", s.Rejected,
		"handshake_failures", s.HandshakeFailures, "backend_failures", s.BackendFailures,
		"from_client", s.FromClient, "to_client", s.ToClient}
	for _, name := range slices.Sorted(maps.Keys(s.Engines)) {
		e := s.Engines[name]
		attrs = append(attrs, slog.Group(name, "tx_conns", e.TXConns, "rx_conns", e.RXConns, "sealed", e.Sealed, "opened", e.Opened))
	}
	log.Info("ktls proxy: stopped", attrs...)
	return code
}

// reloadKeys reads every listener's certificates again. A pair that fails
// keeps the one in use; the others are reloaded all the same.
func reloadKeys(bs []*built, log *slog.Logger) {
	n, failed := 0, 0
	for _, b := range bs {
		for _, kp := range b.keys {
			if err := kp.Reload(); err != nil {
				failed++
				log.Error("ktls proxy: SIGHUP: keeping the certificate in use: " + err.Error())
				continue
			}
			n++
		}
	}
	log.Info("ktls proxy: certificates reloaded", "reloaded", n, "failed", failed)
}
