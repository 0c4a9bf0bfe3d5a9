package ktls

import "github.com/ktls-go/ktls/selector"

// Candidates returns the engines that a connection made with opts would try
// for direction d of a TLS version and crypto/tls cipher suite, best first,
// each with its reason: the same policy (opts, KTLS_BACKEND, KTLS_STRICT) over
// the same facts (the wired engines' cached probes, the CPU's AES
// instructions, FIPS 140-3 mode) that a connection's handoff uses, for a
// connection whose keys and sequence numbers are known. In FIPS 140-3 mode
// (crypto/fips140.Enabled) that is stdlib alone, with the reason, for every
// version, suite and direction, or a *StrictError where an engine is forced in
// strict mode, as a connection's handoff decides. The first candidate is what such a
// connection gets unless its install is refused at run time; Conn.Backend
// tells what a real connection got.
//
// It is here so that a program, and the ktls doctor command, can say what the
// automatic choice is on this host before any connection, with the reasons,
// by the code that makes the choice rather than by a copy of it. The first
// call for a version and suite runs the kernel engine's probe (a loopback
// pair, well under a millisecond), as a connection's handshake would.
//
// The error is a malformed KTLS_BACKEND, KTLS_STRICT or WithBackend, as
// Dial and Listen would return it, or a *StrictError when a forced engine
// cannot serve in strict mode.
func Candidates(version, suite uint16, d selector.Direction, opts ...Option) ([]selector.Candidate, error) {
	o := connOptions(opts)
	if o.PolicyErr != nil {
		return nil, o.PolicyErr
	}
	f := o.Facts(d, version, suite, "")
	return o.Policy.Candidates(f)
}
