// Package selector decides which engine protects each direction of a
// connection. It is pure policy: facts in, an ordered list of candidates per
// direction out (docs/ARCHITECTURE.md, "One connection, step by step", step 5 "Select").
//
// Its room (docs/ARCHITECTURE.md, "Rooms") holds no syscalls, no probes and no state:
// the caller learns the facts (the negotiated version and suite, whether keys
// and sequence numbers are known, each engine's cached probe result, the CPU's
// AES instructions) and passes them in; the selector only orders them. That is
// why every rule here is a table test and nothing here needs a kernel.
//
// # The automatic order
//
// Where nothing is forced, each direction gets the first engine in this
// order that is wired in and whose cached probe says it can serve (nic and
// kernel each verify per socket, so the next one is tried when an install
// refuses); stdlib always ends the list. CBC suites, versions before TLS 1.2
// and connections whose keys or sequence numbers are not known with
// certainty stay on stdlib whatever the table says, and so does every
// connection of a program in FIPS 140-3 mode (Facts.FIPS, from
// crypto/fips140.Enabled): only crypto/tls's own record layer is inside the
// Go Cryptographic Module (https://go.dev/doc/security/fips140). There a
// forced engine falls back to stdlib, or is a *StrictError in strict mode,
// as for any other fact that rules it out.
//
//	suite             direction  CPU (Facts.CPU)                        order
//	AES-GCM           tx, rx     any                                    nic, kernel, [afalg], userspace
//	ChaCha20-Poly1305 tx         any                                    nic, kernel, [afalg], userspace
//	ChaCha20-Poly1305 rx         any                                    nic, [afalg], userspace, kernel
//
//	[afalg]: only where its engine reports a hardware crypto engine for the
//	suite (backend.Accelerator), kTLS cannot serve the direction, and, for
//	AES-GCM, Go's AES-GCM runs without AES instructions (GoAESGCM false).
//
// Why (the figures are in benchmarks/RESULTS.md, with the commands):
//
//   - nic takes the crypto off the CPU, and the kernel keeps records out of
//     user space and alone sends files without copying them. Sending
//     AES-GCM, the kernel was ahead in the amd64 guest's run; in the noisier
//     arm64 run, and sending ChaCha20-Poly1305, the two were mixed, and the
//     kernel stays first for sendfile's sake.
//   - Receiving ChaCha20-Poly1305, userspace read faster than the kernel in
//     both architectures' runs, so it comes first there.
//   - The CPU decides no order between kernel and userspace: where the CPU
//     has AES-GCM instructions the kernel uses them (aesni_intel, aes-ce and
//     ghash-ce), and where it has none the kernel still comes first: its
//     arm64 AES is bit-sliced NEON, constant-time, while Go's generic AES is
//     table-based. The CPU decides afalg, and the reasons say what it means
//     where Go's AES-GCM runs without the instructions the kernel's uses
//     (GOARCH=386, GODEBUG=cpu.aes=off) or the CPU has none.
//   - afalg: AF_ALG is deprecated upstream, costs a system call and a copy
//     per record, loses to in-process AES on any CPU with AES instructions,
//     and had a local-root bug through splice (CVE-2026-31431). It is worth
//     it only for a hardware engine where kTLS is missing; forcing it is
//     always possible.
//
// Three steps, each a function of its inputs only:
//
//   - [ParseSpec] reads the grammar of KTLS_BACKEND and of the program's
//     backend option (docs/ARCHITECTURE.md, "Forcing an engine").
//   - [Resolve] merges the program's settings with the environment, the
//     environment winning when set, so that an operator can force a backend
//     without a rebuild.
//   - [Policy.Candidates] turns the facts of one direction into the engines to
//     try, in order; the caller installs the first one that takes the
//     direction (docs/ARCHITECTURE.md step 6) and reports the reasons.
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
