package conn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/stats"
	"github.com/ktls-go/ktls/selector"
)

// handoff runs once, right after crypto/tls's handshake succeeded, under
// handshakeMu. It finds the keys and sequence numbers, asks the policy for
// candidates, and installs the engines (docs/ARCHITECTURE.md steps 3-6). When anything
// is uncertain the connection stays on crypto/tls's record layer, with the
// reason in BackendInfo.
func (c *Conn) handoff() error {
	// crypto/tls may not write from here on: a record it wrote after the
	// count below would carry a sequence number the engine then uses again.
	// Nothing in ktls makes it write now (Close does not call it during the
	// handshake); this makes sure of it, and waits for a write in flight.
	c.rc.refuseWrites()
	// The socket must hold exactly what crypto/tls has not read, for
	// whichever record layer reads next.
	if err := c.rc.endHandshake(); err != nil {
		c.rc.stopRecording()
		c.raw.Close()
		return fmt.Errorf("ktls: reading the handshake's last records: %w", err)
	}
	st := c.tls.ConnectionState()
	var tx, rx *dirKeys
	unknown := ""
	if !c.opts.FIPS {
		tx, rx, unknown = c.handoffKeys(st)
	}
	// In FIPS 140-3 mode no engine may take the records (selector.Facts.FIPS),
	// so keys are neither kept (keyLog.discard) nor derived: that would be
	// key material handled outside the Go Cryptographic Module for nothing.
	c.keyLog.wipe()
	if unknown == "" && len(c.rc.buffered()) != 0 {
		// Cannot happen by construction of recordConn; checked because a
		// byte lost here would corrupt the stream.
		unknown = "crypto/tls left part of a record unread"
	}
	if unknown == "" && c.isClient && st.Version == tls.VersionTLS12 && c.renegotiates() {
		unknown = "tls.Config enables renegotiation, which only crypto/tls can do"
	}
	if unknown == "" {
		// A conn that wraps a TCP socket: the socket engines take it
		// only where nothing is held above the socket (wrapped.go).
		c.rc.wrap = newWrapState(c.raw)
	}
	txF, rxF := c.opts.factsBoth(st.Version, st.CipherSuite, unknown)
	txC, err := c.opts.Policy.Candidates(txF)
	if err == nil {
		var rxC []selector.Candidate
		rxC, err = c.opts.Policy.Candidates(rxF)
		if err == nil {
			if txC[0].Name == backend.Stdlib || rxC[0].Name == backend.Stdlib {
				c.stayStdlib(tx, rx, candidateChoice(txC[0]), candidateChoice(rxC[0]))
				c.countHandoff(st, unknown)
				return nil
			}
			err = c.install(st, tx, rx, txC, rxC)
			if err == nil {
				c.countHandoff(st, unknown)
				return nil
			}
		}
	}
	// A strict policy that cannot be met, or an engine that failed after it
	// changed the socket: the handshake fails. Nothing of crypto/tls's
	// state can be trusted to go on.
	tx.wipeIfSet()
	rx.wipeIfSet()
	c.rc.stopRecording()
	c.raw.Close()
	return err
}

// renegotiates reports whether the connection's config lets crypto/tls
// accept a server's HelloRequest (RFC 5246 §7.4.1.1).
func (c *Conn) renegotiates() bool {
	return c.cfg != nil && c.cfg.Renegotiation != tls.RenegotiateNever
}

// Facts are what the selector decides direction d of a connection with
// version and suite from: the engines' Check and Hardware answers (cached
// probes), the CPU, and unknown, the reason keys or sequence numbers are not known ("":
// they are). The root package's Candidates uses it too, so that what it
// reports is what a connection's handoff decides.
func (o Options) Facts(d selector.Direction, version, suite uint16, unknown string) selector.Facts {
	f := selector.Facts{
		Direction:   d,
		Version:     version,
		CipherSuite: suite,
		Unknown:     unknown,
		CPU:         o.CPU,
		FIPS:        o.FIPS,
		// One allocation per direction: every handoff asks twice.
		Engines: make([]selector.Engine, 0, len(o.Backends)),
	}
	for _, b := range o.Backends {
		e := selector.Engine{Name: b.Name(), OK: true}
		if ch, ok := b.(backend.Checker); ok {
			if err := ch.Check(d == selector.TX, version, suite); err != nil {
				e.OK, e.Why = false, refusal(b.Name(), err).Reason
			}
		}
		if a, ok := b.(backend.Accelerator); ok {
			e.Hardware, e.HardwareWhat = a.Hardware(version, suite)
		}
		f.Engines = append(f.Engines, e)
	}
	return f
}

// factsBoth is Facts for TX and RX at once, as the handoff needs them: one
// allocation for both engine lists, and each engine's Hardware, which does
// not depend on the direction, asked once.
func (o Options) factsBoth(version, suite uint16, unknown string) (tx, rx selector.Facts) {
	n := len(o.Backends)
	engines := make([]selector.Engine, 2*n)
	tx = selector.Facts{
		Direction:   selector.TX,
		Version:     version,
		CipherSuite: suite,
		Unknown:     unknown,
		CPU:         o.CPU,
		FIPS:        o.FIPS,
		Engines:     engines[:n:n],
	}
	rx = tx
	rx.Direction, rx.Engines = selector.RX, engines[n:]
	for i, b := range o.Backends {
		t := selector.Engine{Name: b.Name(), OK: true}
		if a, ok := b.(backend.Accelerator); ok {
			t.Hardware, t.HardwareWhat = a.Hardware(version, suite)
		}
		r := t
		if ch, ok := b.(backend.Checker); ok {
			if err := ch.Check(true, version, suite); err != nil {
				t.OK, t.Why = false, refusal(b.Name(), err).Reason
			}
			if err := ch.Check(false, version, suite); err != nil {
				r.OK, r.Why = false, refusal(b.Name(), err).Reason
			}
		}
		tx.Engines[i], rx.Engines[i] = t, r
	}
	return tx, rx
}

// stayStdlib leaves both directions on crypto/tls. One direction alone cannot
// stay: crypto/tls reading must be able to write (alerts, KeyUpdate replies,
// refused renegotiation), and ktls reading must be able to write the same
// through an engine, which crypto/tls's writer cannot share.
func (c *Conn) stayStdlib(tx, rx *dirKeys, txc, rxc EngineChoice) {
	tx.wipeIfSet()
	rx.wipeIfSet()
	c.rc.stopRecording()
	c.rc.mode = modePassthrough
	c.rc.release()
	// crypto/tls keeps its record layer: its sequence numbers stay its own.
	c.rc.allowWrites()
	// No engine is installed from here on (installHalf).
	c.opts.Backends = nil
	c.setInfo(BackendInfo{
		TX: backend.Stdlib, RX: backend.Stdlib,
		TXDetail: DirectionInfo{EngineChoice: txc}, RXDetail: DirectionInfo{EngineChoice: rxc},
		BothStdlib: txc.Engine != rxc.Engine,
	})
}

// install puts TX into the first engine that takes it, then RX (now, or after
// the TLS 1.3 client's ticket drain). Keys are zeroed once handed over.
func (c *Conn) install(st tls.ConnectionState, tx, rx *dirKeys, txC, rxC []selector.Candidate) error {
	// While crypto/tls reads the tickets (drain.go), a write it attempts is
	// decoded with its stale TX key: tx.prot stays the connection's. Else
	// the engine may take the Protector the proof built (backend.Params).
	drain := c.drains(st)
	p := tx.params
	if !drain {
		p.Protector = tx.prot
	}
	half, txChoice, err := c.installHalf(selector.TX, txC, c.txPath(txC), p)
	if err != nil {
		return err
	}
	if half == nil {
		if txC[len(txC)-1].Name != backend.Stdlib {
			// Strict: the policy left no fallback.
			return &selector.StrictError{Direction: selector.TX, Forced: txC[0].Name, Reason: joinRefusals(txChoice.Refused, "; ")}
		}
		// Nothing was done: the whole connection can still stay.
		c.stayStdlib(tx, rx, txChoice, candidateChoice(rxC[0]))
		return nil
	}
	c.out.sealer = half.(backend.Sealer)
	if w := c.rc.wrap; drain && w != nil && anySocketEngine(rxC) {
		// RX is decided in a Read, after the drain (wrapped.go).
		w.decideRXLater(c.rc.writtenBytes())
	}
	if drain {
		c.rc.moveTX(tx.prot, tx.params.Seq)
	} else {
		c.rc.moveTX(nil, 0)
	}
	clear(tx.params.Key)
	clear(tx.params.IV)
	// Zeroed and never used again (a KeyUpdate derives its own): the
	// connection need not hold the arrays.
	tx.params.Key, tx.params.IV = nil, nil
	tx.prot = nil
	c.out.keys = installedKeys(tx)
	c.moved = true
	c.rc.stopRecording()
	info := BackendInfo{TX: txChoice.Engine, TXDetail: DirectionInfo{EngineChoice: txChoice}}

	c.in.keys, c.in.cands = rx, rxC
	if drain {
		c.startDrain(rx)
		info.RX = rxC[0].Name
		info.RXDetail = DirectionInfo{EngineChoice: candidateChoice(rxC[0]), AfterTickets: true}
		c.setInfo(info)
		return nil
	}
	c.setInfo(info)
	c.rc.mode = modePassthrough
	c.rc.release()
	if err := c.installRXLocked(rx.params.Seq, nil); err != nil {
		return err
	}
	c.dropTLSLocked(st)
	return nil
}

// installHalf installs direction d with the first of cands that takes it,
// up to stdlib, and tracks the half (for closeHalves). It returns nil and the
// refusals (the EngineChoice's Refused) when every engine candidate refused and
// nothing was done; an error means a candidate failed after it changed the
// socket (docs/ARCHITECTURE.md step 6). The path gives each candidate its
// link: a wrapped conn's socket engines get the socket, or are refused with
// the reason the proof failed (wrapped.go).
func (c *Conn) installHalf(d selector.Direction, cands []selector.Candidate, pa path, p backend.Params) (io.Closer, EngineChoice, error) {
	var refused []Refusal
	for _, cand := range cands {
		if cand.Name == backend.Stdlib {
			break
		}
		b, err := c.engine(cand.Name)
		if err != nil {
			return nil, EngineChoice{}, err
		}
		link, err := pa.link(cand.Name)
		if err != nil {
			refused = append(refused, refusal(cand.Name, err))
			if d == selector.TX {
				c.out.wrapRefused = true
			} else {
				c.in.wrapRefused = true
			}
			continue
		}
		var half io.Closer
		if d == selector.TX {
			half, err = b.NewSealer(link, p)
		} else {
			half, err = b.NewOpener(link, p)
		}
		if err == nil {
			c.track(half)
			return half, installedChoice(half, cand, refused), nil
		}
		if !errors.Is(err, backend.ErrNotSupported) {
			return nil, EngineChoice{}, fmt.Errorf("ktls: installing %s for %s: %w", cand.Name, d, err)
		}
		refused = append(refused, refusal(cand.Name, err))
	}
	ch := EngineChoice{Engine: backend.Stdlib, Refused: refused}
	if n := len(cands); n > 0 && cands[n-1].Name == backend.Stdlib {
		ch.Reason = cands[n-1].Reason
	}
	return nil, ch, nil
}

// installRXLocked puts RX into the first engine that takes it, after
// buffered, the bytes of the stream already read from the raw conn. TX has moved
// already, so there is no way back to crypto/tls: failing here fails the
// connection. After the TLS 1.3 client's ticket drain, the engine is
// recorded as Drained: the handshake already named the one expected.
func (c *Conn) installRXLocked(seq uint64, buffered []byte) error {
	rx := c.in.keys
	rx.params.Seq = seq
	// The drain, if any, is over: nothing else opens records with rx.prot,
	// and the engine may take it (backend.Params).
	p := rx.params
	p.Protector = rx.prot
	half, choice, err := c.installHalf(selector.RX, c.in.cands, c.rxPath(c.in.cands, buffered), p)
	clear(rx.params.Key)
	clear(rx.params.IV)
	rx.params.Key, rx.params.IV = nil, nil
	rx.prot = nil
	c.in.cands = nil
	if err != nil {
		rx.wipe()
		return err
	}
	if half == nil {
		rx.wipe()
		// No RX engine is counted for a connection that fails here; its
		// fallback is, as strict where a forced engine was the only
		// candidate (selector rule 4).
		class := stats.Refused
		if c.opts.Policy.Strict && c.opts.Policy.Spec.For(selector.RX) != selector.Auto {
			class = stats.Strict
		}
		stats.Fallback(stats.RX, class)
		return fmt.Errorf("ktls: no engine took rx after tx moved (%s)", joinRefusals(choice.Refused, "; "))
	}
	c.in.opener = half.(backend.Opener)
	c.in.keys = installedKeys(rx)
	c.infoMu.Lock()
	info := c.info
	c.infoMu.Unlock()
	info.RX = choice.Engine
	if info.RXDetail.AfterTickets {
		info.RXDetail.Drained = choice
	} else {
		info.RXDetail.EngineChoice = choice
	}
	c.setInfo(info)
	// Only a connection whose keys are known gets here (an uncertain one
	// stays on stdlib in the handoff).
	c.countDirection(selector.RX, choice.Engine, choice, keysKnown)
	return nil
}

// installedKeys returns what an installed direction keeps of d, its keys,
// already zeroed: a TLS 1.3 direction d itself, whose suite and traffic
// secret a KeyUpdate needs (RFC 8446 §4.6.3, §7.2); a TLS 1.2 direction,
// which never changes its key (ktls refuses renegotiation), only its suite,
// from suiteKeys, shared by every connection and never changed: its key,
// IV and secret are nil, so wiping it changes nothing. An idle TLS 1.2
// connection then holds no dirKeys of its own (issue 18: about 200 bytes per
// direction, which put an idle TLS 1.2 pair a few bytes over crypto/tls's).
func installedKeys(d *dirKeys) *dirKeys {
	if d.suite.Version == tls.VersionTLS13 {
		return d
	}
	if k, ok := suiteKeys[d.suite.ID]; ok && k.suite == d.suite {
		return k
	}
	return d
}

// suiteKeys holds, for each TLS 1.2 suite, a dirKeys that is nothing but the
// suite (installedKeys). It is built once and only read.
var suiteKeys = func() map[uint16]*dirKeys {
	m := map[uint16]*dirKeys{}
	for _, s := range keyschedule.Suites() {
		if s.Version == tls.VersionTLS12 {
			m[s.ID] = &dirKeys{suite: s}
		}
	}
	return m
}()

// engine returns the wired engine called name. The selector names only
// engines that are wired in (selector.Facts.Engines come from the same
// list), so another name is a bug, and the handshake fails rather than
// guess.
func (c *Conn) engine(name string) (backend.Backend, error) {
	for _, b := range c.opts.Backends {
		if b.Name() == name {
			return b, nil
		}
	}
	return nil, fmt.Errorf("ktls: internal error: the policy named engine %s, which is not wired in", name)
}
