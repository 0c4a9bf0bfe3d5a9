package conn

import (
	"crypto/tls"
	"errors"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/stats"
	"github.com/ktls-go/ktls/selector"
)

// Counting for the process-wide counters (internal/stats; ktls.Stats
// documents each). The engines and fallbacks are counted once per direction
// of a connection, here, when the direction settles; the data path adds once
// per call, in the functions that return the bytes (docs/ARCHITECTURE.md,
// "Counters").

// keysWhy is what the handoff knew of the keys, for the fallback classes.
type keysWhy uint8

const (
	keysKnown     keysWhy = iota
	keysNoSuite           // no engine takes the version or suite (TLS 1.2 CBC)
	keysUncertain         // keys or sequence numbers not known with certainty
)

// countHandoff counts the directions a successful handoff settled: TX, and
// RX where both stayed on stdlib; an engine's RX is counted where it is
// installed (installRXLocked), now or after the ticket drain. unknown is
// the handoff's reason for not knowing the keys, or "". It runs in the
// handoff, before handshakeDone is set, so it reads info under infoMu
// rather than through Backend, which is empty until then.
func (c *Conn) countHandoff(st tls.ConnectionState, unknown string) {
	why := keysKnown
	if _, ok := keyschedule.Lookup(st.Version, st.CipherSuite); !ok {
		// The handoff has no keys for a suite outside the table either;
		// the suite, not the keys, is why the connection stays.
		why = keysNoSuite
	} else if unknown != "" {
		why = keysUncertain
	}
	c.infoMu.Lock()
	info := c.info
	c.infoMu.Unlock()
	c.countDirection(selector.TX, info.TX, info.TXDetail.EngineChoice, why)
	if !c.moved {
		c.countDirection(selector.RX, info.RX, info.RXDetail.EngineChoice, why)
	}
}

// countDirection counts direction d settled on engine after choice, and
// its fallback, if any.
func (c *Conn) countDirection(d selector.Direction, engine string, choice EngineChoice, why keysWhy) {
	i := stats.EngineIndex(engine)
	if d == selector.TX {
		c.out.eng = i
	} else {
		c.in.eng = i
	}
	stats.Installed(statsDir(d), i)
	if class, ok := c.fallbackClass(d, engine, choice, why); ok {
		stats.Fallback(statsDir(d), class)
	}
}

// fallbackClass says whether direction d, settled on engine after choice,
// fell back, and in which class: the first that applies, in the order of
// stats.Class (ktls.FallbackCounters says what each means). A direction
// that got what was forced, or the best engine the automatic order had
// without passing one over, did not fall back.
func (c *Conn) fallbackClass(d selector.Direction, engine string, choice EngineChoice, why keysWhy) (stats.Class, bool) {
	forced := c.opts.Policy.Spec.For(d)
	stdlib := engine == backend.Stdlib
	switch {
	case forced == backend.Stdlib:
		return 0, false // what was asked for
	case stdlib && c.opts.FIPS:
		return stats.FIPS, true
	case stdlib && why == keysNoSuite:
		return stats.Suite, true
	case stdlib && why == keysUncertain:
		return stats.Uncertain, true
	case stdlib && choice.Engine != backend.Stdlib:
		// The policy chose an engine; the other direction stayed (BothStdlib).
		return stats.Paired, true
	case c.wrapRefused(d):
		return stats.Wrapped, true
	case forced != selector.Auto && engine != forced:
		return stats.Forced, true
	case len(choice.Refused) > 0:
		return stats.Refused, true
	case len(choice.Unavailable) > 0:
		return stats.Unavailable, true
	}
	return 0, false
}

// wrapRefused says whether a socket engine was refused direction d because
// the conn arrived wrapped and nothing proved the wrapper holds no bytes
// (installHalf sets it; wrapped.go).
func (c *Conn) wrapRefused(d selector.Direction) bool {
	if d == selector.TX {
		return c.out.wrapRefused
	}
	return c.in.wrapRefused
}

// countStrict counts the handshake failure err as a strict fallback where it
// is one: a forced engine that could not serve under KTLS_STRICT.
func countStrict(err error) {
	if se, ok := errors.AsType[*selector.StrictError](err); ok {
		stats.Fallback(statsDir(se.Direction), stats.Strict)
	}
}

func statsDir(d selector.Direction) int {
	if d == selector.TX {
		return stats.TX
	}
	return stats.RX
}
