package handshake

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/netlink"
)

// errno is the DONE status for s (Documentation/networking/tls-handshake.rst,
// "Handshake Completion").
func (s Status) errno() uint32 {
	switch s {
	case StatusOK:
		return 0
	case StatusRejected:
		return uint32(unix.EACCES)
	case StatusNoKey:
		return uint32(unix.ENOKEY)
	case StatusInvalid:
		return uint32(unix.EINVAL)
	case StatusTimedOut:
		return uint32(unix.ETIMEDOUT)
	}
	return uint32(unix.EIO)
}

// agent holds one Serve's netlink socket for requests (ACCEPT, DONE).
type agent struct {
	cfg    *Config
	family uint16
	// done is what DONE's policy accepts; nil where the kernel did not
	// say (CTRL_CMD_GETPOLICY per operation needs Linux 5.12).
	done attrSet

	// keys runs ACCEPT and every keyring call (keyThread).
	keys *keyThread

	// mu serializes requests on ctl, which runs one at a time.
	mu  sync.Mutex
	ctl *netlink.Conn
}

// Serve is a handshake agent for the kernel's TLS consumers (the NFS
// client and server, NVMe-TCP) until ctx ends: it resolves the handshake
// generic netlink family, joins its "tlshd" multicast group, and on each
// READY takes every waiting request with ACCEPT and serves it in its own
// goroutine, under the request's timeout. Each handshake runs in crypto/tls
// through ktls with both directions in the kernel (kTLS), on the socket
// the kernel lent, and ends with DONE, on every path; then the socket is
// the consumer's again, untouched beyond the handshake and the keys.
//
// PSK requests (NVMe-TCP's default) end with ENOKEY: crypto/tls has no
// external pre-shared keys (Go issue 6379).
//
// Serve fails at once where the kernel has no handshake family (before
// Linux 6.4, or without CONFIG_NET_HANDSHAKE) or the process may not use it
// (ACCEPT needs CAP_NET_ADMIN). When ctx ends it stops taking requests,
// lets those in flight finish within their own timeouts, and returns nil.
func Serve(ctx context.Context, cfg *Config) error {
	if cfg == nil {
		cfg = &Config{}
	}
	ctl, err := netlink.Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	defer ctl.Close()
	fam, err := ctl.GenlFamilyInfo(FamilyName)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%w: CTRL_CMD_GETFAMILY answered ENOENT", ErrNoFamily)
		}
		return fmt.Errorf("handshake: %w", err)
	}
	grp, ok := fam.Groups[GroupName]
	if !ok {
		return fmt.Errorf("handshake: the %q family has no %q multicast group", FamilyName, GroupName)
	}
	lis, err := netlink.Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	defer lis.Close()
	if err := lis.JoinGroup(grp); err != nil {
		return fmt.Errorf("handshake: joining the %q group: %w", GroupName, err)
	}
	a := &agent{cfg: cfg, family: fam.ID, ctl: ctl, keys: newKeyThread()}
	defer a.keys.stop()
	log := cfg.logger()
	for _, name := range cfg.Keyrings {
		if serial, err := linkKeyring(a.keys, name); err != nil {
			log.Debug("handshake: keyring not linked", "keyring", name, "error", err)
		} else {
			log.Info("handshake: keyring linked into the session keyring", "keyring", name, "serial", serial)
		}
	}
	if done, err := ctl.GenlOpPolicy(fam.ID, cmdDone); err != nil {
		log.Debug("handshake: DONE's policy unknown; sending the attributes every kernel has", "error", err)
	} else {
		a.done = done
		if !a.done.has(attrDoneSockfd) {
			return fmt.Errorf("handshake: the kernel's DONE takes no socket (attributes %v)", done)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// Requests queued before the group was joined got their READY already;
	// and this first ACCEPT says whether this process may take any.
	if err := a.acceptAll(ctx, &wg); err != nil {
		return err
	}
	log.Info("handshake agent ready", "family", FamilyName, "family_version", fam.Version, "group", GroupName, "done_attributes", a.done)
	for {
		msgs, err := lis.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, unix.ENOBUFS) {
			// Notifications were lost; the queue is what counts.
			log.Warn("handshake: READY notifications lost (ENOBUFS); accepting what is queued")
		} else if err != nil {
			return fmt.Errorf("handshake: waiting for READY: %w", err)
		} else if !anyReady(msgs, fam.ID) {
			continue
		}
		if err := a.acceptAll(ctx, &wg); err != nil {
			return err
		}
	}
}

func anyReady(msgs []netlink.Msg, family uint16) bool {
	for _, m := range msgs {
		if m.Type == family && isReady(m.Data) {
			return true
		}
	}
	return false
}

// acceptAll takes requests until the kernel has none (EAGAIN,
// net/handshake/netlink.c, handshake_nl_accept_doit). Only a failure of
// the netlink socket itself ends Serve; a request that fails is answered.
func (a *agent) acceptAll(ctx context.Context, wg *sync.WaitGroup) error {
	for ctx.Err() == nil {
		var (
			msgs []netlink.Msg
			err  error
		)
		// On the keyring thread: ACCEPT links the request's keyring into
		// the accepting thread's process keyring (keythread_linux.go).
		a.keys.do(func() {
			a.mu.Lock()
			msgs, err = a.ctl.Execute(a.family, 0, acceptRequest())
			a.mu.Unlock()
		})
		switch {
		case errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.EPERM):
			return fmt.Errorf("handshake: ACCEPT needs CAP_NET_ADMIN: %w", err)
		case err != nil:
			// ENOMEM, EMFILE (no fd for the socket): that request is
			// completed with EIO by the kernel; try the next READY.
			a.cfg.logger().Warn("handshake: ACCEPT failed", "error", err)
			return nil
		case len(msgs) == 0:
			return nil
		}
		req, err := parseAccept(msgs[0].Data)
		if req == nil {
			a.cfg.logger().Error("handshake: ACCEPT reply unreadable", "error", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serve(ctx, req, err)
		}()
	}
	return nil
}

// serve answers one request: the handshake (unless parsing it failed
// already), DONE, the log line, and then the descriptor ACCEPT installed
// is closed.
func (a *agent) serve(ctx context.Context, req *Request, parseErr error) {
	f := os.NewFile(uintptr(req.Sockfd), "handshake")
	defer f.Close()
	var (
		res     Result
		release func()
	)
	if parseErr != nil {
		res = Result{Role: req.Type, Auth: req.Auth, Status: StatusInvalid, Err: parseErr}
	} else {
		// Stopping the agent does not cut a handshake short: the
		// request's own timeout bounds it.
		res, release = handshakeOn(context.WithoutCancel(ctx), a.cfg, a.keys, f, req)
		defer release()
	}
	a.mu.Lock()
	_, err := a.ctl.Execute(a.family, netlink.FAck, doneRequest(res.Status.errno(), req.Sockfd, res.RemoteAuth, a.done))
	a.mu.Unlock()
	if err != nil && res.Err == nil {
		res.Err = fmt.Errorf("handshake: DONE: %w", err)
	}
	level := slog.LevelInfo
	if res.Status != StatusOK {
		level = slog.LevelWarn
	}
	a.cfg.logger().LogAttrs(ctx, level, "handshake", res.LogAttrs()...)
}

// handshakeOn runs the request's handshake on the kernel's socket, which f
// holds, and returns its outcome. release closes the descriptor the
// handshake ran on (a dup of f's), to be called after DONE: until then
// nothing reads or writes on it. The socket's options are as the consumer
// left them when handshakeOn returns.
func handshakeOn(ctx context.Context, cfg *Config, keys *keyThread, f *os.File, req *Request) (res Result, release func()) {
	start := time.Now()
	res = Result{Role: req.Type, Auth: req.Auth}
	release = func() {}
	defer func() {
		res.Status = StatusOf(res.Err)
		res.Duration = time.Since(start)
	}()
	if req.Type != ClientHello && req.Type != ServerHello {
		res.Err = withStatus(StatusInvalid, fmt.Errorf("handshake: unknown %v", req.Type))
		return res, release
	}
	switch req.Auth {
	case AuthPSK:
		res.Err = withStatus(StatusNoKey, errors.New("handshake: a PSK handshake was requested, and crypto/tls has no external pre-shared keys (Go issue 6379); ktls-utils' tlshd serves PSK"))
		return res, release
	case AuthUnauth, AuthX509:
	default:
		res.Err = withStatus(StatusInvalid, fmt.Errorf("handshake: unknown %v", req.Auth))
		return res, release
	}
	cr, err := cfg.credentials(req.Type)
	if err != nil {
		res.Err = err
		return res, release
	}
	var (
		linkErr error
		cert    *tls.Certificate
	)
	keys.do(func() {
		linkErr = linkRequestKeyring(req.Keyring)
		cert, err = certificate(req, cr)
	})
	if linkErr != nil {
		// The keys may be within reach anyway (the kernel links the
		// keyring into this process's keyring before it answers ACCEPT,
		// net/handshake/tlshd.c, tls_handshake_private_keyring); a key
		// that is not ends in ENOKEY below.
		cfg.logger().Debug(linkErr.Error())
	}
	if err != nil {
		res.Err = err
		return res, release
	}

	saved, err := saveSockState(req.Sockfd)
	if err != nil {
		res.Err = withStatus(StatusFault, err)
		return res, release
	}
	defer func() {
		if err := saved.restore(req.Sockfd); err != nil && res.Err == nil {
			res.Err = withStatus(StatusFault, err)
		}
	}()
	nc, err := net.FileConn(f)
	if err != nil {
		res.Err = withStatus(StatusFault, fmt.Errorf("handshake: %w", err))
		return res, release
	}
	release = func() { nc.Close() }
	res.Peer = nc.RemoteAddr().String()
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		res.Err = withStatus(StatusInvalid, fmt.Errorf("handshake: the socket is a %T, not TCP", nc))
		return res, release
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout(req))
	defer cancel()
	if d, ok := ctx.Deadline(); ok {
		tc.SetDeadline(d)
	}

	serverName := ""
	if req.Type == ClientHello {
		serverName = peerName(ctx, req, tc)
	}
	tcfg, err := tlsConfig(req, cr, serverName, cert)
	if err != nil {
		res.Err = err
		return res, release
	}
	// Both directions in the kernel, or the handshake fails: the consumer
	// reads and writes the socket itself afterwards.
	opts := []ktls.Option{ktls.WithBackend("kernel"), ktls.WithStrict()}
	var c *ktls.Conn
	if req.Type == ClientHello {
		c = ktls.Client(tc, tcfg, opts...)
	} else {
		c = ktls.Server(tc, tcfg, opts...)
	}
	// Never c.Close: it would send close_notify into the consumer's
	// stream. The dup is closed by release, after DONE.
	if err := c.HandshakeContext(ctx); err != nil {
		res.Err = fmt.Errorf("handshake: %w", err)
		return res, release
	}
	b := c.Backend()
	if !inKernel(b.TX) || !inKernel(b.RX) {
		// KTLS_BACKEND in the environment wins over WithBackend
		// (docs/ARCHITECTURE.md, Forcing an engine).
		res.Err = withStatus(StatusFault, fmt.Errorf("handshake: the session is not in the kernel: %s", b.Reason))
		return res, release
	}
	st := c.ConnectionState()
	res.Version, res.Suite = st.Version, st.CipherSuite
	if len(st.PeerCertificates) != 0 {
		var serial uint32
		keys.do(func() { serial, err = peerKey(st.PeerCertificates[0], res.Peer) })
		if err != nil {
			cfg.logger().Warn("handshake: the peer's certificate verified; no key records it", "peer", res.Peer, "error", err)
		}
		res.RemoteAuth = []uint32{serial}
	}
	return res, release
}

func inKernel(engine string) bool { return engine == "kernel" || engine == "nic" }

// certificate is what this side presents: the key serials the request
// names, else the configuration's first certificate. An x509 client
// without one, or a server, fails with ENOKEY; an anonymous client
// presents none.
func certificate(req *Request, cr *Credentials) (*tls.Certificate, error) {
	if req.Type == ClientHello && req.Auth == AuthUnauth {
		return nil, nil
	}
	if req.Cert != noKey || req.PrivKey != noKey {
		if req.Cert == noKey || req.PrivKey == noKey {
			return nil, withStatus(StatusNoKey, errors.New("handshake: the request names a certificate or a private key, not both"))
		}
		c, err := keyPairFromKeyring(req.Cert, req.PrivKey)
		if err != nil {
			return nil, withStatus(StatusNoKey, err)
		}
		return c, nil
	}
	if len(cr.Certificates) != 0 {
		return &cr.Certificates[0], nil
	}
	if req.Type == ClientHello {
		return nil, withStatus(StatusNoKey, errors.New("handshake: an x509 (mtls) client handshake, and neither the request nor the configuration names a certificate"))
	}
	return nil, nil // tlsConfig says why a server cannot go on
}

// peerName is the name a client verifies the server against: the one the
// consumer gave, else the peer address's name by reverse lookup, else the
// address itself (which matches an IP address in the certificate).
func peerName(ctx context.Context, req *Request, c net.Conn) string {
	if req.Peername != "" {
		return req.Peername
	}
	addr, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if names, err := net.DefaultResolver.LookupAddr(lctx, addr.IP.String()); err == nil && len(names) != 0 {
		return strings.TrimSuffix(names[0], ".")
	}
	return addr.IP.String()
}
