//go:build linux

package afalg

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/internal/recordlayer"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/netlink"
)

var (
	_ backend.Backend     = engine{}
	_ backend.Checker     = engine{}
	_ backend.Accelerator = engine{}
	_ recordlayer.AEAD    = (*opAEAD)(nil)
)

// engine runs backend/internal/recordlayer over AEADs whose seal and open are
// AF_ALG operations; its halves are the record layer's, so they are
// Rekeyers too.
type engine struct {
	rec backend.Backend
}

// New returns the afalg engine.
func New() backend.Backend {
	return engine{rec: recordlayer.New(backend.AFALG, newAEAD)}
}

// Name returns backend.AFALG.
func (engine) Name() string { return backend.AFALG }

// Check reports whether the engine serves a version and suite, in either
// direction: the suite's algorithm must be one of AEADs and the kernel must
// hand it out through AF_ALG ([Probe], cached). Whether a hardware engine
// serves it is Hardware's question.
func (engine) Check(tx bool, version, suite uint16) error {
	alg, err := Algorithm(version, suite)
	if err != nil {
		return err
	}
	return Probe(alg)
}

// NewSealer installs the engine on the TX direction of l: a transform and
// an operation socket for p's key. It does no I/O on l; a failure of the
// kernel wraps backend.ErrNotSupported.
func (e engine) NewSealer(l backend.Link, p backend.Params) (backend.Sealer, error) {
	if err := e.Check(true, p.Version, p.CipherSuite); err != nil {
		return nil, err
	}
	return e.rec.NewSealer(l, p)
}

// NewOpener installs the engine on the RX direction of l; the bytes of
// l.Buffered are read first. It does no I/O on l; a failure of the kernel
// wraps backend.ErrNotSupported.
func (e engine) NewOpener(l backend.Link, p backend.Params) (backend.Opener, error) {
	if err := e.Check(false, p.Version, p.CipherSuite); err != nil {
		return nil, err
	}
	return e.rec.NewOpener(l, p)
}

// Hardware reports whether the implementation the kernel hands out for the
// suite's algorithm is a hardware engine, and names its driver, or says why
// not. It reads the kernel's registry once per algorithm, after the probe
// (which instantiates the algorithm, so that a template shows up), and
// caches a conclusive answer.
//
// Caveat: the kernel does not say which implementation an AF_ALG socket got;
// the answer is the kernel's own rule (highest priority among the tested,
// non-internal ones, crypto/api.c) applied to the registry. A kernel that
// keeps AF_ALG off hardware engines ("AF_ALG: Drop support for off-CPU
// cryptography", proposed for Linux 7.2) would make it wrong.
func (engine) Hardware(version, suite uint16) (ok bool, what string) {
	alg, err := Algorithm(version, suite)
	if err != nil {
		return false, why(err)
	}
	if err := Probe(alg); err != nil {
		return false, "AF_ALG does not serve " + alg + ": " + why(err)
	}
	hw.Lock()
	defer hw.Unlock()
	if a, ok := hw.answers[alg]; ok {
		return a.ok, a.what
	}
	reg, err := ReadRegistry()
	if err != nil {
		return false, "cannot tell who serves " + alg + ": " + why(err)
	}
	a := hardwareOf(alg, reg)
	if hw.answers == nil {
		hw.answers = make(map[string]hwAnswer)
	}
	hw.answers[alg] = a
	return a.ok, a.what
}

var hw struct {
	sync.Mutex
	answers map[string]hwAnswer
}

// why is err without this package's name, for a text that goes after
// other words: a refusal's Reason, or the text of an inconclusive probe's
// error after the "afalg: " that every error of this package starts with
// (house rule 8 of docs/ARCHITECTURE.md).
func why(err error) string {
	if ns, ok := errors.AsType[*backend.NotSupportedError](err); ok {
		return ns.Reason
	}
	return strings.TrimPrefix(err.Error(), backend.AFALG+": ")
}

// The probes attempt the real thing, as house rule 4 of docs/ARCHITECTURE.md asks (cilium/ebpf's
// feature tests): socket(AF_ALG), bind to the algorithm, a key, and one
// record sealed and opened, compared with Go's own AEAD (a known-answer
// test: hardware drivers have had GCM bugs, and the kernel's self-tests can
// be compiled out, CONFIG_CRYPTO_MANAGER_DISABLE_TESTS). Three outcomes: nil
// (cached), an error wrapping backend.ErrNotSupported (conclusive, cached),
// any other error (inconclusive, asked again next time).
var probes struct {
	sync.Mutex
	results map[string]error
}

// Probe reports whether the kernel hands out alg (GCMAES or
// ChaCha20Poly1305) through an AF_ALG "aead" socket and computes it right:
// nil, an error wrapping backend.ErrNotSupported (no AF_ALG, no such
// algorithm, refused by policy or by af_alg_restrict, or wrong output), or
// another error when the probe could not decide. Conclusive answers are
// cached for the life of the process.
func Probe(alg string) error {
	probes.Lock()
	defer probes.Unlock()
	if err, ok := probes.results[alg]; ok {
		return err
	}
	err := probe(alg)
	if err == nil || errors.Is(err, backend.ErrNotSupported) {
		if probes.results == nil {
			probes.results = make(map[string]error)
		}
		probes.results[alg] = err
	}
	return err
}

// ProbeSocket attempts socket(AF_ALG) alone, uncached: nil, an error
// wrapping backend.ErrNotSupported (the kernel has no AF_ALG, or a policy
// refuses it), or another error.
func ProbeSocket() error {
	fd, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return socketError(err)
	}
	unix.Close(fd)
	return nil
}

// socketError classifies an error of socket(AF_ALG)
// (docs/ARCHITECTURE.md, AF_ALG).
func socketError(err error) error {
	e := errnoError{err}
	switch {
	case errors.Is(err, unix.EAFNOSUPPORT):
		return backend.NotSupported(backend.AFALG, "socket(AF_ALG): %w: the kernel has no AF_ALG (CONFIG_CRYPTO_USER_API), or a policy blocks it%s", e, restrictNote())
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return backend.NotSupported(backend.AFALG, "socket(AF_ALG): %w: refused by a security policy (seccomp, LSM)", e)
	}
	return fmt.Errorf("afalg: socket(AF_ALG): %w", e)
}

// bindError classifies an error of bind(2) on an AF_ALG socket.
func bindError(alg string, err error) error {
	e := errnoError{err}
	switch {
	case errors.Is(err, unix.ENOENT):
		note := restrictNote()
		if note == "" {
			note = ": no such algorithm, or algif_aead is missing"
		}
		return backend.NotSupported(backend.AFALG, "bind(aead, %s): %w%s", alg, e, note)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return backend.NotSupported(backend.AFALG, "bind(aead, %s): %w: refused by a security policy (seccomp, LSM)", alg, e)
	}
	return fmt.Errorf("afalg: bind(aead, %s): %w", alg, e)
}

// restrictNote explains a refusal by af_alg_restrict, "" where it is 0 or
// absent.
func restrictNote() string {
	if n, ok, _ := Restriction(); ok && n != 0 {
		return fmt.Sprintf(": %s is %s", RestrictFile, RestrictMeaning(n))
	}
	return ""
}

// Restriction returns the value of RestrictFile; ok is false where the
// kernel has no such switch (before Linux 7.3, or af_alg not loaded), and
// err says what was wrong with a value that is not a number.
func Restriction() (n int, ok bool, err error) {
	b, rerr := os.ReadFile(RestrictFile)
	if rerr != nil {
		return 0, false, nil
	}
	n, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false, fmt.Errorf("afalg: %s reads %q", RestrictFile, b)
	}
	return n, true, nil
}

// probe seals and opens one record-sized message under alg and compares
// with Go's AEAD; a tampered tag must fail authentication.
func probe(alg string) error {
	var keyLen int
	var goAEAD func(key []byte) (cipher.AEAD, error)
	switch alg {
	case GCMAES:
		keyLen = 16
		goAEAD = func(key []byte) (cipher.AEAD, error) {
			b, err := aes.NewCipher(key)
			if err != nil {
				return nil, err
			}
			return cipher.NewGCM(b)
		}
	case ChaCha20Poly1305:
		keyLen, goAEAD = chacha20poly1305.KeySize, chacha20poly1305.New
	default:
		return backend.NotSupported(backend.AFALG, "algorithm %q is not one of the engine's", alg)
	}
	key := bytes.Repeat([]byte{0x5a}, keyLen)
	a, err := dialAEAD(alg, key)
	if err != nil {
		if errors.Is(err, backend.ErrNotSupported) {
			return err
		}
		return fmt.Errorf("afalg: %w", err)
	}
	defer a.Close()
	ref, err := goAEAD(key)
	if err != nil {
		return fmt.Errorf("afalg: probe: Go's %s: %w", alg, err)
	}
	nonce := []byte("twelve bytes")
	ad := []byte("thirteen byte") // the size of TLS 1.2's additional data
	pt := []byte("a record's worth of plaintext, sealed by the kernel")
	got := a.Seal(nil, nonce, pt, ad)
	if err := a.Err(); err != nil {
		return fmt.Errorf("afalg: probe: sealing with %s: %w", alg, err)
	}
	want := ref.Seal(nil, nonce, pt, ad)
	if !bytes.Equal(got, want) {
		return backend.NotSupported(backend.AFALG, "%s through AF_ALG differs from Go's: a broken kernel implementation", alg)
	}
	opened, err := a.Open(nil, nonce, got, ad)
	if err != nil {
		return fmt.Errorf("afalg: probe: opening with %s: %w", alg, err)
	}
	if !bytes.Equal(opened, pt) {
		return backend.NotSupported(backend.AFALG, "%s through AF_ALG opens to other bytes than were sealed", alg)
	}
	got[len(got)-1] ^= 1
	if _, err := a.Open(nil, nonce, got, ad); err == nil || a.Err() != nil {
		return backend.NotSupported(backend.AFALG, "%s through AF_ALG: a tampered tag gave %v (%v), want an authentication failure (EBADMSG)", alg, err, a.Err())
	}
	return nil
}

// newAEAD is recordlayer.New's factory: an operation socket for the
// key of p. Its errors wrap backend.ErrNotSupported: nothing was done on
// the connection.
func newAEAD(p backend.Params) (recordlayer.AEAD, error) {
	s, ok := keyschedule.Lookup(p.Version, p.CipherSuite)
	if !ok {
		return nil, backend.NotSupported(backend.AFALG, "suite %#04x under version %#04x", p.CipherSuite, p.Version)
	}
	if len(p.Key) != s.KeyLen {
		// A caller's bug, not the kernel's.
		return nil, fmt.Errorf("afalg: %s key of %d bytes, want %d", s.Name(), len(p.Key), s.KeyLen)
	}
	a, err := dialAEAD(s.AFALG, p.Key)
	if err != nil {
		if errors.Is(err, backend.ErrNotSupported) {
			return nil, err
		}
		return nil, backend.NotSupported(backend.AFALG, "%w", err)
	}
	return a, nil
}

// ReadRegistry returns the implementations the kernel crypto API has
// registered, from crypto netlink where the kernel has it
// (CONFIG_CRYPTO_USER; CRYPTO_MSG_GETALG needs no capability), else from
// /proc/crypto, whose records lack the flags; Note says why netlink was not
// used. With an error, what could be read is returned too.
func ReadRegistry() (Registry, error) {
	algs, nlErr := cryptoNetlink()
	if nlErr == nil {
		return Registry{Algs: algs, Source: "crypto netlink (CRYPTO_MSG_GETALG)"}, nil
	}
	r := Registry{
		Source: "/proc/crypto",
		Note: "crypto netlink not used: " + nlErr.Error() +
			"; the driver name lists decide, without the CRYPTO_ALG_KERN_DRIVER_ONLY flag",
	}
	f, err := os.Open("/proc/crypto")
	if err != nil {
		return Registry{Source: "none"}, fmt.Errorf("afalg: crypto netlink: %v; /proc/crypto: %w", nlErr, err)
	}
	defer f.Close()
	r.Algs, err = ParseProcCrypto(f)
	return r, err
}

// Implementations returns the kernel's usable implementations of name,
// highest priority first (see [Usable]), from [ReadRegistry].
func Implementations(name string) ([]Implementation, error) {
	r, err := ReadRegistry()
	return r.Implementations(name), err
}

// cryptoNetlink dumps the registered algorithms with CRYPTO_MSG_GETALG on
// NETLINK_CRYPTO (crypto/crypto_user.c).
func cryptoNetlink() ([]Implementation, error) {
	c, err := netlink.Dial(unix.NETLINK_CRYPTO, "NETLINK_CRYPTO")
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, fmt.Errorf("%v: no CONFIG_CRYPTO_USER (module crypto_user)", err)
		}
		return nil, err
	}
	defer c.Close()
	msgs, err := c.Execute(cryptoMsgGetAlg, netlink.FDump, make([]byte, sizeofCryptoUser))
	if err != nil {
		return nil, fmt.Errorf("CRYPTO_MSG_GETALG dump: %s", netlink.ErrnoText(err))
	}
	var algs []Implementation
	for _, m := range msgs {
		if m.Type != cryptoMsgGetAlg {
			continue
		}
		a, err := ParseCryptoUserAlg(m.Data)
		if err != nil {
			return nil, err
		}
		algs = append(algs, a)
	}
	if len(algs) == 0 {
		return nil, errors.New("CRYPTO_MSG_GETALG dump: no algorithms in the reply")
	}
	return algs, nil
}
