package selector

import (
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		name          string
		program       Spec
		programStrict bool
		env           map[string]string
		want          Policy
	}{
		{
			name: "nothing set",
			want: Policy{Source: "default"},
		},
		{
			name:    "program auto spelled out",
			program: Spec{TX: "auto", RX: "auto"},
			want:    Policy{Source: "default"},
		},
		{
			name:    "program forces",
			program: Spec{TX: "kernel", RX: "auto"},
			want:    Policy{Spec: Spec{TX: "kernel"}, Source: "WithBackend"},
		},
		{
			name:    "env wins over program",
			program: Spec{TX: "kernel", RX: "kernel"},
			env:     map[string]string{"KTLS_BACKEND": "userspace"},
			want:    Policy{Spec: Spec{"userspace", "userspace"}, Source: "KTLS_BACKEND"},
		},
		{
			name:    "env auto lifts what the program forced",
			program: Spec{TX: "kernel", RX: "kernel"},
			env:     map[string]string{"KTLS_BACKEND": "auto"},
			want:    Policy{Source: "KTLS_BACKEND"},
		},
		{
			name: "env per direction",
			env:  map[string]string{"KTLS_BACKEND": " rx=nic "},
			want: Policy{Spec: Spec{RX: "nic"}, Source: "KTLS_BACKEND"},
		},
		{
			name:    "empty env is unset",
			program: Spec{TX: "stdlib", RX: "stdlib"},
			env:     map[string]string{"KTLS_BACKEND": "", "KTLS_STRICT": ""},
			want:    Policy{Spec: Spec{"stdlib", "stdlib"}, Source: "WithBackend"},
		},
		{
			name:    "blank env is unset",
			program: Spec{TX: "stdlib", RX: "stdlib"},
			env:     map[string]string{"KTLS_BACKEND": "  ", "KTLS_STRICT": " "},
			want:    Policy{Spec: Spec{"stdlib", "stdlib"}, Source: "WithBackend"},
		},
		{
			name:          "program strict",
			program:       Spec{TX: "kernel"},
			programStrict: true,
			want:          Policy{Spec: Spec{TX: "kernel"}, Strict: true, Source: "WithBackend"},
		},
		{
			name: "KTLS_STRICT=1",
			env:  map[string]string{"KTLS_STRICT": "1"},
			want: Policy{Strict: true, Source: "default"},
		},
		{
			name: "KTLS_STRICT=true",
			env:  map[string]string{"KTLS_STRICT": "true"},
			want: Policy{Strict: true, Source: "default"},
		},
		{
			name: "KTLS_STRICT with spaces",
			env:  map[string]string{"KTLS_STRICT": " true\n"},
			want: Policy{Strict: true, Source: "default"},
		},
		{
			name:          "KTLS_STRICT=0 lifts program strict",
			programStrict: true,
			env:           map[string]string{"KTLS_STRICT": "0"},
			want:          Policy{Source: "default"},
		},
		{
			name:          "KTLS_STRICT=false lifts program strict",
			programStrict: true,
			env:           map[string]string{"KTLS_STRICT": "false"},
			want:          Policy{Source: "default"},
		},
		{
			name:          "KTLS_STRICT unset keeps program strict",
			programStrict: true,
			env:           map[string]string{"KTLS_BACKEND": "kernel"},
			want:          Policy{Spec: Spec{"kernel", "kernel"}, Strict: true, Source: "KTLS_BACKEND"},
		},
		{
			name: "both from env",
			env:  map[string]string{"KTLS_BACKEND": "tx=kernel,rx=userspace", "KTLS_STRICT": "1"},
			want: Policy{Spec: Spec{"kernel", "userspace"}, Strict: true, Source: "KTLS_BACKEND"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.program, tt.programStrict, lookupEnv(tt.env))
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got != tt.want {
				t.Errorf("Resolve = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name    string
		program Spec
		env     map[string]string
		want    string
	}{
		{
			name: "bad KTLS_BACKEND",
			env:  map[string]string{"KTLS_BACKEND": "kernal"},
			want: `selector: KTLS_BACKEND="kernal": unknown backend "kernal" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`,
		},
		{
			name:    "bad KTLS_BACKEND is not ignored in favour of the program",
			program: Spec{TX: "kernel", RX: "kernel"},
			env:     map[string]string{"KTLS_BACKEND": "tx=kernel,tx=nic"},
			want:    `selector: KTLS_BACKEND="tx=kernel,tx=nic": duplicate key "tx" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`,
		},
		{
			name: "bad KTLS_STRICT",
			env:  map[string]string{"KTLS_STRICT": "yes"},
			want: `selector: KTLS_STRICT="yes": not a boolean (accepted: 1, 0, true, false, or empty for unset)`,
		},
		{
			name: "KTLS_STRICT is case-sensitive",
			env:  map[string]string{"KTLS_STRICT": "TRUE"},
			want: `selector: KTLS_STRICT="TRUE": not a boolean (accepted: 1, 0, true, false, or empty for unset)`,
		},
		{
			name:    "bad program spec",
			program: Spec{TX: "kernal"},
			want:    `selector: WithBackend: tx: unknown backend "kernal" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`,
		},
		{
			name:    "program spec fields are not trimmed",
			program: Spec{RX: " kernel"},
			want:    `selector: WithBackend: rx: unknown backend " kernel" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`,
		},
		{
			name:    "bad program spec is reported even when env overrides",
			program: Spec{TX: "kernal"},
			env:     map[string]string{"KTLS_BACKEND": "kernel"},
			want:    `selector: WithBackend: tx: unknown backend "kernal" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.program, false, lookupEnv(tt.env))
			if err == nil {
				t.Fatalf("Resolve = %#v, want error", got)
			}
			if err.Error() != tt.want {
				t.Errorf("Resolve error:\n got %s\nwant %s", err, tt.want)
			}
			if got != (Policy{}) {
				t.Errorf("Resolve = %#v with an error, want the zero Policy", got)
			}
		})
	}
}

// TestResolveReadsOnlyItsVariables checks that Resolve asks the environment
// for its two variables and nothing else.
func TestResolveReadsOnlyItsVariables(t *testing.T) {
	var asked []string
	_, err := Resolve(Spec{}, false, func(k string) string {
		asked = append(asked, k)
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(asked, ","); got != "KTLS_BACKEND,KTLS_STRICT" {
		t.Errorf("Resolve read %s, want KTLS_BACKEND,KTLS_STRICT", got)
	}
}

func lookupEnv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}
