package selector

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/cpufacts"
	"github.com/ktls-go/ktls/internal/keyschedule"
)

// Engine is what the caller knows about one engine for one direction of one
// connection.
type Engine struct {
	// Name is one of package backend's engine names.
	Name string
	// OK says the engine can serve this direction with these parameters, as
	// the caller learned from the engine's cached probe and suite table.
	OK bool
	// Why, when !OK, is a short reason: "tls module not loaded", "suite not
	// supported by the kernel". It goes into Candidate.Reason and must not
	// carry secrets.
	Why string
	// Hardware says a hardware crypto engine, not the CPU, does this
	// engine's crypto for the suite (a backend.Accelerator's answer; afalg
	// joins the automatic order only then), and HardwareWhat names it or
	// says why not.
	Hardware     bool
	HardwareWhat string
}

// Facts are what the selector knows about one direction of one connection.
type Facts struct {
	Direction   Direction
	Version     uint16 // tls.VersionTLS12 or tls.VersionTLS13
	CipherSuite uint16 // a crypto/tls cipher suite ID
	// Unknown, when not empty, says why the connection does not know this
	// direction's keys and sequence number with certainty
	// (docs/ARCHITECTURE.md step 4); it goes into the reason.
	Unknown string
	// Engines are the engines wired into this program, in no particular
	// order. stdlib need not be listed: it is always possible, whatever an
	// entry for it says. A name listed twice is OK only if every entry says
	// so. Names that are not engines are ignored.
	Engines []Engine
	// CPU is what the processor offers the engines' AES-GCM.
	CPU CPU
	// FIPS says the program runs in FIPS 140-3 mode (crypto/fips140.Enabled):
	// only crypto/tls's own record layer is inside the Go Cryptographic
	// Module's boundary, so every direction stays stdlib (see fipsReason).
	FIPS bool
}

// fipsReason is why every direction stays stdlib in FIPS 140-3 mode.
//
// The Go FIPS 140-3 documentation (https://go.dev/doc/security/fips140)
// defines the Go Cryptographic Module as the standard library packages under
// crypto/internal/fips140/..., and in FIPS 140-3 mode crypto/tls negotiates
// only approved versions, suites and key exchanges. Of the engines:
//
//   - kernel, nic and afalg hand the keys to Linux (kTLS, a NIC, the kernel
//     crypto API): outside the module's boundary, whatever validation the
//     kernel's own crypto may have;
//   - userspace seals ChaCha20-Poly1305 with golang.org/x/crypto, which is
//     not part of the module (nor approved), and AES-GCM with
//     crypto/cipher.NewGCM and nonces it builds itself. crypto/tls instead
//     seals its GCM records with the module's own TLS 1.2 and 1.3 GCM, which
//     checks the nonce sequence itself (FIPS 140-3 Implementation Guidance
//     C.H, scenario 1: the IV built inside TLS), and crypto/cipher.NewGCM
//     with nonces the caller chooses is what GODEBUG=fips140=only refuses
//     ("use of GCM with arbitrary IVs is not allowed in FIPS 140-only
//     mode"). Moving the keys there would take away a guarantee crypto/tls
//     gives in this mode.
//
// So only stdlib, crypto/tls's own record layer, may protect the records.
const fipsReason = "FIPS 140-3 mode: only crypto/tls's record layer is inside the Go Cryptographic Module"

// CPU is what the selector knows of the processor (see cpufacts.CPU; the
// type lives there, below the selector, which reads it from the host).
type CPU = cpufacts.CPU

// cpuNote says, for an AES-GCM suite, what the CPU means for engine name's
// AES where Go's AES-GCM does not run on AES instructions here, or "".
func cpuNote(f Facts, name string) string {
	if !aesSuite(f) || f.CPU.GoAESGCM {
		return ""
	}
	switch name {
	case backend.Kernel:
		if f.CPU.AESGCM {
			return "the kernel's AES-GCM uses this " + archName(f.CPU) + " CPU's AES instructions, Go's does not here"
		}
	case backend.Userspace, backend.Stdlib:
		if f.CPU.AESGCM {
			return "Go's AES-GCM does not use this " + archName(f.CPU) + " CPU's AES instructions here"
		}
		return "this " + archName(f.CPU) + " CPU has no AES-GCM instructions: Go's AES is table-based"
	}
	return ""
}

// archName is c's Arch, or "unknown".
func archName(c CPU) string {
	if c.Arch == "" {
		return "unknown"
	}
	return c.Arch
}

// Candidate is one engine to try.
type Candidate struct {
	Name string
	// Reason says why this engine is in the list, and why the engines before
	// it in the order of preference were passed over or, if they are earlier
	// in the list, what it means to have reached this one: "auto",
	// "auto; kernel: tls module not loaded", "forced kernel unavailable: tls
	// module not loaded", "forced kernel did not install".
	Reason string
	// Unavailable are the engines that Reason says could not serve before
	// this one (the forced engine, and those of the automatic order before
	// it whose Engine.OK was false), with their Why, in order: the same
	// refusals, field by field.
	Unavailable []Refusal
}

// Refusal is an engine that cannot serve a direction, and why.
type Refusal struct {
	Engine string
	// Reason is the engine's own account, without its name in front
	// (backend.NotSupportedError.Reason).
	Reason string
}

// String returns "engine: reason".
func (r Refusal) String() string { return r.Engine + ": " + r.Reason }

// String returns "name (reason)".
func (c Candidate) String() string {
	return c.Name + " (" + c.Reason + ")"
}

// StrictError is returned, in strict mode, when the engine forced on a
// direction cannot serve it (docs/ARCHITECTURE.md, "Forcing an engine": with
// KTLS_STRICT=1 the handshake fails with a typed error instead of falling
// back).
//
// Candidates returns it when the facts already rule the forced engine out.
// When the facts allow it, Candidates returns the forced engine alone, and the
// caller returns a StrictError of its own if the install then reports
// backend.ErrNotSupported, with the install's message as Reason.
type StrictError struct {
	Direction Direction
	Forced    string // the engine forced on Direction
	Reason    string // why it cannot serve
}

func (e *StrictError) Error() string {
	return fmt.Sprintf("selector: %s: %s forced to %s, which cannot serve: %s", EnvStrict, e.Direction, e.Forced, e.Reason)
}

// autoOrder returns the automatic order of preference for the direction
// and suite of f, best first (docs/ARCHITECTURE.md, the engine table):
//
//   - nic first: kTLS with device offload takes the crypto off the CPU
//     altogether; its engine verifies the offload per socket and reports
//     !OK otherwise ("verified per socket, else it is plain kernel");
//   - kernel next: the records never cross into user space, and it is what
//     makes sendfile/splice zero-copy (docs/ARCHITECTURE.md step 8);
//   - afalg only under the conditions of afalgAuto, and then before
//     userspace, since the one case it exists for (a hardware crypto engine,
//     no kTLS, no AES instructions) is exactly where it beats userspace; after
//     userspace it would never be reached, as userspace serves every AEAD
//     suite;
//   - userspace for every other AEAD case;
//   - stdlib last, always (added by the caller of autoOrder).
//
// One exception, from the per-direction benchmarks run in the VM (README,
// "Choosing per direction"): receiving ChaCha20-Poly1305, the kernel read
// at 0.6-0.8x of userspace, so userspace comes before kernel there. Sending
// stays with the kernel for every suite: it was as fast or faster for large
// writes, and only it can send files without copying them.
//
// backend.Names lists kernel before nic; the automatic order here puts nic
// first because nic is kernel plus offload, and an engine that reports OK for
// nic has verified the offload on this very socket.
func autoOrder(f Facts) []string {
	if userspaceFirst(f) {
		return orderUserspaceFirst
	}
	return orderDefault
}

// The two orders of autoOrder, made once: a handoff asks for one per
// direction. Read only.
var (
	orderDefault        = []string{backend.NIC, backend.Kernel, backend.AFALG, backend.Userspace}
	orderUserspaceFirst = []string{backend.NIC, backend.AFALG, backend.Userspace, backend.Kernel}
)

// userspaceFirst reports the exception of autoOrder: RX of a
// ChaCha20-Poly1305 suite.
func userspaceFirst(f Facts) bool {
	if f.Direction != RX {
		return false
	}
	suite, ok := keyschedule.Lookup(f.Version, f.CipherSuite)
	return ok && !suite.AES
}

// Candidates returns the engines to try, in order, for the direction of f.
// The caller installs the first one that takes the direction; one that
// reports backend.ErrNotSupported is passed over for the next (docs/ARCHITECTURE.md
// step 6).
//
// The rules, in order:
//
//  1. A direction forced to stdlib gets [stdlib].
//  2. FIPS 140-3 mode (Facts.FIPS: see fipsReason), a version other than
//     TLS 1.2 and 1.3, a suite that is not an AEAD suite of that version
//     (docs/ARCHITECTURE.md step 3: "CBC suites stay stdlib"), or keys or sequence
//     numbers not known with certainty (docs/ARCHITECTURE.md step 4: "if anything is
//     uncertain, that connection stays stdlib") leave only stdlib, whatever
//     the engines say; a direction forced to another engine then gets a
//     *StrictError in strict mode, or [stdlib] with the reason "forced X
//     unavailable: why". FIPS 140-3 mode is checked first, so that its
//     reason is the one given: in it no other fact could matter.
//  3. A direction forced to an engine that is not wired in or not OK gets a
//     *StrictError in strict mode, else the automatic order without that
//     engine, each reason starting "forced X unavailable: why".
//  4. A direction forced to an engine that is OK gets that engine first. In
//     strict mode it gets that engine alone, so that an install refused at run
//     time (a setsockopt the kernel rejects) fails the connection rather than
//     falling back; the list then does not end with stdlib, and running out
//     of candidates is the caller's StrictError. Otherwise the automatic order
//     without the forced engine follows, each reason starting "forced X did
//     not install": the facts said the engine could serve, so reaching the
//     fallback means its install refused, and falling back to the best of the
//     rest (rather than straight to stdlib) is what the operator would have
//     got without forcing.
//  5. Otherwise the automatic order: nic, kernel, userspace, stdlib, each
//     only if wired in and OK, with afalg between kernel and userspace only
//     under the conditions of afalgAuto; receiving ChaCha20-Poly1305,
//     userspace comes before kernel (see autoOrder).
//
// Apart from rule 4 in strict mode, the list always ends with stdlib, which
// is always possible. The reason of each automatic candidate also names the
// engines ahead of it in the order that were wired in but not OK, with their
// Why (except nic, whose refusal is the rule rather than news), and the ones earlier in the list, which did not install if this one is
// reached. An invalid direction or a Policy whose Spec names no engine (one
// built by hand) is an error.
func (p Policy) Candidates(f Facts) ([]Candidate, error) {
	if f.Direction != TX && f.Direction != RX {
		return nil, fmt.Errorf("selector: invalid direction %d", int(f.Direction))
	}
	forced := p.Spec.For(f.Direction)
	if forced != Auto && !isEngine(forced) {
		return nil, fmt.Errorf("selector: %s forced to unknown backend %q (%s)", f.Direction, forced, accepted)
	}

	// Rule 1.
	if forced == backend.Stdlib {
		return []Candidate{{Name: backend.Stdlib, Reason: "forced"}}, nil
	}

	// Rule 2: facts about the connection that rule out every engine.
	if why := stdlibOnly(f); why != "" {
		if forced == Auto {
			return []Candidate{{Name: backend.Stdlib, Reason: why}}, nil
		}
		if p.Strict {
			return nil, &StrictError{Direction: f.Direction, Forced: forced, Reason: why}
		}
		return []Candidate{{Name: backend.Stdlib, Reason: "forced " + forced + " unavailable: " + why}}, nil
	}

	if forced == Auto {
		// Rule 5.
		return autoCandidates(f, "", "auto"), nil
	}

	// Rule 3.
	wired, ok, why := lookup(f.Engines, forced)
	if !wired {
		why = "not wired into this program"
	}
	if !ok {
		if p.Strict {
			return nil, &StrictError{Direction: f.Direction, Forced: forced, Reason: why}
		}
		return autoCandidates(f, forced, "forced "+forced+" unavailable: "+why, Refusal{forced, why}), nil
	}

	// Rule 4.
	list := []Candidate{{Name: forced, Reason: "forced"}}
	if p.Strict {
		return list, nil
	}
	return append(list, autoCandidates(f, forced, "forced "+forced+" did not install")...), nil
}

// autoCandidates returns the automatic order without the engine exclude,
// ending with stdlib. Each reason is prefix, then the notes about the engines
// passed over before it; unavailable are the refusals prefix names.
func autoCandidates(f Facts, exclude, prefix string, unavailable ...Refusal) []Candidate {
	order := autoOrder(f)
	// Sized once: every handoff asks for both directions (the engines
	// and stdlib; a note per engine and two more at most).
	list := make([]Candidate, 0, len(order)+1)
	notes := make([]string, 0, 8)
	reason := func(name string) string {
		all := notes
		if note := cpuNote(f, name); note != "" {
			all = append(slices.Clip(notes), note)
		}
		if name == backend.AFALG {
			if e, _ := find(f.Engines, backend.AFALG); e.Hardware && e.HardwareWhat != "" {
				all = append(slices.Clip(all), "hardware engine "+e.HardwareWhat)
			}
		}
		if len(all) == 0 {
			return prefix
		}
		// prefix + "; " + strings.Join(all, "; "), in one allocation.
		n := len(prefix)
		for _, s := range all {
			n += len("; ") + len(s)
		}
		var b strings.Builder
		b.Grow(n)
		b.WriteString(prefix)
		for _, s := range all {
			b.WriteString("; ")
			b.WriteString(s)
		}
		return b.String()
	}
	if userspaceFirst(f) {
		if wired, ok, _ := lookup(f.Engines, backend.Kernel); wired && ok && exclude != backend.Kernel {
			notes = append(notes, "userspace before kernel: it receives ChaCha20-Poly1305 faster")
		}
	}

	for _, name := range order {
		if name == exclude {
			continue
		}
		if name == backend.AFALG && !afalgAuto(f) {
			// Opt-in only: passed over without a note, since it is not
			// part of the automatic order on this host.
			continue
		}
		wired, ok, why := lookup(f.Engines, name)
		if !wired {
			// An engine this program does not include is no news for the
			// reason of every connection.
			continue
		}
		if !ok {
			if name != backend.NIC {
				notes = append(notes, name+": "+why)
				unavailable = append(unavailable, Refusal{name, why})
			}
			// nic refuses on nearly every host (no device offloads
			// kTLS, or not this suite): like an engine not wired in,
			// that is no news for the reason of every connection.
			// ktls doctor says why per host, and a forced nic's reason
			// says why per connection.
			continue
		}
		list = append(list, Candidate{Name: name, Reason: reason(name), Unavailable: slices.Clip(unavailable)})
		notes = append(notes, name+" did not install")
	}
	return append(list, Candidate{Name: backend.Stdlib, Reason: reason(backend.Stdlib), Unavailable: slices.Clip(unavailable)})
}

// afalgAuto reports whether afalg joins the automatic order. docs/ARCHITECTURE.md's
// engine table: afalg is the choice "only where a hardware crypto engine serves
// gcm(aes) and kTLS is missing; opt-in otherwise", because AF_ALG is
// deprecated upstream, slower than in-process AES on any CPU with AES
// instructions (a syscall and a copy per record against a few cycles per
// byte), and had a local-root bug through splice (CVE-2026-31431). So it is
// chosen automatically only when its engine reports OK (which is where the
// engine says whether a hardware gcm(aes) serves this suite), the CPU has no
// AES instructions, and kernel kTLS cannot serve.
func afalgAuto(f Facts) bool {
	e, wired := find(f.Engines, backend.AFALG)
	_, kernelOK, _ := lookup(f.Engines, backend.Kernel)
	if !wired || !e.OK || !e.Hardware || kernelOK {
		return false
	}
	return !aesSuite(f) || !f.CPU.GoAESGCM
}

// find returns the entry for name, merged as lookup merges them: OK and
// Hardware only if every entry says so.
func find(engines []Engine, name string) (Engine, bool) {
	var out Engine
	wired := false
	for _, e := range engines {
		if e.Name != name {
			continue
		}
		if !wired {
			out, wired = e, true
			continue
		}
		out.OK = out.OK && e.OK
		out.Hardware = out.Hardware && e.Hardware
	}
	return out, wired
}

// aesSuite reports whether the suite of f is an AES-GCM suite (of either
// version), from package keyschedule's suite table.
func aesSuite(f Facts) bool {
	suite, ok := keyschedule.Lookup(f.Version, f.CipherSuite)
	return ok && suite.AES
}

// lookup returns whether name is wired in, whether it can serve, and why not.
// It is never asked about stdlib, which is always possible whatever Engines
// say. An engine listed more than once is OK only if every entry says so: a
// caller that contradicts itself gets the cautious answer.
func lookup(engines []Engine, name string) (wired, ok bool, why string) {
	for _, e := range engines {
		if e.Name != name {
			continue
		}
		if !wired {
			wired, ok = true, true
		}
		if !e.OK && ok {
			ok, why = false, e.Why
			if why == "" {
				why = "cannot serve"
			}
		}
	}
	return wired, ok, why
}

// stdlibOnly returns why no engine but stdlib may take this direction, or "".
func stdlibOnly(f Facts) string {
	if f.FIPS {
		return fipsReason
	}
	switch f.Version {
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return tls.VersionName(f.Version) + " is not served by any engine"
	}
	if !aeadSuite(f.Version, f.CipherSuite) {
		return tls.CipherSuiteName(f.CipherSuite) + " is not a " + tls.VersionName(f.Version) + " AEAD suite"
	}
	if f.Unknown != "" {
		return "keys or sequence numbers not known: " + f.Unknown
	}
	return ""
}

// aeadSuite reports whether suite is an AEAD suite that crypto/tls negotiates
// under version: the only suites any engine but stdlib can take (docs/ARCHITECTURE.md
// step 3), those of package keyschedule's suite table (RFC 8446 §B.4 for
// TLS 1.3, RFC 5288, RFC 5289 and RFC 7905 for TLS 1.2). A safety net under
// the engines' own checks, so that a CBC suite stays stdlib even if an engine
// were to answer OK for it.
func aeadSuite(version, suite uint16) bool {
	_, ok := keyschedule.Lookup(version, suite)
	return ok
}
