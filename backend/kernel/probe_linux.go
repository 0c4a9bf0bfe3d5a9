//go:build linux

package kernel

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
)

// The probes attempt the real thing on a connected loopback TCP pair, as
// house rule 4 of docs/ARCHITECTURE.md asks (cilium/ebpf's feature tests): a version number says nothing
// about a kernel built without the tls module, a distribution backport, or a
// cipher module that is missing. They have three outcomes: nil (available,
// cached), an error wrapping backend.ErrNotSupported (conclusively missing,
// cached), or any other error (inconclusive: not cached, asked again next
// time).

type suiteKey struct {
	version uint16
	cipher  uint16
}

type suiteResult struct{ tx, rx error }

var probes struct {
	sync.Mutex
	suites   map[suiteKey]suiteResult
	rekey    error
	rekeySet bool
}

// Probe reports whether this kernel's kTLS seals (tx) or opens (!tx) records
// of a TLS version and crypto/tls cipher suite: nil, an error wrapping
// backend.ErrNotSupported (the tls module is missing, the kernel lacks the
// cipher or the version, or the engine has no kernel cipher for the suite),
// or another error when the probe could not decide. The first call for a
// version and cipher installs keys for it on a loopback pair and sends a
// record through, which takes well under a millisecond; conclusive answers
// are cached for the life of the process.
func Probe(tx bool, version, suite uint16) error {
	c, err := lookup(version, suite)
	if err != nil {
		return err
	}
	k := suiteKey{version, c.Type}
	probes.Lock()
	defer probes.Unlock()
	r, ok := probes.suites[k]
	if !ok {
		r = probeSuite(version, c)
		if conclusive(r.tx) && conclusive(r.rx) {
			if probes.suites == nil {
				probes.suites = make(map[suiteKey]suiteResult)
			}
			probes.suites[k] = r
		}
	}
	if tx {
		return r.tx
	}
	return r.rx
}

func conclusive(err error) bool { return err == nil || errors.Is(err, backend.ErrNotSupported) }

// ProbeRekey reports whether the kernel takes a second TLS_TX and TLS_RX on a
// TLS 1.3 socket, which is how kTLS follows a KeyUpdate (Linux 6.14, commit
// 47069594e67e; before it the second setsockopt fails with EBUSY). Same
// three outcomes as [Probe].
func ProbeRekey() error {
	probes.Lock()
	defer probes.Unlock()
	if probes.rekeySet {
		return probes.rekey
	}
	err := probeRekey()
	if conclusive(err) {
		probes.rekey, probes.rekeySet = err, true
	}
	return err
}

// notSupported says whether errno from TCP_ULP or TLS_TX/TLS_RX means the
// kernel lacks the feature: ENOENT (no tls module, or no crypto for the
// cipher), EINVAL and EOPNOTSUPP (an unknown cipher or version in
// validate_crypto_info and tls_set_sw_offload), ENOPROTOOPT (no SOL_TLS).
func notSupported(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOPROTOOPT)
}

func classify(what string, err error) error {
	if notSupported(err) {
		return backend.NotSupported(backend.Kernel, "%s: %w", what, err)
	}
	return fmt.Errorf("kernel: probe: %s: %w", what, err)
}

// probeSuite installs a key for version and c as TX on one end of a loopback
// pair and as RX on the other, and sends a record through.
func probeSuite(version uint16, c cipher) suiteResult {
	client, server, err := loopbackPair()
	if err != nil {
		err = fmt.Errorf("kernel: probe: loopback pair: %w", err)
		return suiteResult{err, err}
	}
	defer client.Close()
	defer server.Close()
	for _, s := range []sock{client, server} {
		if err := s.setsockopt(unix.IPPROTO_TCP, unix.TCP_ULP, []byte("tls")); err != nil {
			err = classify(`setsockopt(TCP_ULP, "tls")`, err)
			if errors.Is(err, unix.ENOENT) {
				err = backend.NotSupported(backend.Kernel, "the tls module is not available (TCP_ULP: ENOENT)")
			}
			return suiteResult{err, err}
		}
	}
	what := tls.VersionName(version) + " " + c.Name
	key := make([]byte, c.KeyLen)
	iv := make([]byte, c.SaltLen+c.IVLen)
	if version == tls.VersionTLS12 && c.SaltLen != 0 {
		iv = iv[:c.SaltLen]
	}
	p := backend.Params{Version: version, Key: key, IV: iv}
	var r suiteResult
	info, err := cryptoInfo(c, p)
	if err != nil {
		return suiteResult{err, err}
	}
	if err := client.setsockopt(unix.SOL_TLS, optTX, info); err != nil {
		r.tx = classify("setsockopt(TLS_TX) for "+what, err)
	}
	if err := server.setsockopt(unix.SOL_TLS, optRX, info); err != nil {
		r.rx = classify("setsockopt(TLS_RX) for "+what, err)
	}
	if r.tx != nil || r.rx != nil {
		return r
	}
	if err := exchange(client.conn, server.conn); err != nil {
		err = fmt.Errorf("kernel: probe: a record through %s: %w", what, err)
		return suiteResult{err, err}
	}
	return r
}

// probeRekey installs a TLS 1.3 AES-GCM-128 key on both directions of a
// loopback pair, then a second one.
func probeRekey() error {
	c, _ := lookup(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	client, server, err := loopbackPair()
	if err != nil {
		return fmt.Errorf("kernel: probe: loopback pair: %w", err)
	}
	defer client.Close()
	defer server.Close()
	p := backend.Params{Version: tls.VersionTLS13, Key: make([]byte, c.KeyLen), IV: make([]byte, 12)}
	info, err := cryptoInfo(c, p)
	if err != nil {
		return err
	}
	for _, step := range []struct {
		s   sock
		opt int
	}{{client, optTX}, {server, optRX}} {
		if err := step.s.setsockopt(unix.IPPROTO_TCP, unix.TCP_ULP, []byte("tls")); err != nil {
			return classify(`setsockopt(TCP_ULP, "tls")`, err)
		}
		if err := step.s.setsockopt(unix.SOL_TLS, step.opt, info); err != nil {
			return classify("setsockopt("+optName(step.opt)+") for TLS 1.3", err)
		}
		if err := step.s.setsockopt(unix.SOL_TLS, step.opt, info); err != nil {
			if errors.Is(err, unix.EBUSY) {
				return backend.NotSupported(backend.Kernel, "a second %s is refused (EBUSY): TLS 1.3 KeyUpdate with kTLS needs Linux 6.14 or newer (commit 47069594e67e)", optName(step.opt))
			}
			return fmt.Errorf("kernel: probe: a second %s: %w", optName(step.opt), err)
		}
	}
	return nil
}

// loopbackPair returns both ends of a connected TCP connection on 127.0.0.1
// (kTLS needs an established socket: TCP_ULP on another gives ENOTCONN).
func loopbackPair() (client, server sock, err error) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return sock{}, sock{}, err
	}
	defer ln.Close()
	cc, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return sock{}, sock{}, err
	}
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	sc, err := ln.AcceptTCP()
	if err != nil {
		cc.Close()
		return sock{}, sock{}, err
	}
	crc, err1 := cc.SyscallConn()
	src, err2 := sc.SyscallConn()
	if err := errors.Join(err1, err2); err != nil {
		cc.Close()
		sc.Close()
		return sock{}, sock{}, err
	}
	return sock{conn: cc, rc: crc}, sock{conn: sc, rc: src}, nil
}

func (s sock) Close() error { return s.conn.Close() }

// exchange sends a short message from one end and reads it on the other.
func exchange(from, to *net.TCPConn) error {
	const msg = "ktls probe"
	deadline := time.Now().Add(5 * time.Second)
	from.SetDeadline(deadline)
	to.SetDeadline(deadline)
	if _, err := from.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(to, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("read %q, want %q", got, msg)
	}
	return nil
}
