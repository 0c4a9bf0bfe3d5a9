// Package selector decides which engine protects each direction of a
// connection. It is pure policy: facts in, an ordered list of candidates per
// direction out (DESIGN.md, "One connection, step by step", step 5 "Select").
//
// Its room (DESIGN.md, "Rooms") holds no syscalls, no probes and no state:
// the caller learns the facts (the negotiated version and suite, whether keys
// and sequence numbers are known, each engine's cached probe result, the CPU's
// AES instructions) and passes them in; the selector only orders them. That is
// why every rule here is a table test and nothing here needs a kernel.
//
// Three steps, each a function of its inputs only:
//
//   - [ParseSpec] reads the grammar of KTLS_BACKEND and of the program's
//     backend option (DESIGN.md, "Forcing a backend").
//   - [Resolve] merges the program's settings with the environment, the
//     environment winning when set, so that an operator can force a backend
//     without a rebuild.
//   - [Policy.Candidates] turns the facts of one direction into the engines to
//     try, in order; the caller installs the first one that takes the
//     direction (DESIGN.md step 6) and reports the reasons with [Describe].
package selector

import "fmt"

// Direction is one direction of a connection's record layer. The record
// layer is split by direction as package backend splits Sealer from Opener,
// and each direction is selected on its own.
type Direction int

const (
	TX Direction = iota // records we send (a backend.Sealer)
	RX                  // records we receive (a backend.Opener)
)

// String returns "tx" or "rx", the spelling of the KTLS_BACKEND keys.
func (d Direction) String() string {
	switch d {
	case TX:
		return "tx"
	case RX:
		return "rx"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}
