package handshake

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures [Serve].
type Config struct {
	// Client and Server are the credentials for requests in which this
	// host is the TLS client (ClientHello) and the TLS server
	// (ServerHello). nil: none beyond what the request's key serials name,
	// and the system's trust store.
	Client, Server *Credentials
	// GetCredentials, if set, is called for each request instead of
	// reading Client and Server: a program that reloads its configuration
	// (ktls tlshd on SIGHUP) returns the current one.
	GetCredentials func(MsgType) (*Credentials, error)
	// Logger receives one line per handshake (peer, role, auth, version,
	// suite, result, duration) and Serve's own events. nil: slog.Default().
	Logger *slog.Logger
	// DefaultTimeout bounds a handshake whose request carries no timeout.
	// 0: 10 seconds.
	DefaultTimeout time.Duration
	// Keyrings are linked into the agent's session keyring when Serve
	// starts, by name as /proc/keys shows it or by decimal serial, as
	// tlshd links .nvme, .nfs, .nfsd and its configuration's keyrings:
	// the consumers' keys are then within reach (keyrings(7),
	// possession). A keyring that does not exist is logged and skipped.
	// They are linked on the thread that serves every request: keyrings
	// hang off a thread's credentials.
	Keyrings []string
}

// Credentials are one role's trust and identity, as tlshd's
// [authenticate.client] and [authenticate.server] sections give them.
type Credentials struct {
	// RootCAs verifies the peer's certificate chain; nil: the system's
	// trust store.
	RootCAs *x509.CertPool
	// Certificates are presented when the request names no key serials
	// (the first one is used).
	Certificates []tls.Certificate
	// CRLs are revocation lists checked against the peer's chain: a
	// certificate listed by the list of its issuer is refused.
	CRLs []*x509.RevocationList
	// RequireClientCert makes a server refuse a client without a valid
	// certificate. Without it a server asks for one and verifies it if
	// given, as tlshd does; the consumer learns which from DONE's
	// remote-auth (nfsd's mtls exports need one).
	RequireClientCert bool
}

// Result is the outcome of one request, as Serve logs it.
type Result struct {
	Peer     string
	Role     MsgType
	Auth     AuthMode
	Version  uint16 // tls.VersionTLS13 where a handshake ended
	Suite    uint16
	Status   Status
	Err      error
	Duration time.Duration
	// RemoteAuth is what DONE carried as remote-auth.
	RemoteAuth []uint32
}

// LogAttrs are r as slog attributes: the line ktls tlshd writes.
func (r Result) LogAttrs() []slog.Attr {
	a := []slog.Attr{
		slog.String("peer", r.Peer),
		slog.String("role", r.Role.String()),
		slog.String("auth", r.Auth.String()),
	}
	if r.Version != 0 {
		a = append(a, slog.String("version", tls.VersionName(r.Version)), slog.String("suite", tls.CipherSuiteName(r.Suite)))
	}
	a = append(a, slog.String("result", r.Status.String()), slog.Duration("duration", r.Duration.Round(time.Microsecond)))
	if r.Err != nil {
		a = append(a, slog.String("error", r.Err.Error()))
	}
	return a
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

func (c *Config) credentials(t MsgType) (*Credentials, error) {
	if c.GetCredentials != nil {
		cr, err := c.GetCredentials(t)
		if err != nil {
			return nil, withStatus(StatusNoKey, fmt.Errorf("handshake: credentials: %w", err))
		}
		if cr != nil {
			return cr, nil
		}
		return &Credentials{}, nil
	}
	if t == ServerHello && c.Server != nil {
		return c.Server, nil
	}
	if t == ClientHello && c.Client != nil {
		return c.Client, nil
	}
	return &Credentials{}, nil
}

func (c *Config) timeout(r *Request) time.Duration {
	if r.TimeoutMillis != 0 {
		return time.Duration(r.TimeoutMillis) * time.Millisecond
	}
	if c.DefaultTimeout > 0 {
		return c.DefaultTimeout
	}
	return 10 * time.Second
}

// tlsConfig builds the crypto/tls configuration for a request: TLS 1.3
// only (the kernel consumers speak nothing else: RFC 9289 §5 for
// RPC-with-TLS; tlshd offers TLS 1.3 alone), no session cache and no
// tickets, since nothing may be read or written after the handshake (a
// ticket would be a record the consumer must not see us take, and ktls's
// ticket drain would read past the handshake). serverName is what the
// client verifies the server against; cert, where not nil, is presented.
func tlsConfig(r *Request, cr *Credentials, serverName string, cert *tls.Certificate) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
		RootCAs:                cr.RootCAs,
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	if len(cr.CRLs) != 0 {
		crls := cr.CRLs
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return checkCRLs(cs, crls) }
	}
	switch r.Type {
	case ClientHello:
		cfg.ServerName = serverName
	case ServerHello:
		if cert == nil {
			return nil, withStatus(StatusNoKey, errors.New("handshake: no server certificate: the request names no key serials and the configuration has none"))
		}
		cfg.ClientCAs = cr.RootCAs
		if cfg.ClientCAs == nil {
			pool, err := x509.SystemCertPool()
			if err != nil {
				return nil, withStatus(StatusNoKey, fmt.Errorf("handshake: the system trust store: %w", err))
			}
			cfg.ClientCAs = pool
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if cr.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	default:
		return nil, withStatus(StatusInvalid, fmt.Errorf("handshake: unknown %v", r.Type))
	}
	return cfg, nil
}

// checkCRLs refuses a verified chain that holds a certificate its issuer's
// list revokes (RFC 5280 §6.3, for lists whose signature verifies).
func checkCRLs(cs tls.ConnectionState, crls []*x509.RevocationList) error {
	for _, chain := range cs.VerifiedChains {
		for i := 0; i+1 < len(chain); i++ {
			cert, issuer := chain[i], chain[i+1]
			for _, l := range crls {
				if l.CheckSignatureFrom(issuer) != nil {
					continue
				}
				for _, e := range l.RevokedCertificateEntries {
					if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
						return fmt.Errorf("handshake: certificate %q (serial %s) is revoked by its issuer's CRL", cert.Subject, cert.SerialNumber)
					}
				}
			}
		}
	}
	return nil
}
