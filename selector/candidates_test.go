package selector

import (
	"crypto/tls"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// yes and no describe an engine that can and cannot serve.
func yes(name string) Engine     { return Engine{Name: name, OK: true} }
func no(name, why string) Engine { return Engine{Name: name, Why: why} }

// hw describes an engine that can serve, on a hardware crypto engine.
func hw(name string) Engine {
	return Engine{Name: name, OK: true, Hardware: true, HardwareWhat: "gcm-aes-caam"}
}

// Engine sets for the tables; tests only read them.
var (
	allOK   = []Engine{yes("userspace"), hw("afalg"), yes("kernel"), yes("nic")}
	noKTLS  = []Engine{no("nic", "tls module not loaded"), no("kernel", "tls module not loaded"), hw("afalg"), yes("userspace")}
	noNIC   = []Engine{no("nic", "no offload on the egress device"), yes("kernel"), yes("userspace")}
	onlyUS  = []Engine{yes("userspace")}
	noKTLS2 = []Engine{no("kernel", "tls module not loaded"), yes("userspace")}
)

// facts returns the facts of a TLS 1.3 AES-128-GCM direction with known keys
// on a CPU with AES instructions.
func facts(d Direction, engines ...Engine) Facts {
	return Facts{
		Direction:   d,
		Version:     tls.VersionTLS13,
		CipherSuite: tls.TLS_AES_128_GCM_SHA256,
		Engines:     engines,
		CPU:         amd64AES,
	}
}

// The CPUs of the tables: an x86 server, a Raspberry Pi 4 (Cortex-A72
// without the crypto extension), and an arm64 server run with
// GODEBUG=cpu.aes=off.
var (
	amd64AES    = CPU{Arch: "amd64", AESGCM: true, GoAESGCM: true}
	arm64NoAES  = CPU{Arch: "arm64"}
	arm64GoSoft = CPU{Arch: "arm64", AESGCM: true}
)

func with(f Facts, change func(*Facts)) Facts {
	change(&f)
	return f
}

func policy(spec string, strict bool) Policy {
	s, err := ParseSpec(spec)
	if err != nil {
		panic(err)
	}
	return Policy{Spec: s, Strict: strict}
}

func TestCandidates(t *testing.T) {
	noAES := func(f *Facts) { f.CPU = arm64NoAES }
	tests := []struct {
		name   string
		policy Policy
		facts  Facts
		want   []Candidate
	}{
		// Rule 5: the automatic order.
		{
			name:   "auto, every engine OK",
			policy: policy("auto", false),
			facts:  facts(TX, allOK...),
			want: []Candidate{
				{Name: "nic", Reason: "auto"},
				{Name: "kernel", Reason: "auto; nic did not install"},
				{Name: "userspace", Reason: "auto; nic did not install; kernel did not install"},
				{Name: "stdlib", Reason: "auto; nic did not install; kernel did not install; userspace did not install"},
			},
		},
		{
			name:   "auto, no NIC offload",
			policy: policy("", false),
			facts:  facts(RX, noNIC...),
			want: []Candidate{
				{Name: "kernel", Reason: "auto"},
				{Name: "userspace", Reason: "auto; kernel did not install"},
				{Name: "stdlib", Reason: "auto; kernel did not install; userspace did not install"},
			},
		},
		{
			name:   "auto, ChaCha20-Poly1305 RX: userspace before kernel",
			policy: policy("auto", false),
			facts:  with(facts(RX, noNIC...), func(f *Facts) { f.CipherSuite = tls.TLS_CHACHA20_POLY1305_SHA256 }),
			want: []Candidate{
				{Name: "userspace", Reason: "auto; userspace before kernel: it receives ChaCha20-Poly1305 faster"},
				{Name: "kernel", Reason: "auto; userspace before kernel: it receives ChaCha20-Poly1305 faster; userspace did not install"},
				{Name: "stdlib", Reason: "auto; userspace before kernel: it receives ChaCha20-Poly1305 faster; userspace did not install; kernel did not install"},
			},
		},
		{
			name:   "auto, TLS 1.2 ChaCha20-Poly1305 TX: kernel first",
			policy: policy("auto", false),
			facts: with(facts(TX, noNIC...), func(f *Facts) {
				f.Version, f.CipherSuite = tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
			}),
			want: []Candidate{
				{Name: "kernel", Reason: "auto"},
				{Name: "userspace", Reason: "auto; kernel did not install"},
				{Name: "stdlib", Reason: "auto; kernel did not install; userspace did not install"},
			},
		},
		{
			name:   "auto, ChaCha20-Poly1305 RX without kTLS: no note about the kernel",
			policy: policy("auto", false),
			facts:  with(facts(RX, noKTLS2...), func(f *Facts) { f.CipherSuite = tls.TLS_CHACHA20_POLY1305_SHA256 }),
			want: []Candidate{
				{Name: "userspace", Reason: "auto"},
				{Name: "stdlib", Reason: "auto; userspace did not install; kernel: tls module not loaded"},
			},
		},
		{
			name:   "auto, no kTLS, AES instructions: no afalg",
			policy: policy("auto", false),
			facts:  facts(TX, noKTLS...),
			want: []Candidate{
				{Name: "userspace", Reason: "auto; kernel: tls module not loaded"},
				{Name: "stdlib", Reason: "auto; kernel: tls module not loaded; userspace did not install"},
			},
		},
		{
			name:   "auto, only userspace wired in",
			policy: policy("auto", false),
			facts:  facts(TX, onlyUS...),
			want:   []Candidate{{Name: "userspace", Reason: "auto"}, {Name: "stdlib", Reason: "auto; userspace did not install"}},
		},
		{
			name:   "auto, nothing wired in",
			policy: policy("auto", false),
			facts:  facts(TX),
			want:   []Candidate{{Name: "stdlib", Reason: "auto"}},
		},
		{
			name:   "auto, stdlib listed as not OK is still possible",
			policy: policy("auto", false),
			facts:  facts(TX, no("stdlib", "whatever")),
			want:   []Candidate{{Name: "stdlib", Reason: "auto"}},
		},
		{
			name:   "auto, names that are not engines are ignored",
			policy: policy("auto", false),
			facts:  facts(TX, yes("quic"), no("kernal", "typo"), yes("userspace")),
			want:   []Candidate{{Name: "userspace", Reason: "auto"}, {Name: "stdlib", Reason: "auto; userspace did not install"}},
		},
		{
			name:   "auto, an engine listed twice is OK only if both say so",
			policy: policy("auto", false),
			facts:  facts(TX, yes("kernel"), no("kernel", "second opinion"), no("kernel", "third"), yes("userspace")),
			want: []Candidate{
				{Name: "userspace", Reason: "auto; kernel: second opinion"},
				{Name: "stdlib", Reason: "auto; kernel: second opinion; userspace did not install"},
			},
		},
		{
			name:   "auto, an empty Why reads cannot serve",
			policy: policy("auto", false),
			facts:  facts(TX, no("kernel", ""), yes("userspace")),
			want: []Candidate{
				{Name: "userspace", Reason: "auto; kernel: cannot serve"},
				{Name: "stdlib", Reason: "auto; kernel: cannot serve; userspace did not install"},
			},
		},
		{
			name:   "auto, strict changes nothing for an automatic direction",
			policy: policy("tx=kernel", true),
			facts:  facts(RX, noKTLS2...),
			want: []Candidate{
				{Name: "userspace", Reason: "auto; kernel: tls module not loaded"},
				{Name: "stdlib", Reason: "auto; kernel: tls module not loaded; userspace did not install"},
			},
		},
		{
			name:   "auto, TLS 1.2 ChaCha20-Poly1305",
			policy: policy("auto", false),
			facts: with(facts(TX, noNIC...), func(f *Facts) {
				f.Version, f.CipherSuite = tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
			}),
			want: []Candidate{
				{Name: "kernel", Reason: "auto"},
				{Name: "userspace", Reason: "auto; kernel did not install"},
				{Name: "stdlib", Reason: "auto; kernel did not install; userspace did not install"},
			},
		},

		// afalg in the automatic order.
		{
			name:   "afalg: OK, no AES instructions, no kTLS: before userspace",
			policy: policy("auto", false),
			facts:  with(facts(TX, noKTLS...), noAES),
			want: []Candidate{
				{Name: "afalg", Reason: "auto; kernel: tls module not loaded; hardware engine gcm-aes-caam"},
				{Name: "userspace", Reason: "auto; kernel: tls module not loaded; afalg did not install; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
				{Name: "stdlib", Reason: "auto; kernel: tls module not loaded; afalg did not install; userspace did not install; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
			},
		},
		{
			name:   "afalg: OK, no AES instructions, kernel not wired in",
			policy: policy("auto", false),
			facts:  with(facts(TX, hw("afalg"), yes("userspace")), noAES),
			want: []Candidate{
				{Name: "afalg", Reason: "auto; hardware engine gcm-aes-caam"},
				{Name: "userspace", Reason: "auto; afalg did not install; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
				{Name: "stdlib", Reason: "auto; afalg did not install; userspace did not install; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
			},
		},
		{
			name:   "afalg: OK, no AES instructions, kernel OK: not chosen",
			policy: policy("auto", false),
			facts:  with(facts(TX, yes("kernel"), hw("afalg"), yes("userspace")), noAES),
			want: []Candidate{
				{Name: "kernel", Reason: "auto"},
				{Name: "userspace", Reason: "auto; kernel did not install; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
				{Name: "stdlib", Reason: "auto; kernel did not install; userspace did not install; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
			},
		},
		{
			name:   "afalg: not OK, no AES instructions, no kTLS: not chosen, no note",
			policy: policy("auto", false),
			facts:  with(facts(TX, no("kernel", "tls module not loaded"), no("afalg", "no gcm(aes)"), yes("userspace")), noAES),
			want: []Candidate{
				{Name: "userspace", Reason: "auto; kernel: tls module not loaded; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
				{Name: "stdlib", Reason: "auto; kernel: tls module not loaded; userspace did not install; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
			},
		},
		{
			name:   "afalg: OK, AES instructions, nothing else: not chosen",
			policy: policy("auto", false),
			facts:  facts(TX, hw("afalg")),
			want:   []Candidate{{Name: "stdlib", Reason: "auto"}},
		},
		{
			name:   "afalg: OK but on the CPU, no AES instructions, no kTLS: not chosen",
			policy: policy("auto", false),
			facts:  with(facts(TX, no("kernel", "tls module not loaded"), yes("afalg"), yes("userspace")), noAES),
			want: []Candidate{
				{Name: "userspace", Reason: "auto; kernel: tls module not loaded; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
				{Name: "stdlib", Reason: "auto; kernel: tls module not loaded; userspace did not install; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
			},
		},
		{
			name:   "afalg: hardware ChaCha20-Poly1305, AES instructions, no kTLS: before userspace",
			policy: policy("auto", false),
			facts: with(facts(TX, no("kernel", "tls module not loaded"), hw("afalg"), yes("userspace")), func(f *Facts) {
				f.Version, f.CipherSuite = tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
			}),
			want: []Candidate{
				{Name: "afalg", Reason: "auto; kernel: tls module not loaded; hardware engine gcm-aes-caam"},
				{Name: "userspace", Reason: "auto; kernel: tls module not loaded; afalg did not install"},
				{Name: "stdlib", Reason: "auto; kernel: tls module not loaded; afalg did not install; userspace did not install"},
			},
		},

		{
			name:   "forced afalg on the CPU: no hardware note",
			policy: policy("afalg", false),
			facts:  facts(TX, Engine{Name: "afalg", OK: true, HardwareWhat: "gcm(aes) is served by generic-gcm-aesni"}, yes("userspace")),
			want: []Candidate{
				{Name: "afalg", Reason: "forced"},
				{Name: "userspace", Reason: "forced afalg did not install"},
				{Name: "stdlib", Reason: "forced afalg did not install; userspace did not install"},
			},
		},

		// What the CPU says in the reasons of AES-GCM candidates.
		{
			name:   "Go's AES-GCM in software, the kernel's on the CPU's instructions",
			policy: policy("auto", false),
			facts:  with(facts(RX, yes("kernel"), yes("userspace")), func(f *Facts) { f.CPU = arm64GoSoft }),
			want: []Candidate{
				{Name: "kernel", Reason: "auto; the kernel's AES-GCM uses this arm64 CPU's AES instructions, Go's does not here"},
				{Name: "userspace", Reason: "auto; kernel did not install; Go's AES-GCM does not use this arm64 CPU's AES instructions here"},
				{Name: "stdlib", Reason: "auto; kernel did not install; userspace did not install; Go's AES-GCM does not use this arm64 CPU's AES instructions here"},
			},
		},
		{
			name:   "no AES instructions, ChaCha20-Poly1305: nothing to say",
			policy: policy("auto", false),
			facts: with(facts(TX, yes("kernel"), yes("userspace")), func(f *Facts) {
				f.CPU, f.CipherSuite = arm64NoAES, tls.TLS_CHACHA20_POLY1305_SHA256
			}),
			want: []Candidate{
				{Name: "kernel", Reason: "auto"},
				{Name: "userspace", Reason: "auto; kernel did not install"},
				{Name: "stdlib", Reason: "auto; kernel did not install; userspace did not install"},
			},
		},

		// Rule 4: a forced engine that can serve.
		{
			name:   "forced kernel, OK: first, then the rest of the automatic order",
			policy: policy("kernel", false),
			facts:  facts(TX, allOK...),
			want: []Candidate{
				{Name: "kernel", Reason: "forced"},
				{Name: "nic", Reason: "forced kernel did not install"},
				{Name: "userspace", Reason: "forced kernel did not install; nic did not install"},
				{Name: "stdlib", Reason: "forced kernel did not install; nic did not install; userspace did not install"},
			},
		},
		{
			name:   "forced kernel, OK, strict: alone",
			policy: policy("kernel", true),
			facts:  facts(TX, allOK...),
			want:   []Candidate{{Name: "kernel", Reason: "forced"}},
		},
		{
			name:   "forced afalg, OK, AES instructions: the user opted in",
			policy: policy("rx=afalg", false),
			facts:  facts(RX, allOK...),
			want: []Candidate{
				{Name: "afalg", Reason: "forced"},
				{Name: "nic", Reason: "forced afalg did not install"},
				{Name: "kernel", Reason: "forced afalg did not install; nic did not install"},
				{Name: "userspace", Reason: "forced afalg did not install; nic did not install; kernel did not install"},
				{Name: "stdlib", Reason: "forced afalg did not install; nic did not install; kernel did not install; userspace did not install"},
			},
		},
		{
			name:   "forced userspace, OK, per direction",
			policy: policy("tx=kernel,rx=userspace", false),
			facts:  facts(RX, noNIC...),
			want: []Candidate{
				{Name: "userspace", Reason: "forced"},
				{Name: "kernel", Reason: "forced userspace did not install"},
				{Name: "stdlib", Reason: "forced userspace did not install; kernel did not install"},
			},
		},

		// Rule 3: a forced engine that cannot serve.
		{
			name:   "forced kernel, not OK: the automatic order, reason recorded",
			policy: policy("kernel", false),
			facts:  facts(TX, noKTLS2...),
			want: []Candidate{
				{Name: "userspace", Reason: "forced kernel unavailable: tls module not loaded"},
				{Name: "stdlib", Reason: "forced kernel unavailable: tls module not loaded; userspace did not install"},
			},
		},
		{
			name:   "forced kernel, not OK, nic not OK either",
			policy: policy("kernel", false),
			facts:  facts(TX, noKTLS...),
			want: []Candidate{
				{Name: "userspace", Reason: "forced kernel unavailable: tls module not loaded"},
				{Name: "stdlib", Reason: "forced kernel unavailable: tls module not loaded; userspace did not install"},
			},
		},
		{
			name:   "forced nic, not wired in",
			policy: policy("nic", false),
			facts:  facts(TX, onlyUS...),
			want: []Candidate{
				{Name: "userspace", Reason: "forced nic unavailable: not wired into this program"},
				{Name: "stdlib", Reason: "forced nic unavailable: not wired into this program; userspace did not install"},
			},
		},
		{
			name:   "forced kernel, not OK, no AES instructions: afalg joins the fallback",
			policy: policy("kernel", false),
			facts:  with(facts(TX, no("kernel", "tls module not loaded"), hw("afalg"), yes("userspace")), noAES),
			want: []Candidate{
				{Name: "afalg", Reason: "forced kernel unavailable: tls module not loaded; hardware engine gcm-aes-caam"},
				{Name: "userspace", Reason: "forced kernel unavailable: tls module not loaded; afalg did not install; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
				{Name: "stdlib", Reason: "forced kernel unavailable: tls module not loaded; afalg did not install; userspace did not install; this arm64 CPU has no AES-GCM instructions: Go's AES is table-based"},
			},
		},

		// Rule 1: forced stdlib.
		{
			name:   "forced stdlib",
			policy: policy("stdlib", false),
			facts:  facts(TX, allOK...),
			want:   []Candidate{{Name: "stdlib", Reason: "forced"}},
		},
		{
			name:   "forced stdlib, strict, keys unknown",
			policy: policy("stdlib", true),
			facts:  with(facts(TX, allOK...), func(f *Facts) { f.Unknown = "records buffered" }),
			want:   []Candidate{{Name: "stdlib", Reason: "forced"}},
		},

		// Rule 2: facts that leave only stdlib.
		{
			name:   "keys unknown",
			policy: policy("auto", false),
			facts: with(facts(RX, allOK...), func(f *Facts) {
				f.Unknown = "peer's ChangeCipherSpec not seen"
			}),
			want: []Candidate{{Name: "stdlib", Reason: "keys or sequence numbers not known: peer's ChangeCipherSpec not seen"}},
		},
		{
			name:   "keys unknown, forced kernel",
			policy: policy("kernel", false),
			facts: with(facts(TX, allOK...), func(f *Facts) {
				f.Unknown = "ticket count uncertain"
			}),
			want: []Candidate{{Name: "stdlib", Reason: "forced kernel unavailable: keys or sequence numbers not known: ticket count uncertain"}},
		},
		{
			name:   "TLS 1.2 CBC suite",
			policy: policy("auto", false),
			facts: with(facts(TX, allOK...), func(f *Facts) {
				f.Version, f.CipherSuite = tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA
			}),
			want: []Candidate{{Name: "stdlib", Reason: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not a TLS 1.2 AEAD suite"}},
		},
		{
			name:   "TLS 1.3 suite under TLS 1.2",
			policy: policy("auto", false),
			facts:  with(facts(TX, allOK...), func(f *Facts) { f.Version = tls.VersionTLS12 }),
			want:   []Candidate{{Name: "stdlib", Reason: "TLS_AES_128_GCM_SHA256 is not a TLS 1.2 AEAD suite"}},
		},
		{
			name:   "TLS 1.2 suite under TLS 1.3",
			policy: policy("auto", false),
			facts: with(facts(TX, allOK...), func(f *Facts) {
				f.CipherSuite = tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
			}),
			want: []Candidate{{Name: "stdlib", Reason: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 is not a TLS 1.3 AEAD suite"}},
		},
		{
			name:   "TLS 1.1",
			policy: policy("userspace", false),
			facts: with(facts(TX, allOK...), func(f *Facts) {
				f.Version, f.CipherSuite = tls.VersionTLS11, tls.TLS_RSA_WITH_AES_128_CBC_SHA
			}),
			want: []Candidate{{Name: "stdlib", Reason: "forced userspace unavailable: TLS 1.1 is not served by any engine"}},
		},
		{
			name:   "unknown version",
			policy: policy("auto", false),
			facts:  with(facts(TX, allOK...), func(f *Facts) { f.Version = 0 }),
			want:   []Candidate{{Name: "stdlib", Reason: "0x0000 is not served by any engine"}},
		},

		// Rule 2, FIPS 140-3 mode: stdlib whatever the engines say.
		{
			name:   "FIPS, auto, every engine OK",
			policy: policy("auto", false),
			facts:  with(facts(TX, allOK...), fipsOn),
			want:   []Candidate{{Name: "stdlib", Reason: fips}},
		},
		{
			name:   "FIPS, auto, RX, TLS 1.2 AES-256-GCM",
			policy: policy("", false),
			facts: with(facts(RX, noNIC...), func(f *Facts) {
				f.FIPS, f.Version, f.CipherSuite = true, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
			}),
			want: []Candidate{{Name: "stdlib", Reason: fips}},
		},
		{
			name:   "FIPS, auto, no AES instructions: no CPU note, afalg not chosen",
			policy: policy("auto", false),
			facts:  with(with(facts(TX, noKTLS...), noAES), fipsOn),
			want:   []Candidate{{Name: "stdlib", Reason: fips}},
		},
		{
			name:   "FIPS, auto, nothing wired in",
			policy: policy("auto", false),
			facts:  with(facts(TX), fipsOn),
			want:   []Candidate{{Name: "stdlib", Reason: fips}},
		},
		{
			name:   "FIPS, auto, strict changes nothing for an automatic direction",
			policy: policy("tx=kernel", true),
			facts:  with(facts(RX, allOK...), fipsOn),
			want:   []Candidate{{Name: "stdlib", Reason: fips}},
		},
		{
			name:   "FIPS, forced kernel, OK: falls back to stdlib, not to userspace",
			policy: policy("kernel", false),
			facts:  with(facts(TX, allOK...), fipsOn),
			want:   []Candidate{{Name: "stdlib", Reason: "forced kernel unavailable: " + fips}},
		},
		{
			name:   "FIPS, forced userspace, per direction",
			policy: policy("tx=auto,rx=userspace", false),
			facts:  with(facts(RX, allOK...), fipsOn),
			want:   []Candidate{{Name: "stdlib", Reason: "forced userspace unavailable: " + fips}},
		},
		{
			name:   "FIPS, forced afalg on a hardware engine",
			policy: policy("afalg", false),
			facts:  with(with(facts(TX, noKTLS...), noAES), fipsOn),
			want:   []Candidate{{Name: "stdlib", Reason: "forced afalg unavailable: " + fips}},
		},
		{
			name:   "FIPS, forced nic, not wired in: FIPS is the reason",
			policy: policy("nic", false),
			facts:  with(facts(TX, onlyUS...), fipsOn),
			want:   []Candidate{{Name: "stdlib", Reason: "forced nic unavailable: " + fips}},
		},
		{
			name:   "FIPS, keys unknown: FIPS is the reason",
			policy: policy("auto", false),
			facts: with(facts(RX, allOK...), func(f *Facts) {
				f.FIPS, f.Unknown = true, "records buffered"
			}),
			want: []Candidate{{Name: "stdlib", Reason: fips}},
		},
		{
			name:   "FIPS, TLS 1.2 CBC suite that FIPS allows: FIPS is the reason",
			policy: policy("auto", false),
			facts: with(facts(TX, allOK...), func(f *Facts) {
				f.FIPS, f.Version, f.CipherSuite = true, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256
			}),
			want: []Candidate{{Name: "stdlib", Reason: fips}},
		},
		{
			name:   "FIPS, forced stdlib",
			policy: policy("stdlib", true),
			facts:  with(facts(TX, allOK...), fipsOn),
			want:   []Candidate{{Name: "stdlib", Reason: "forced"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.policy.Candidates(tt.facts)
			if err != nil {
				t.Fatalf("Candidates: %v", err)
			}
			// The table pins names and reasons; each candidate's
			// Unavailable must be the refusals its reason names
			// (TestCandidatesUnavailable pins them exactly).
			if !reflect.DeepEqual(withoutUnavailable(got), tt.want) {
				t.Errorf("Candidates =\n%s\nwant\n%s", fmtList(got), fmtList(tt.want))
			}
			for _, c := range got {
				for _, r := range c.Unavailable {
					if !strings.Contains(c.Reason, r.String()) && !strings.Contains(c.Reason, "forced "+r.Engine+" unavailable: "+r.Reason) {
						t.Errorf("%s: Unavailable has %q, which its reason does not name", c, r)
					}
				}
			}
		})
	}
}

func withoutUnavailable(cs []Candidate) []Candidate {
	out := make([]Candidate, len(cs))
	for i, c := range cs {
		out[i] = Candidate{Name: c.Name, Reason: c.Reason}
	}
	return out
}

// TestCandidatesUnavailable: the engines a candidate's reason says could not
// serve are in its Unavailable, field by field and in order; nic's refusal,
// which the reason leaves out as no news, is left out there too.
func TestCandidatesUnavailable(t *testing.T) {
	kernelNo := Engine{Name: "kernel", OK: false, Why: "tls module not loaded"}
	nicNo := Engine{Name: "nic", OK: false, Why: "no device"}
	userspace := Engine{Name: "userspace", OK: true}
	for _, tt := range []struct {
		name   string
		policy Policy
		facts  Facts
		want   [][]Refusal // per candidate
	}{
		{"auto", policy("auto", false), facts(TX, nicNo, kernelNo, userspace),
			[][]Refusal{{{"kernel", "tls module not loaded"}}, {{"kernel", "tls module not loaded"}}}},
		{"auto, every engine OK", policy("auto", false), facts(TX, Engine{Name: "kernel", OK: true}, userspace),
			[][]Refusal{nil, nil, nil}},
		{"forced kernel unavailable", policy("kernel", false), facts(TX, kernelNo, userspace),
			[][]Refusal{{{"kernel", "tls module not loaded"}}, {{"kernel", "tls module not loaded"}}}},
		{"forced afalg not wired", policy("afalg", false), facts(TX, kernelNo, userspace),
			[][]Refusal{{{"afalg", "not wired into this program"}, {"kernel", "tls module not loaded"}}, {{"afalg", "not wired into this program"}, {"kernel", "tls module not loaded"}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.policy.Candidates(tt.facts)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Candidates = %s, want %d candidates", fmtList(got), len(tt.want))
			}
			for i, c := range got {
				if !reflect.DeepEqual(c.Unavailable, tt.want[i]) {
					t.Errorf("%s: Unavailable = %v, want %v", c, c.Unavailable, tt.want[i])
				}
			}
		})
	}
}

// fips is the reason of a direction in FIPS 140-3 mode, and fipsOn sets the
// fact.
const fips = "FIPS 140-3 mode: only crypto/tls's record layer is inside the Go Cryptographic Module"

func fipsOn(f *Facts) { f.FIPS = true }

func TestCandidatesStrictError(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		facts  Facts
		want   StrictError
		msg    string
	}{
		{
			name:   "forced kernel, not OK",
			policy: policy("kernel", true),
			facts:  facts(TX, noKTLS...),
			want:   StrictError{TX, "kernel", "tls module not loaded"},
			msg:    "selector: KTLS_STRICT: tx forced to kernel, which cannot serve: tls module not loaded",
		},
		{
			name:   "forced nic, not wired in",
			policy: policy("rx=nic", true),
			facts:  facts(RX, onlyUS...),
			want:   StrictError{RX, "nic", "not wired into this program"},
			msg:    "selector: KTLS_STRICT: rx forced to nic, which cannot serve: not wired into this program",
		},
		{
			name:   "forced userspace, keys unknown",
			policy: policy("userspace", true),
			facts:  with(facts(RX, allOK...), func(f *Facts) { f.Unknown = "records buffered" }),
			want:   StrictError{RX, "userspace", "keys or sequence numbers not known: records buffered"},
			msg:    "selector: KTLS_STRICT: rx forced to userspace, which cannot serve: keys or sequence numbers not known: records buffered",
		},
		{
			name:   "forced kernel, CBC suite",
			policy: policy("kernel", true),
			facts: with(facts(TX, allOK...), func(f *Facts) {
				f.Version, f.CipherSuite = tls.VersionTLS12, tls.TLS_RSA_WITH_AES_256_CBC_SHA
			}),
			want: StrictError{TX, "kernel", "TLS_RSA_WITH_AES_256_CBC_SHA is not a TLS 1.2 AEAD suite"},
			msg:  "selector: KTLS_STRICT: tx forced to kernel, which cannot serve: TLS_RSA_WITH_AES_256_CBC_SHA is not a TLS 1.2 AEAD suite",
		},
		{
			name:   "forced afalg, not OK, even where auto would skip it",
			policy: policy("afalg", true),
			facts:  facts(TX, no("afalg", "no gcm(aes) driver"), yes("userspace")),
			want:   StrictError{TX, "afalg", "no gcm(aes) driver"},
			msg:    "selector: KTLS_STRICT: tx forced to afalg, which cannot serve: no gcm(aes) driver",
		},
		{
			name:   "FIPS, forced userspace, OK",
			policy: policy("userspace", true),
			facts:  with(facts(TX, allOK...), fipsOn),
			want:   StrictError{TX, "userspace", fips},
			msg:    "selector: KTLS_STRICT: tx forced to userspace, which cannot serve: " + fips,
		},
		{
			name:   "FIPS, forced kernel on rx, OK",
			policy: policy("rx=kernel", true),
			facts:  with(facts(RX, allOK...), fipsOn),
			want:   StrictError{RX, "kernel", fips},
			msg:    "selector: KTLS_STRICT: rx forced to kernel, which cannot serve: " + fips,
		},
		{
			name:   "FIPS, forced nic, not wired in: FIPS is the reason",
			policy: policy("nic", true),
			facts:  with(facts(TX, onlyUS...), fipsOn),
			want:   StrictError{TX, "nic", fips},
			msg:    "selector: KTLS_STRICT: tx forced to nic, which cannot serve: " + fips,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.policy.Candidates(tt.facts)
			var se *StrictError
			if !errors.As(err, &se) {
				t.Fatalf("Candidates = %v, %v; want a *StrictError", got, err)
			}
			if got != nil {
				t.Errorf("Candidates = %v with an error, want nil", got)
			}
			if *se != tt.want {
				t.Errorf("StrictError = %#v, want %#v", *se, tt.want)
			}
			if err.Error() != tt.msg {
				t.Errorf("Error():\n got %s\nwant %s", err, tt.msg)
			}
		})
	}
}

func TestCandidatesInvalid(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		facts  Facts
		want   string
	}{
		{
			name:   "invalid direction",
			policy: Policy{},
			facts:  facts(2, allOK...),
			want:   "selector: invalid direction 2",
		},
		{
			name:   "hand-built policy with a bad name",
			policy: Policy{Spec: Spec{RX: "kernal"}},
			facts:  facts(RX, allOK...),
			want:   `selector: rx forced to unknown backend "kernal" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.policy.Candidates(tt.facts)
			if err == nil {
				t.Fatalf("Candidates = %v, want error", got)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

// TestCandidatesInvariants runs every combination of engine states, CPU, key
// certainty, forced engine and strictness through Candidates and checks the
// properties the rules promise, so that a rule added later cannot break one
// silently.
func TestCandidatesInvariants(t *testing.T) {
	engines := []string{"nic", "kernel", "afalg", "userspace"}
	const (
		absent = iota
		notOK
		isOK
	)
	specs := []string{"auto", "nic", "kernel", "afalg", "userspace", "stdlib"}
	n := 0
	for combo := range 81 { // 3 states for each of 4 engines
		var list []Engine
		state := map[string]int{}
		c := combo
		for _, name := range engines {
			state[name] = c % 3
			c /= 3
			switch state[name] {
			case notOK:
				list = append(list, no(name, name+" says no"))
			case isOK:
				list = append(list, yes(name))
			}
		}
		for _, aes := range []bool{false, true} {
			for _, keys := range []bool{false, true} {
				for _, fips := range []bool{false, true} {
					for _, forced := range specs {
						for _, strict := range []bool{false, true} {
							for _, d := range []Direction{TX, RX} {
								n++
								unknown := "x"
								if keys {
									unknown = ""
								}
								f := Facts{Direction: d, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384,
									Unknown: unknown, Engines: list, CPU: CPU{Arch: "amd64", AESGCM: aes, GoAESGCM: aes}, FIPS: fips}
								p := Policy{Spec: Spec{TX: forced, RX: forced}, Strict: strict}
								label := fmt.Sprintf("state=%v aes=%v keys=%v fips=%v forced=%s strict=%v %s", state, aes, keys, fips, forced, strict, d)
								checkInvariants(t, label, p, f, forced, state[forced] == isOK, state)
							}
						}
					}
				}
			}
		}
	}
	if n != 81*2*2*2*6*2*2 {
		t.Fatalf("ran %d cases", n)
	}
}

func checkInvariants(t *testing.T, label string, p Policy, f Facts, forced string, forcedOK bool, state map[string]int) {
	t.Helper()
	const isOK = 2
	got, err := p.Candidates(f)
	isForced := forced != "auto" && forced != "stdlib"
	canServe := forced == "stdlib" || (forcedOK && f.Unknown == "" && !f.FIPS)
	if p.Strict && isForced && !canServe {
		var se *StrictError
		if !errors.As(err, &se) || se.Direction != f.Direction || se.Forced != forced || se.Reason == "" {
			t.Fatalf("%s: got %v, %v; want a StrictError", label, got, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	if len(got) == 0 {
		t.Fatalf("%s: empty list", label)
	}
	seen := map[string]bool{}
	for i, c := range got {
		if seen[c.Name] {
			t.Fatalf("%s: %s twice in %v", label, c.Name, got)
		}
		seen[c.Name] = true
		if c.Reason == "" {
			t.Fatalf("%s: empty reason in %v", label, got)
		}
		if c.Name != "stdlib" && state[c.Name] != isOK {
			t.Fatalf("%s: %s listed but not OK: %v", label, c.Name, got)
		}
		if c.Name != "stdlib" && f.Unknown != "" {
			t.Fatalf("%s: %s listed with keys unknown: %v", label, c.Name, got)
		}
		if c.Name != "stdlib" && f.FIPS {
			t.Fatalf("%s: %s listed in FIPS 140-3 mode: %v", label, c.Name, got)
		}
		if f.FIPS && forced != "stdlib" && !strings.Contains(c.Reason, "FIPS 140-3 mode") {
			t.Fatalf("%s: %v: the reason does not name FIPS 140-3 mode", label, got)
		}
		if c.Name == "afalg" && !(forced == "afalg" && i == 0) &&
			(f.CPU.GoAESGCM || state["kernel"] == isOK) {
			t.Fatalf("%s: afalg chosen automatically against the rule: %v", label, got)
		}
	}
	switch {
	case forced == "stdlib":
		if !reflect.DeepEqual(got, []Candidate{{Name: "stdlib", Reason: "forced"}}) {
			t.Fatalf("%s: %v, want [stdlib (forced)]", label, got)
		}
		return
	case isForced && canServe:
		if got[0].Name != forced || got[0].Reason != "forced" || got[0].Unavailable != nil {
			t.Fatalf("%s: %v, want %s first", label, got, forced)
		}
		if p.Strict {
			if len(got) != 1 {
				t.Fatalf("%s: strict %v, want %s alone", label, got, forced)
			}
			return
		}
		got = got[1:]
	}
	if last := got[len(got)-1]; last.Name != "stdlib" {
		t.Fatalf("%s: %v does not end with stdlib", label, got)
	}
	// What follows the forced engine is in the automatic order.
	order := []string{"nic", "kernel", "afalg", "userspace", "stdlib"}
	idx := func(name string) int { return slices.Index(order, name) }
	if !slices.IsSortedFunc(got, func(a, b Candidate) int { return idx(a.Name) - idx(b.Name) }) {
		t.Fatalf("%s: %v not in the automatic order", label, got)
	}
	if isForced && !strings.HasPrefix(got[0].Reason, "forced "+forced+" ") {
		t.Fatalf("%s: %v: fallback reason does not name the forced engine", label, got)
	}
}

func TestCandidateString(t *testing.T) {
	tests := []struct {
		c    Candidate
		want string
	}{
		{Candidate{Name: "userspace", Reason: "auto"}, "userspace (auto)"},
		{Candidate{Name: "userspace", Reason: "forced kernel unavailable: tls module not loaded"}, "userspace (forced kernel unavailable: tls module not loaded)"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("String = %q, want %q", got, tt.want)
		}
	}
}

// TestForcedKernelExample builds, from facts, the first candidates of a host
// without kTLS where the operator forced kernel: the root package reports
// them as "tx: userspace (forced kernel unavailable: tls module not
// loaded); rx: ..." (conn.BackendInfo).
func TestForcedKernelExample(t *testing.T) {
	p, err := Resolve(Spec{}, false, lookupEnv(map[string]string{"KTLS_BACKEND": "kernel"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Candidate{Name: "userspace", Reason: "forced kernel unavailable: tls module not loaded",
		Unavailable: []Refusal{{"kernel", "tls module not loaded"}}}
	for _, d := range []Direction{TX, RX} {
		list, err := p.Candidates(facts(d, noKTLS2...))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(list[0], want) {
			t.Errorf("%s: Candidates()[0] = %+v, want %+v", d, list[0], want)
		}
	}
}

func fmtList(list []Candidate) string {
	var b strings.Builder
	for _, c := range list {
		fmt.Fprintf(&b, "\t%s\n", c)
	}
	return b.String()
}
