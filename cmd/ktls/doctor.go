package main

import (
	"bytes"
	"context"
	"crypto/fips140"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/afalg"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/backend/nicoffload"
	"github.com/ktls-go/ktls/handshake"
	"github.com/ktls-go/ktls/internal/cpufacts"
	"github.com/ktls-go/ktls/selector"
)

// suiteCase is one version and suite the doctor asks about.
type suiteCase struct {
	version, suite uint16
	cipher         string
}

// aeadSuites are the suites every engine but stdlib serves: one per kernel
// cipher and version (the ECDSA twins of the TLS 1.2 ones use the same
// kernel cipher and get the same answers).
var aeadSuites = []suiteCase{
	{tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, "AES-128-GCM"},
	{tls.VersionTLS13, tls.TLS_AES_256_GCM_SHA384, "AES-256-GCM"},
	{tls.VersionTLS13, tls.TLS_CHACHA20_POLY1305_SHA256, "ChaCha20-Poly1305"},
	{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "AES-128-GCM"},
	{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "AES-256-GCM"},
	{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "ChaCha20-Poly1305"},
}

// cbcSuite shows, in the choice table, where a suite without AEAD goes.
var cbcSuite = suiteCase{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, "AES-128-CBC"}

// collect runs every probe and fills the report. A section whose probe
// fails, or even panics, says so in its Error; the others go on.
func collect() Report {
	r := Report{Schema: Schema}
	guard(&r.Host.Error, func() { r.Host = hostReport() })
	// kTLS before AF_ALG and the drivers: the probes load the tls module
	// and instantiate the kernel's AEAD templates where the kernel can,
	// and the driver list is read last, to see them.
	guard(&r.KTLS.Error, func() { r.KTLS = ktlsReport() })
	// AF_ALG's probe compares the kernel's AEAD with Go's, built as
	// crypto/cipher.NewGCM, which GODEBUG=fips140=only refuses; the probe
	// protects no data, and the report says what the host offers whatever
	// the mode (the FIPS section says the mode keeps every engine out).
	guard(&r.AFALG.Error, func() { fips140.WithoutEnforcement(func() { r.AFALG = afalgReport() }) })
	guard(&r.NIC.Error, func() { r.NIC = nicReport() })
	guard(&r.Handshake.Error, func() { r.Handshake = handshakeReport(handshake.Probe) })
	var cpuErr string
	guard(&cpuErr, func() { r.CPU = cpuReport() })
	if cpuErr != "" {
		r.CPU.Note = cpuErr
	}
	guard(&r.FIPS.Error, func() { r.FIPS = fipsReport(os.Getenv) })
	guard(&r.Policy.Error, func() { r.Policy = policyReport(os.Getenv) })
	var autoErr string
	guard(&autoErr, func() { r.Auto = withoutEnv(choices) })
	if autoErr != "" {
		r.Auto = append(r.Auto, Choice{Error: autoErr})
	}
	if r.Policy.Backend != "" || r.Policy.Strict != "" {
		var effErr string
		guard(&effErr, func() { r.Effective = choices() })
		if effErr != "" {
			r.Effective = append(r.Effective, Choice{Error: effErr})
		}
	}
	return r
}

// guard runs f and turns a panic into *errField: the doctor's one promise is
// to tell what it found, and a bug in one probe must not hide the others.
func guard(errField *string, f func()) {
	defer func() {
		if p := recover(); p != nil {
			*errField = fmt.Sprintf("internal error (please report): %v", p)
		}
	}()
	f()
}

func hostReport() HostReport {
	h := HostReport{OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	var err error
	h.Kernel, h.Machine, err = uname()
	if err != nil {
		h.Error = err.Error()
	}
	return h
}

// probeStatus is engineStatus for a kernel probe.
func probeStatus(err error) Status { return engineStatus(backend.Kernel, err) }

// engineStatus turns a probe's three outcomes into a Status: nil; a
// refusal, *backend.NotSupportedError (conclusive); or another error
// (inconclusive). The reason is without engine's name, which the report
// says already (see reason).
func engineStatus(engine string, err error) Status {
	if err == nil {
		return Status{State: stateAvailable}
	}
	if _, ok := errors.AsType[*backend.NotSupportedError](err); ok {
		return Status{State: stateUnavailable, Reason: reason(engine, err)}
	}
	return Status{State: stateError, Reason: reason(engine, err)}
}

// reason is an engine's error without the engine's name: a refusal's
// Reason, or the text of another error, whose name in front is engine's
// (house rule 8 of docs/ARCHITECTURE.md: errors are prefixed with the
// package name).
func reason(engine string, err error) string {
	if ns, ok := errors.AsType[*backend.NotSupportedError](err); ok {
		return ns.Reason
	}
	return strings.TrimPrefix(err.Error(), engine+": ")
}

func ktlsReport() KTLSReport {
	var k KTLSReport
	k.ULP = probeULP()
	for _, s := range aeadSuites {
		k.Suites = append(k.Suites, KTLSSuite{
			Version: tls.VersionName(s.version),
			Cipher:  s.cipher,
			Suite:   tls.CipherSuiteName(s.suite),
			SuiteID: s.suite,
			TX:      probeStatus(kernel.Probe(true, s.version, s.suite)),
			RX:      probeStatus(kernel.Probe(false, s.version, s.suite)),
		})
	}
	k.Rekey = probeStatus(kernel.ProbeRekey())
	if k.Rekey.State == stateAvailable {
		k.Rekey.Reason = "the kernel takes new TLS 1.3 keys (KeyUpdate)"
	}
	k.AvailableULP = availableULP()
	k.Diagnosis = ktlsDiagnosisHere(k.ULP)
	return k
}

func afalgReport() AFALGReport {
	var a AFALGReport
	a.Socket = afalgStatus(afalg.ProbeSocket())
	if n, ok, err := afalg.Restriction(); err != nil {
		a.RestrictMeaning = reason(backend.AFALG, err)
	} else if ok {
		a.Restrict, a.RestrictMeaning = &n, afalg.RestrictMeaning(n)
	}
	for _, n := range afalg.AEADs {
		ar := AEADReport{Name: n.Name, Serves: n.Serves, Bind: Status{State: stateNotChecked, Reason: "no AF_ALG socket"}}
		if a.Socket.State == stateAvailable {
			// The engine's own probe (cached): bind, key, and one
			// record sealed and opened, compared with Go's AEAD.
			ar.Bind = afalgStatus(afalg.Probe(n.Name))
			if ar.Bind.State == stateAvailable {
				ar.Bind.Reason = "bound an AF_ALG aead socket, set a key, sealed and opened a record as Go's own AEAD does"
			}
		}
		a.AEADs = append(a.AEADs, ar)
	}
	reg, err := afalg.ReadRegistry()
	a.DriverSource, a.DriverSourceNote = reg.Source, reg.Note
	if err != nil {
		a.Error = "reading the drivers: " + reason(backend.AFALG, err)
	}
	for k := range a.AEADs {
		for i, impl := range reg.Implementations(a.AEADs[k].Name) {
			d := driverOf(impl)
			if i == 0 {
				a.AEADs[k].Driver = &d
			} else {
				a.AEADs[k].Others = append(a.AEADs[k].Others, d)
			}
		}
	}
	// What the engine's Hardware says, which is what decides whether the
	// automatic choice may take it.
	acc := afalg.New().(backend.Accelerator)
	var hw []string
	for _, c := range []suiteCase{aeadSuites[0], aeadSuites[2]} {
		ok, what := acc.Hardware(c.version, c.suite)
		if ok {
			what = "a hardware engine serves it, " + what
		} else {
			what = "no hardware engine: " + what
		}
		hw = append(hw, c.cipher+": "+what)
	}
	a.Engine = "KTLS_BACKEND=afalg forces it; the automatic choice takes it only where a hardware engine serves the suite, " +
		"kTLS is missing and the CPU has no AES instructions (AF_ALG is deprecated upstream, and slower than " +
		"in-process AES on CPUs with AES instructions). Here, " + strings.Join(hw, "; ")
	return a
}

func nicReport() NICReport {
	n := NICReport{
		Source: nicSource,
		Engine: "nic installs kTLS for TLS 1.2 AES-GCM where the egress device has the feature on, then asks the " +
			"kernel per socket whether the device took it (sock_diag TLS_INFO_TXCONF/RXCONF, else " +
			"/proc/net/tls_stat); a socket kept in software reports kernel, with the reason",
	}
	// What the engine's Checker says for the suite devices take: the
	// selector tries nic only when it says yes.
	nic := nicoffload.New(nicoffload.Options{}).(backend.Checker)
	for _, d := range []struct {
		name string
		tx   bool
	}{{"tx", true}, {"rx", false}} {
		if err := nic.Check(d.tx, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); err != nil {
			n.Engine += "; " + d.name + " here: not tried (" + reason(backend.NIC, err) + ")"
		} else {
			n.Engine += "; " + d.name + " here: tried first, verified per connection"
		}
	}
	ifs, err := nicInterfaces()
	n.Interfaces = ifs
	if err != nil {
		n.Error = err.Error()
	}
	if st := tlsStat(); st != nil {
		n.TLSStat = make(map[string]int64)
		for k, v := range st {
			if strings.Contains(k, "Device") {
				n.TLSStat[k] = v
			}
		}
	}
	return n
}

func cpuReport() CPUReport {
	f := cpufacts.Detect()
	c := CPUReport{Arch: f.Arch, AESGCM: f.AESGCM, GoAESGCM: f.GoAESGCM}
	for _, x := range cpufacts.Features() {
		c.Features = append(c.Features, CPUFeature{Name: x.Name, Present: x.Present})
	}
	switch {
	case c.Features == nil:
		c.Note = "ktls reads no crypto instructions on " + f.Arch + " and counts none"
	case f.AESGCM && !f.GoAESGCM:
		c.Note = "Go's AES-GCM does not use the AES instructions here (no assembly for " + f.Arch + ", or GODEBUG=cpu.aes=off): auto prefers the kernel's AES-GCM"
	}
	return c
}

// fipsReport is the doctor's FIPS 140-3 mode, from crypto/fips140 (the
// mode is set at start-up and "can't be changed after the program has
// started"), with where it came from: the GOFIPS140 build setting and the
// environment's GODEBUG (https://go.dev/doc/security/fips140, "The fips140
// GODEBUG option": it defaults to off unless GOFIPS140 is set at build time).
func fipsReport(getenv func(string) string) FIPSReport {
	f := FIPSReport{Mode: "off", Module: fips140.Version(), GODEBUG: godebugSetting(getenv("GODEBUG"), "fips140")}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOFIPS140" {
				f.GOFIPS140 = s.Value
			}
		}
	}
	switch {
	case fips140.Enabled() && fips140.Enforced():
		f.Mode = "only"
	case fips140.Enabled():
		f.Mode = "on"
	}
	if f.Mode == "off" {
		f.Meaning = "engines are chosen as below; with GODEBUG=fips140=on or only, or built with GOFIPS140, " +
			"every connection would stay on stdlib, crypto/tls's own record layer"
	} else {
		f.Meaning = "only crypto/tls's record layer is inside the Go Cryptographic Module: every connection stays on " +
			"stdlib; auto chooses it, and a forced engine falls back to it, or fails the handshake with " +
			"*ktls.StrictError under KTLS_STRICT"
		if f.Mode == "only" {
			f.Meaning += "; fips140=only also makes non-approved algorithms fail (for testing, not production, says the Go documentation)"
		}
	}
	f.Meaning += "; this is the doctor's own mode: a program gets the same from the same GODEBUG or GOFIPS140"
	return f
}

// godebugSetting returns the value of key in a GODEBUG string
// ("k=v,k2=v2"), the last one where it is repeated, as the runtime reads it;
// "" where it is absent.
func godebugSetting(godebug, key string) string {
	var v string
	for kv := range strings.SplitSeq(godebug, ",") {
		if k, val, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k == key {
			v = val
		}
	}
	return v
}

// policyReport is what KTLS_BACKEND and KTLS_STRICT make of a program
// without options, by the selector's own Resolve.
func policyReport(getenv func(string) string) PolicyReport {
	p := PolicyReport{
		Backend: strings.TrimSpace(getenv(selector.EnvBackend)),
		Strict:  strings.TrimSpace(getenv(selector.EnvStrict)),
	}
	pol, err := selector.Resolve(selector.Spec{}, false, getenv)
	if err != nil {
		p.Error = err.Error()
		p.Meaning = "every Dial and Listen fails with this error until the variable is fixed or unset"
		return p
	}
	p.Spec, p.StrictMode, p.Source = pol.Spec.String(), pol.Strict, pol.Source
	var parts []string
	for _, d := range []selector.Direction{selector.TX, selector.RX} {
		if name := pol.Spec.For(d); name == selector.Auto {
			parts = append(parts, d.String()+": automatic")
		} else {
			parts = append(parts, d.String()+": forced to "+name)
		}
	}
	p.Meaning = strings.Join(parts, ", ")
	if pol.Spec == (selector.Spec{}) {
		p.Meaning = "automatic for both directions: the best engine each direction can get"
	} else {
		if pol.Strict {
			p.Meaning += "; a forced engine that cannot serve fails the handshake with *ktls.StrictError (KTLS_STRICT)"
		} else {
			p.Meaning += "; a forced engine that cannot serve falls back to the next, with the reason in Backend().Reason"
		}
		p.Meaning += "; the environment wins over the program's ktls.WithBackend"
	}
	if pol.Spec == (selector.Spec{}) && pol.Strict {
		p.Meaning += "; KTLS_STRICT applies to engines a program forces with ktls.WithBackend"
	}
	return p
}

// withoutEnv runs f with KTLS_BACKEND and KTLS_STRICT unset, and sets them
// back. ktls reads them from the environment (and they win over any
// option), so the automatic choice under a forcing environment can only be
// shown so. The doctor is a process of its own, and nothing else runs in
// it meanwhile.
func withoutEnv[T any](f func() T) T {
	type saved struct {
		name, value string
		set         bool
	}
	var env []saved
	for _, name := range []string{selector.EnvBackend, selector.EnvStrict} {
		v, ok := os.LookupEnv(name)
		env = append(env, saved{name, v, ok})
		if ok {
			os.Unsetenv(name)
		}
	}
	defer func() {
		for _, e := range env {
			if e.set {
				os.Setenv(e.name, e.value)
			}
		}
	}()
	return f()
}

// choices asks ktls.Candidates for every suite and direction.
func choices() []Choice {
	var out []Choice
	for _, s := range append(aeadSuites[:len(aeadSuites):len(aeadSuites)], cbcSuite) {
		for _, d := range []selector.Direction{selector.TX, selector.RX} {
			c := Choice{
				Version:   tls.VersionName(s.version),
				Cipher:    s.cipher,
				Suite:     tls.CipherSuiteName(s.suite),
				SuiteID:   s.suite,
				Direction: d.String(),
			}
			cands, err := ktls.Candidates(s.version, s.suite, d)
			if err != nil {
				c.Error = err.Error()
			}
			for _, cand := range cands {
				c.Candidates = append(c.Candidates, Candidate{Engine: cand.Name, Reason: cand.Reason})
			}
			if len(c.Candidates) > 0 {
				c.Engine = c.Candidates[0].Engine
			}
			out = append(out, c)
		}
	}
	return out
}

// handshakeReport asks probe (handshake.Probe) about the kernel's handshake
// upcall.
func handshakeReport(probe func() (handshake.Info, error)) HandshakeReport {
	info, err := probe()
	if err != nil {
		st := Status{State: stateError, Reason: err.Error()}
		if errors.Is(err, errors.ErrUnsupported) {
			st.State = stateUnavailable
		}
		return HandshakeReport{Family: st, Agents: Status{State: stateNotChecked, Reason: "no handshake family"}}
	}
	if !info.Family {
		return HandshakeReport{
			Family: Status{State: stateUnavailable, Reason: handshake.ErrNoFamily.Error()},
			Agents: Status{State: stateNotChecked, Reason: "no handshake family"},
		}
	}
	r := HandshakeReport{Family: Status{State: stateAvailable, Reason: fmt.Sprintf("version %d, group %q id %d", info.Version, handshake.GroupName, info.Group)}, Version: info.Version}
	switch {
	case !info.ListenersKnown:
		r.Agents = Status{State: stateNotChecked, Reason: "/proc/net/netlink shows groups 1 to 32 only, or could not be read"}
	case len(info.Listeners) == 0:
		r.Agents = Status{State: stateUnavailable, Reason: "no socket in the group: consumers' handshakes fail with ESRCH until an agent (ktls tlshd, or tlshd) runs"}
	default:
		r.AgentPorts = info.Listeners
		r.Agents = Status{State: stateAvailable, Reason: fmt.Sprintf("%d socket(s) in the group, netlink port(s) %v", len(info.Listeners), info.Listeners)}
	}
	return r
}

// statsVar is the expvar name package ktlsexpvar publishes the counters
// under.
const statsVar = "ktls"

// fetchStats reads a running program's counters from its expvar endpoint
// (the JSON object /debug/vars serves): the "ktls" variable, as
// ktls.Counters, and as the program wrote it. An address without a scheme
// is taken as http://ADDR, and without a path as /debug/vars.
func fetchStats(ctx context.Context, url string) (ktls.Counters, json.RawMessage, error) {
	if !strings.Contains(url, "://") {
		url = "http://" + url
		if !strings.Contains(strings.TrimPrefix(url, "http://"), "/") {
			url += "/debug/vars"
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ktls.Counters{}, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ktls.Counters{}, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ktls.Counters{}, nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var vars map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&vars); err != nil {
		return ktls.Counters{}, nil, fmt.Errorf("GET %s: not an expvar endpoint (a JSON object of variables): %w", url, err)
	}
	raw, ok := vars[statsVar]
	if !ok {
		return ktls.Counters{}, nil, fmt.Errorf("%s has no %q variable: the program must import github.com/ktls-go/ktls/ktlsexpvar, which publishes ktls.Stats there (%d other variables)", url, statsVar, len(vars))
	}
	var c ktls.Counters
	if err := json.Unmarshal(raw, &c); err != nil {
		return ktls.Counters{}, nil, fmt.Errorf("%s: the %q variable is not ktls's counters: %w", url, statsVar, err)
	}
	return c, raw, nil
}

// writeStats writes the counters for a person: one block per kind, blank
// lines between them (which end tabwriter's columns).
func writeStats(w io.Writer, source string, c ktls.Counters) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	engines := func(e ktls.EngineCounters) [5]uint64 {
		return [5]uint64{e.Kernel, e.NIC, e.AFALG, e.Userspace, e.Stdlib}
	}

	p("ktls counters of %s (since the program started; README, \"Counters\", says what each means)", source)
	p("")
	p("Engines\ttx connections\trx connections\tbytes sent\tbytes received")
	txc, rxc, txb, rxb := engines(c.TX.Connections), engines(c.RX.Connections), engines(c.TX.Bytes), engines(c.RX.Bytes)
	for i, n := range []string{"kernel", "nic", "afalg", "userspace", "stdlib"} {
		p("  %s\t%d\t%d\t%s\t%s", n, txc[i], rxc[i], byteCount(txb[i]), byteCount(rxb[i]))
	}
	p("")
	p("Zero-copy\tbytes")
	p("  sendfile (ReadFrom a file)\t%s", byteCount(c.SendfileBytes))
	p("  splice out of kTLS RX (WriteTo)\t%s", byteCount(c.SpliceReadBytes))
	p("  splice into kTLS TX (ReadFrom a socket)\t%s", byteCount(c.SpliceWriteBytes))
	p("")
	p("TLS 1.3 KeyUpdates\tsent %d, received %d", c.KeyUpdatesSent, c.KeyUpdatesReceived)
	p("Handshake failures\t%d", c.HandshakeFailures)
	p("")
	p("Fallbacks, by class\ttx\trx")
	f := func(x ktls.FallbackCounters) []uint64 {
		return []uint64{x.FIPS, x.Suite, x.Uncertain, x.Paired, x.Wrapped, x.Forced, x.Refused, x.Unavailable, x.Strict}
	}
	tx, rx := f(c.Fallbacks.TX), f(c.Fallbacks.RX)
	for i, n := range []string{"fips", "suite", "uncertain", "paired", "wrapped", "forced", "refused", "unavailable", "strict"} {
		p("  %s\t%d\t%d", n, tx[i], rx[i])
	}
	return tw.Flush()
}

// byteCount is n in bytes, with a binary unit where it helps.
func byteCount(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%d (%.1f %ciB)", n, float64(n)/float64(div), "KMGTPE"[exp])
}

// doctorStats is `ktls doctor -stats URL`.
func doctorStats(url string, asJSON bool, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, raw, err := fetchStats(ctx, url)
	if err != nil {
		fmt.Fprintf(stderr, "ktls doctor: %v\n", err)
		return 1
	}
	if asJSON {
		var buf bytes.Buffer
		if err = json.Indent(&buf, raw, "", "  "); err == nil {
			buf.WriteByte('\n')
			_, err = buf.WriteTo(stdout)
		}
	} else {
		err = writeStats(stdout, url, c)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ktls doctor: writing the counters: %v\n", err)
		return 1
	}
	return 0
}
