package selector

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ktls-go/ktls/backend"
)

// Auto is the spelling of the automatic choice in a spec.
const Auto = "auto"

// accepted is appended to every parse error, so that whoever typed a bad
// value reads what would have been right. It is spelled out rather than built
// from backend.Names (a mutable variable): TestAcceptedNamesEveryEngine fails
// when package backend gains an engine that the grammar does not know.
const accepted = "accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME"

// Spec is the engine a user forces on each direction of a connection
// (docs/ARCHITECTURE.md, "Forcing an engine").
//
// Each field is "" or "auto" for the automatic choice, or an engine name
// (backend.Kernel, backend.NIC, backend.AFALG, backend.Userspace,
// backend.Stdlib). The zero value is automatic for both directions.
// ParseSpec and Resolve return the canonical form, with "" for automatic, so
// that ParseSpec("auto") == Spec{} and specs compare with ==.
type Spec struct {
	TX, RX string
}

// ParseSpec parses the grammar shared by KTLS_BACKEND and the program's
// backend option:
//
//	""  or  auto                  automatic for both directions
//	NAME                          NAME for both directions
//	tx=NAME,rx=NAME               per direction
//
// NAME is auto or one of kernel, nic, afalg, userspace, stdlib. In the per
// direction form either element may be omitted (it means auto) and the order
// is free; spaces around tokens are tolerated. Names and keys are
// case-sensitive and lowercase, as the backend constants spell them: "Kernel"
// is an error rather than a guess, because a forced engine is an operator's
// explicit word. Unknown keys, repeated keys, empty elements and a name mixed
// with key=value elements are errors; every error names the accepted forms.
func ParseSpec(s string) (Spec, error) {
	spec, err := parseSpec(s)
	if err != nil {
		return Spec{}, fmt.Errorf("selector: backend spec %q: %w", s, err)
	}
	return spec, nil
}

// parseSpec is ParseSpec without the prefix, so that Resolve can say where the
// value came from (KTLS_BACKEND=...).
func parseSpec(s string) (Spec, error) {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "=,") {
		name, err := parseName(s)
		if err != nil {
			return Spec{}, err
		}
		return Spec{TX: name, RX: name}, nil
	}
	var spec Spec
	var seenTX, seenRX bool
	for elem := range strings.SplitSeq(s, ",") {
		elem = strings.TrimSpace(elem)
		if elem == "" {
			return Spec{}, specError("empty element")
		}
		key, value, ok := strings.Cut(elem, "=")
		if !ok {
			// "kernel,rx=userspace": a bare name has no direction here.
			return Spec{}, specError(fmt.Sprintf("element %q is not tx=NAME or rx=NAME", elem))
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if value == "" {
			// "Omitted means auto" is about leaving the element out; "tx="
			// is more likely a shell variable that expanded to nothing.
			return Spec{}, specError(fmt.Sprintf("element %q has no name", elem))
		}
		name, err := parseName(value)
		if err != nil {
			return Spec{}, err
		}
		switch key {
		case "tx":
			if seenTX {
				return Spec{}, specError(`duplicate key "tx"`)
			}
			seenTX, spec.TX = true, name
		case "rx":
			if seenRX {
				return Spec{}, specError(`duplicate key "rx"`)
			}
			seenRX, spec.RX = true, name
		default:
			return Spec{}, specError(fmt.Sprintf("unknown key %q", key))
		}
	}
	return spec, nil
}

// parseName returns the canonical form of one NAME: "" for auto, else the
// engine name.
func parseName(name string) (string, error) {
	switch {
	case name == "" || name == Auto:
		return "", nil
	case isEngine(name):
		return name, nil
	case isEngine(strings.ToLower(name)) || strings.ToLower(name) == Auto:
		return "", fmt.Errorf("unknown backend %q (names are lowercase; %s)", name, accepted)
	}
	return "", specError(fmt.Sprintf("unknown backend %q", name))
}

// specError adds the accepted forms to a parse error.
func specError(msg string) error {
	return errors.New(msg + " (" + accepted + ")")
}

// isEngine reports whether name is one of package backend's engine names.
// A switch on the constants rather than a search of backend.Names, which any
// importer could modify.
func isEngine(name string) bool {
	switch name {
	case backend.Kernel, backend.NIC, backend.AFALG, backend.Userspace, backend.Stdlib:
		return true
	}
	return false
}

// validate checks a Spec built by hand rather than by ParseSpec, and returns
// its canonical form.
func (s Spec) validate() (Spec, error) {
	tx, err := validName(s.TX)
	if err != nil {
		return Spec{}, fmt.Errorf("tx: %w", err)
	}
	rx, err := validName(s.RX)
	if err != nil {
		return Spec{}, fmt.Errorf("rx: %w", err)
	}
	return Spec{TX: tx, RX: rx}, nil
}

// validName is parseName without the tolerance for spaces: a field of a Spec
// must be exactly "", "auto" or a name.
func validName(name string) (string, error) {
	if name == "" || name == Auto {
		return "", nil
	}
	if isEngine(name) {
		return name, nil
	}
	return "", specError(fmt.Sprintf("unknown backend %q", name))
}

// For returns what s asks for on direction d: "auto" or an engine name. Any
// d other than RX reads the TX field; Candidates rejects such a d first.
func (s Spec) For(d Direction) string {
	name := s.TX
	if d == RX {
		name = s.RX
	}
	if name == "" {
		return Auto
	}
	return name
}

// String returns s in the grammar of ParseSpec, in its shortest form for one
// name ("auto", "kernel") and with both keys otherwise
// ("tx=kernel,rx=auto"), so that a reader sees both directions. For a valid
// spec, ParseSpec(s.String()) returns s in canonical form.
func (s Spec) String() string {
	tx, rx := s.For(TX), s.For(RX)
	if tx == rx {
		return tx
	}
	return "tx=" + tx + ",rx=" + rx
}
