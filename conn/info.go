package conn

import (
	"errors"
	"strings"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/selector"
)

// BackendInfo says which engine protects each direction of a connection, and
// why. The names are those of package backend: kernel, nic, afalg, userspace,
// stdlib.
type BackendInfo struct {
	// TX and RX name the engine of each direction.
	TX, RX string
	// Reason is String(): the whole account in one line, as programs that
	// print or match it have always had it.
	Reason string
	// TXDetail and RXDetail say how each direction's engine was chosen.
	TXDetail, RXDetail DirectionInfo
	// BothStdlib says that the policy chose an engine for one direction,
	// and that direction stays on stdlib anyway because the other one does:
	// crypto/tls cannot share a connection with another engine
	// (docs/ARCHITECTURE.md step 6).
	BothStdlib bool
}

// DirectionInfo is how the engine of one direction was chosen.
type DirectionInfo struct {
	// EngineChoice is the engine chosen for the direction when the handshake
	// ended. Its Engine is BackendInfo's TX or RX, except where BothStdlib
	// keeps the direction on stdlib, and where a TLS 1.3 client's RX
	// engine turned out another after the ticket drain (Drained).
	EngineChoice
	// AfterTickets says that the engine takes RX only after crypto/tls has
	// read the session tickets that follow a TLS 1.3 handshake (the ticket
	// drain, docs/ARCHITECTURE.md step 7); EngineChoice is then the candidate
	// named at the handshake.
	AfterTickets bool
	// Drained, once the ticket drain has ended, is the engine that took RX
	// then, and why; its Engine is "" until then.
	Drained EngineChoice
}

// EngineChoice is one engine chosen for a direction, and why.
type EngineChoice struct {
	// Engine is the engine's name.
	Engine string
	// Reason is why the policy listed the candidate that installed it
	// (selector.Candidate.Reason): "auto", "forced kernel unavailable: tls
	// module not loaded".
	Reason string
	// Reported is the half's own account where it turned out another
	// engine than the candidate that installed it (backend.Reporter: a nic
	// half the kernel kept in software is kernel), or "".
	Reported string
	// Unavailable are the engines the policy found unable to serve before
	// this candidate, from their cached probes (selector.Candidate's
	// Unavailable: Reason names them too), in order.
	Unavailable []Refusal
	// Refused are the candidates before it that declined the direction
	// when they were installed (backend.ErrNotSupported), in order.
	Refused []Refusal
}

// Refusal is an engine that declined a direction, and why: "engine: reason"
// as a string.
type Refusal = selector.Refusal

// bothStdlibNote is what String says for BothStdlib.
const bothStdlibNote = "both stay on stdlib: crypto/tls cannot share a connection with another engine"

// String is the one-line account of Reason, e.g. "tx: kernel (auto); rx:
// userspace (auto; userspace before kernel: it receives ChaCha20-Poly1305
// faster)".
func (b BackendInfo) String() string {
	s := b.TXDetail.text("tx") + "; " + b.RXDetail.text("rx")
	if b.BothStdlib {
		s += "; " + bothStdlibNote
	}
	return s
}

func (d DirectionInfo) text(dir string) string {
	s := d.EngineChoice.text(dir)
	if d.AfterTickets {
		s += ", after crypto/tls has read the session tickets"
		if d.Drained.Engine != "" && d.Drained.Engine != d.Engine {
			s += "; " + d.Drained.text(dir)
		}
	}
	return s
}

func (c EngineChoice) text(dir string) string {
	why := c.why(dir)
	if why == "" {
		return dir + ": " + c.Engine
	}
	return dir + ": " + c.Engine + " (" + why + ")"
}

func (c EngineChoice) why(dir string) string {
	if c.Engine == backend.Stdlib && len(c.Refused) > 0 {
		// Every engine candidate refused: stdlib's own place in the list
		// says nothing more.
		return "no engine took " + dir + ": " + joinRefusals(c.Refused, "; ")
	}
	var parts []string
	for _, p := range []string{c.Reason, c.Reported} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(c.Refused) > 0 {
		parts = append(parts, "passed over "+joinRefusals(c.Refused, ", "))
	}
	return strings.Join(parts, "; ")
}

func joinRefusals(rs []Refusal, sep string) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, sep)
}

// candidateChoice is a candidate as the policy named it, before any install.
func candidateChoice(c selector.Candidate) EngineChoice {
	return EngineChoice{Engine: c.Name, Reason: c.Reason, Unavailable: c.Unavailable}
}

// installedChoice is the choice of the candidate cand whose half is half,
// after the candidates refused refused: the engine is the one the half says
// it is (backend.Reporter), the candidate's otherwise.
func installedChoice(half any, cand selector.Candidate, refused []Refusal) EngineChoice {
	ch := EngineChoice{Engine: cand.Name, Reason: cand.Reason, Unavailable: cand.Unavailable, Refused: refused}
	if r, ok := half.(backend.Reporter); ok {
		if name, why := r.Engine(); name != "" && name != cand.Name {
			ch.Engine, ch.Reported = name, why
		}
	}
	return ch
}

// refusal is engine name's refusal err as BackendInfo gives it: the
// backend.NotSupportedError's reason, with the refusing engine's name in
// front where it is another (an engine that passes on the refusal of one it
// builds on).
func refusal(name string, err error) Refusal {
	// The engines' refusals are NotSupportedErrors themselves, nearly
	// always: asked of every engine at every handoff (Options.Facts), the
	// type assertion spares errors.As its reflection and the variable it
	// needs on the heap.
	if ns, ok := err.(*backend.NotSupportedError); ok {
		return notSupportedRefusal(name, ns)
	}
	var ns *backend.NotSupportedError
	if errors.As(err, &ns) {
		return notSupportedRefusal(name, ns)
	}
	// An engine that wraps backend.ErrNotSupported by hand (none of ktls's
	// does): its whole message, rather than a guess at which part of it is
	// the reason.
	return Refusal{Engine: name, Reason: err.Error()}
}

// notSupportedRefusal is refusal's answer for an engine's NotSupportedError.
func notSupportedRefusal(name string, ns *backend.NotSupportedError) Refusal {
	if ns.Engine == name {
		return Refusal{Engine: name, Reason: ns.Reason}
	}
	return Refusal{Engine: name, Reason: ns.Engine + ": " + ns.Reason}
}

// setInfo publishes info for Backend, which fills in its Reason: built
// only when a program asks, it costs neither the handshake the string
// building nor an idle connection the string.
func (c *Conn) setInfo(info BackendInfo) {
	info.Reason = ""
	c.infoMu.Lock()
	c.info = info
	c.infoMu.Unlock()
}
