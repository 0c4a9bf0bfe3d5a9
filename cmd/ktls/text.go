package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// writeText writes the report for a person: one section per engine, the
// facts aligned, every "no" with its reason.
func writeText(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }

	p("ktls doctor: what this host offers ktls's engines")
	p("")
	p("Host")
	p("  OS/arch\t%s/%s", r.Host.OS, r.Host.Arch)
	kernel := r.Host.Kernel
	if kernel == "" {
		kernel = "(none)"
	} else if r.Host.Machine != "" {
		kernel += " (" + r.Host.Machine + ", uname)"
	}
	p("  kernel\t%s", kernel)
	p("  Go\t%s", r.Host.Go)
	sectionError(p, r.Host.Error)

	p("")
	p("Kernel TLS (engine %q)", "kernel")
	p("  TLS ULP\t%s", statusText(r.KTLS.ULP))
	if r.KTLS.AvailableULP != nil {
		ulps := strings.Join(r.KTLS.AvailableULP, " ")
		if ulps == "" {
			ulps = "(none)"
		}
		p("  tcp_available_ulp\t%s", ulps)
	}
	p("  suites\tTX\tRX\t(kernel.Probe: a key installed on a loopback pair, a record through)")
	notes := &footnotes{}
	for _, s := range r.KTLS.Suites {
		p("    %s %s\t%s\t%s", s.Version, s.Cipher, notes.cell(s.TX), notes.cell(s.RX))
	}
	notes.write(p)
	p("  rekey (KeyUpdate)\t%s", statusText(r.KTLS.Rekey))
	writeDiagnosis(p, r.KTLS.Diagnosis)
	sectionError(p, r.KTLS.Error)

	p("")
	p("AF_ALG, the kernel crypto API (engine %q)", "afalg")
	p("  engine\t%s", r.AFALG.Engine)
	p("  socket(AF_ALG)\t%s", statusText(r.AFALG.Socket))
	if r.AFALG.Restrict != nil {
		p("  af_alg_restrict\t%s", r.AFALG.RestrictMeaning)
	} else {
		p("  af_alg_restrict\tabsent (before Linux 7.3, or af_alg not loaded): no restriction")
	}
	for _, a := range r.AFALG.AEADs {
		p("  %s\tserves %s", a.Name, a.Serves)
		p("    AF_ALG bind\t%s", statusText(a.Bind))
		if a.Driver == nil {
			p("    driver\tnone registered")
		} else {
			p("    driver\t%s", driverText(*a.Driver))
			p("    decided by\t%s", a.Driver.Signal)
		}
		for _, o := range a.Others {
			p("    also\t%s", driverText(o))
		}
	}
	src := r.AFALG.DriverSource
	if r.AFALG.DriverSourceNote != "" {
		src += " (" + r.AFALG.DriverSourceNote + ")"
	}
	p("  drivers read from\t%s", src)
	sectionError(p, r.AFALG.Error)

	p("")
	p("NIC offload (engine %q)", "nic")
	p("  engine\t%s", r.NIC.Engine)
	p("  read with\t%s", r.NIC.Source)
	for _, i := range r.NIC.Interfaces {
		var flags []string
		if i.Up {
			flags = append(flags, "up")
		} else {
			flags = append(flags, "down")
		}
		if i.Loopback {
			flags = append(flags, "loopback")
		}
		summary := i.Summary
		if i.Error != "" {
			summary += ": " + i.Error
		}
		p("  %s\t%s\t%s", i.Name, strings.Join(flags, ", "), summary)
	}
	if r.NIC.TLSStat != nil {
		var parts []string
		for _, k := range []string{"TlsCurrTxDevice", "TlsCurrRxDevice", "TlsTxDevice", "TlsRxDevice"} {
			if v, ok := r.NIC.TLSStat[k]; ok {
				parts = append(parts, k+" "+strconv.FormatInt(v, 10))
			}
		}
		p("  /proc/net/tls_stat\t%s", strings.Join(parts, ", "))
	}
	sectionError(p, r.NIC.Error)

	p("")
	p("Handshake upcall (the kernel's TLS consumers: NFS, NVMe-TCP; ktls tlshd)")
	p("  family %q\t%s", "handshake", statusText(r.Handshake.Family))
	p("  agent listening\t%s", statusText(r.Handshake.Agents))
	sectionError(p, r.Handshake.Error)

	p("")
	p("CPU (cpuid; Go's own view from golang.org/x/sys/cpu)")
	for _, f := range r.CPU.Features {
		v := yesNo(f.Present)
		p("  %s\t%s", f.Name, v)
	}
	p("  AES-GCM instructions\t%s", yesNo(r.CPU.AESGCM))
	p("  used by Go's AES-GCM\t%s", yesNo(r.CPU.GoAESGCM))
	if r.CPU.Note != "" {
		p("  note\t%s", r.CPU.Note)
	}

	p("")
	p("FIPS 140-3 mode (crypto/fips140)")
	p("  mode\t%s", r.FIPS.Mode)
	p("  module\t%s", r.FIPS.Module)
	p("  GOFIPS140 (build)\t%s", orUnset(r.FIPS.GOFIPS140))
	p("  GODEBUG fips140\t%s", orUnset(r.FIPS.GODEBUG))
	p("  meaning\t%s", r.FIPS.Meaning)
	sectionError(p, r.FIPS.Error)

	p("")
	p("Environment")
	p("  KTLS_BACKEND\t%s", orUnset(r.Policy.Backend))
	p("  KTLS_STRICT\t%s", orUnset(r.Policy.Strict))
	if r.Policy.Error != "" {
		p("  error\t%s", r.Policy.Error)
		p("  meaning\t%s", r.Policy.Meaning)
	} else {
		p("  resolved\t%s (from %s): %s", r.Policy.Spec, r.Policy.Source, r.Policy.Meaning)
	}

	p("")
	p("What auto chooses, per direction (first engine; then the fallbacks in order)")
	writeChoices(p, r.Auto)
	if r.Effective != nil {
		p("")
		p("What a program without options gets with this KTLS_BACKEND/KTLS_STRICT")
		writeChoices(p, r.Effective)
	}
	return tw.Flush()
}

func writeChoices(p func(string, ...any), cs []Choice) {
	for _, c := range cs {
		if c.Version == "" {
			p("  error\t%s", c.Error)
			continue
		}
		var then []string
		for _, cand := range c.Candidates[min(1, len(c.Candidates)):] {
			then = append(then, cand.Engine)
		}
		engine, reason := c.Engine, ""
		if len(c.Candidates) > 0 {
			reason = c.Candidates[0].Reason
		}
		if len(then) > 0 {
			engine += " → " + strings.Join(then, " → ")
		}
		if c.Error != "" {
			engine, reason = "fails", c.Error
		}
		p("  %s %s\t%s\t%s\t%s", c.Version, c.Cipher, c.Direction, engine, reason)
	}
}

// footnotes numbers the reasons of a table's cells, so that one reason
// shared by many cells is written once.
type footnotes struct{ reasons []string }

func (f *footnotes) cell(s Status) string {
	word := map[string]string{stateAvailable: "yes", stateUnavailable: "no", stateError: "error", stateNotChecked: "not checked"}[s.State]
	if s.State == stateAvailable || s.Reason == "" {
		return word
	}
	for i, r := range f.reasons {
		if r == s.Reason {
			return fmt.Sprintf("%s [%d]", word, i+1)
		}
	}
	f.reasons = append(f.reasons, s.Reason)
	return fmt.Sprintf("%s [%d]", word, len(f.reasons))
}

func (f *footnotes) write(p func(string, ...any)) {
	for i, r := range f.reasons {
		p("    [%d] %s", i+1, r)
	}
}

func statusText(s Status) string {
	if s.Reason == "" {
		return s.State
	}
	return s.State + ": " + s.Reason
}

func driverText(d Driver) string {
	s := fmt.Sprintf("%s: %s (module %s, priority %d)", d.Kind, d.Driver, d.Module, d.Priority)
	if d.Flags != nil {
		s += fmt.Sprintf(" flags %#x", *d.Flags)
	}
	return s
}

func sectionError(p func(string, ...any), e string) {
	if e != "" {
		p("  error\t%s", e)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orUnset(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}
