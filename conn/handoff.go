package conn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/ktls-go/ktls/backend"
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
	txC, err := c.opts.Policy.Candidates(c.facts(selector.TX, st, unknown))
	if err == nil {
		var rxC []selector.Candidate
		rxC, err = c.opts.Policy.Candidates(c.facts(selector.RX, st, unknown))
		if err == nil {
			if txC[0].Name == backend.Stdlib || rxC[0].Name == backend.Stdlib {
				c.stayStdlib(tx, rx, txC[0], rxC[0])
				return nil
			}
			err = c.install(st, tx, rx, txC, rxC)
			if err == nil {
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

func (c *Conn) facts(d selector.Direction, st tls.ConnectionState, unknown string) selector.Facts {
	return c.opts.Facts(d, st.Version, st.CipherSuite, unknown)
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
		KeysKnown:   unknown == "",
		Unknown:     unknown,
		CPU:         o.CPU,
		FIPS:        o.FIPS,
	}
	for _, b := range o.Backends {
		e := selector.Engine{Name: b.Name(), OK: true}
		if ch, ok := b.(backend.Checker); ok {
			if err := ch.Check(d == selector.TX, version, suite); err != nil {
				e.OK, e.Why = false, whyNot(b.Name(), err)
			}
		}
		if a, ok := b.(backend.Accelerator); ok {
			e.Hardware, e.HardwareWhat = a.Hardware(version, suite)
		}
		f.Engines = append(f.Engines, e)
	}
	return f
}

// whyNot is an engine's refusal as a short reason for BackendInfo.Reason:
// the engine's own name in front of its message ("kernel: ...", docs/ARCHITECTURE.md,
// house rule 8) and the ErrNotSupported sentinel at its end say nothing the reason
// does not already say.
func whyNot(name string, err error) string {
	msg := strings.TrimPrefix(err.Error(), name+": ")
	return strings.TrimSuffix(msg, ": "+backend.ErrNotSupported.Error())
}

// stayStdlib leaves both directions on crypto/tls. One direction alone cannot
// stay: crypto/tls reading must be able to write (alerts, KeyUpdate replies,
// refused renegotiation), and ktls reading must be able to write the same
// through an engine, which crypto/tls's writer cannot share.
func (c *Conn) stayStdlib(tx, rx *dirKeys, txc, rxc selector.Candidate) {
	tx.wipeIfSet()
	rx.wipeIfSet()
	c.rc.stopRecording()
	c.rc.mode = modePassthrough
	c.rc.release()
	// crypto/tls keeps its record layer: its sequence numbers stay its own.
	c.rc.allowWrites()
	reason := describe("tx", txc) + "; " + describe("rx", rxc)
	if txc.Name != rxc.Name {
		reason += "; both stay on stdlib: crypto/tls cannot share a connection with another engine"
	}
	c.setInfo(BackendInfo{TX: backend.Stdlib, RX: backend.Stdlib, Reason: reason})
}

func describe(dir string, c selector.Candidate) string {
	if c.Reason == "" {
		return dir + ": " + c.Name
	}
	return dir + ": " + c.Name + " (" + c.Reason + ")"
}

func (d *dirKeys) wipeIfSet() {
	if d != nil {
		d.wipe()
	}
}

// install puts TX into the first engine that takes it, then RX (now, or after
// the TLS 1.3 client's ticket drain). Keys are zeroed once handed over.
func (c *Conn) install(st tls.ConnectionState, tx, rx *dirKeys, txC, rxC []selector.Candidate) error {
	link := backend.Link{Conn: c.raw}
	var txName, txWhy string
	var passed []string
	for _, cand := range txC {
		if cand.Name == backend.Stdlib {
			break
		}
		s, err := c.engine(cand.Name).NewSealer(link, tx.params)
		if err == nil {
			c.sealer = s
			c.track(s)
			txName, txWhy = reported(s, cand)
			break
		}
		if !errors.Is(err, backend.ErrNotSupported) {
			return fmt.Errorf("ktls: installing %s for tx: %w", cand.Name, err)
		}
		passed = append(passed, cand.Name+": "+whyNot(cand.Name, err))
	}
	if c.sealer == nil {
		if txC[len(txC)-1].Name != backend.Stdlib {
			// Strict: the policy left no fallback.
			return &selector.StrictError{Direction: selector.TX, Forced: txC[0].Name, Reason: strings.Join(passed, "; ")}
		}
		// Nothing was done: the whole connection can still stay.
		c.stayStdlib(tx, rx, selector.Candidate{Name: backend.Stdlib, Reason: "no engine took tx: " + strings.Join(passed, "; ")}, rxC[0])
		return nil
	}
	if len(passed) > 0 {
		txWhy = strings.TrimPrefix(txWhy+"; passed over "+strings.Join(passed, ", "), "; ")
	}
	// RFC 8446 §4.6.1: a TLS 1.3 server's tickets follow its Finished,
	// under its application key. Only crypto/tls can turn them into
	// sessions, so it reads them before RX moves (docs/ARCHITECTURE.md step 7); while
	// it does, a write it attempts is decoded with its stale TX key.
	drain := c.isClient && st.Version == tls.VersionTLS13 && c.wantsTickets()
	if drain {
		c.rc.moveTX(tx.prot, tx.params.Seq)
	} else {
		c.rc.moveTX(nil, 0)
	}
	clear(tx.params.Key)
	clear(tx.params.IV)
	tx.prot = nil
	c.tx = tx
	c.moved = true
	c.rc.stopRecording()
	info := BackendInfo{TX: txName, Reason: describe("tx", selector.Candidate{Name: txName, Reason: txWhy})}

	c.rx, c.rxCands = rx, rxC
	if drain {
		c.rc.drain = &drainState{prot: rx.prot, seq: rx.params.Seq, peek: newPeeker(c.raw)}
		c.rc.mode = modeDrain
		c.rxPending = true
		info.RX = rxC[0].Name
		info.Reason += "; " + describe("rx", rxC[0]) + ", after crypto/tls has read the session tickets"
		c.setInfo(info)
		return nil
	}
	c.setInfo(info)
	c.rc.mode = modePassthrough
	c.rc.release()
	return c.installRXLocked(rx.params.Seq, nil, false)
}

// reported returns the engine a half says it is and the reason: the
// candidate's, unless the half is a backend.Reporter that ended up another
// engine (nic kept in software by the kernel is kernel), whose reason then
// follows the candidate's.
func reported(half any, cand selector.Candidate) (name, reason string) {
	r, ok := half.(backend.Reporter)
	if !ok {
		return cand.Name, cand.Reason
	}
	name, why := r.Engine()
	if name == "" || name == cand.Name {
		return cand.Name, cand.Reason
	}
	if why == "" {
		return name, cand.Reason
	}
	return name, strings.TrimPrefix(cand.Reason+"; "+why, "; ")
}

// wantsTickets reports whether crypto/tls would keep a TLS 1.3 ticket.
func (c *Conn) wantsTickets() bool {
	return c.cfg != nil && c.cfg.ClientSessionCache != nil && !c.cfg.SessionTicketsDisabled
}

// installRXLocked puts RX into the first engine that takes it. TX has moved
// already, so there is no way back to crypto/tls: failing here fails the
// connection. afterDrain says the TLS 1.3 client's ticket drain ended, whose
// reason already names the RX engine expected.
func (c *Conn) installRXLocked(seq uint64, buffered []byte, afterDrain bool) error {
	rx := c.rx
	rx.params.Seq = seq
	link := backend.Link{Conn: c.raw, Buffered: buffered}
	var passed []string
	for _, cand := range c.rxCands {
		if cand.Name == backend.Stdlib {
			break
		}
		o, err := c.engine(cand.Name).NewOpener(link, rx.params)
		if err == nil {
			c.opener = o
			c.track(o)
			name, why := reported(o, cand)
			if len(passed) > 0 {
				why = strings.TrimPrefix(why+"; passed over "+strings.Join(passed, ", "), "; ")
			}
			c.infoMu.Lock()
			if !afterDrain {
				c.info.Reason += "; " + describe("rx", selector.Candidate{Name: name, Reason: why})
			} else if name != c.info.RX {
				c.info.Reason += "; rx: " + name + " (" + why + ")"
			}
			c.info.RX = name
			c.infoMu.Unlock()
			break
		}
		if !errors.Is(err, backend.ErrNotSupported) {
			rx.wipe()
			return fmt.Errorf("ktls: installing %s for rx: %w", cand.Name, err)
		}
		passed = append(passed, cand.Name+": "+whyNot(cand.Name, err))
	}
	clear(rx.params.Key)
	clear(rx.params.IV)
	rx.prot = nil
	c.rxCands = nil
	if c.opener == nil {
		rx.wipe()
		return fmt.Errorf("ktls: no engine took rx after tx moved (%s)", strings.Join(passed, "; "))
	}
	return nil
}

func (c *Conn) setInfo(info BackendInfo) {
	c.infoMu.Lock()
	c.info = info
	c.infoMu.Unlock()
}

// engine returns the wired engine called name.
func (c *Conn) engine(name string) backend.Backend {
	for _, b := range c.opts.Backends {
		if b.Name() == name {
			return b
		}
	}
	return missingEngine(name)
}

// missingEngine stands for a candidate that is not wired in; the selector
// only names wired engines, so this is a safety net that declines politely.
type missingEngine string

func (m missingEngine) Name() string { return string(m) }
func (m missingEngine) NewSealer(backend.Link, backend.Params) (backend.Sealer, error) {
	return nil, fmt.Errorf("ktls: engine %s is not wired in: %w", string(m), backend.ErrNotSupported)
}
func (m missingEngine) NewOpener(backend.Link, backend.Params) (backend.Opener, error) {
	return nil, fmt.Errorf("ktls: engine %s is not wired in: %w", string(m), backend.ErrNotSupported)
}
