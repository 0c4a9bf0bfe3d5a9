package selector

import (
	"fmt"
	"strings"
)

// The environment variables an operator sets to override the program
// (docs/ARCHITECTURE.md, "Forcing an engine").
const (
	EnvBackend = "KTLS_BACKEND" // a spec in the grammar of ParseSpec
	EnvStrict  = "KTLS_STRICT"  // 1, 0, true or false
)

// Policy is what one connection asks of the selector, resolved by Resolve.
type Policy struct {
	// Spec is the engine forced on each direction, or automatic.
	Spec Spec
	// Strict turns a forced engine that cannot serve into a *StrictError
	// instead of a fallback.
	Strict bool
	// Source says where Spec came from: "KTLS_BACKEND" (the environment),
	// "WithBackend" (the program's option) or "default" (neither forced
	// anything).
	Source string
}

// Resolve merges the program's settings with the environment; getenv is
// os.Getenv in production and a map lookup in tests.
//
// The environment wins when it is set, so that an operator can force a
// backend, or lift one the program forced (KTLS_BACKEND=auto), or lift the
// program's strictness (KTLS_STRICT=0), without a rebuild (docs/ARCHITECTURE.md,
// "Forcing an engine"). A variable is unset when it is empty or only spaces;
// os.Getenv cannot tell an empty variable from a missing one. A variable that
// is set but invalid is an error and is never ignored: an operator who
// mistyped KTLS_BACKEND=kernal must not silently get automatic selection. An
// invalid program Spec (one built by hand rather than by ParseSpec) is an
// error too, even when the environment overrides it, so that the bug shows up
// the same way on every host.
//
// Resolve keeps no state: it reads the environment on every call and costs a
// few string comparisons, so the caller may call it per Dial and Listen.
func Resolve(program Spec, programStrict bool, getenv func(string) string) (Policy, error) {
	spec, err := program.validate()
	if err != nil {
		return Policy{}, fmt.Errorf("selector: WithBackend: %w", err)
	}
	p := Policy{Spec: spec, Strict: programStrict, Source: "default"}
	if spec != (Spec{}) {
		p.Source = "WithBackend"
	}
	if v := getenv(EnvBackend); strings.TrimSpace(v) != "" {
		spec, err := parseSpec(v)
		if err != nil {
			return Policy{}, fmt.Errorf("selector: %s=%q: %w", EnvBackend, v, err)
		}
		p.Spec, p.Source = spec, EnvBackend
	}
	if v := getenv(EnvStrict); strings.TrimSpace(v) != "" {
		switch strings.TrimSpace(v) {
		case "1", "true":
			p.Strict = true
		case "0", "false":
			p.Strict = false
		default:
			// Only the four spellings the documentation gives: "yes" or
			// "on" might read as true to one operator and as a typo to
			// the next.
			return Policy{}, fmt.Errorf("selector: %s=%q: not a boolean (accepted: 1, 0, true, false, or empty for unset)", EnvStrict, v)
		}
	}
	return p, nil
}
