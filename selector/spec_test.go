package selector

import (
	"strings"
	"testing"

	"github.com/ktls-go/ktls/backend"
)

func TestParseSpecValid(t *testing.T) {
	tests := []struct {
		in   string
		want Spec
		str  string // want.String()
	}{
		{"", Spec{}, "auto"},
		{"   ", Spec{}, "auto"},
		{"auto", Spec{}, "auto"},
		{" auto\t", Spec{}, "auto"},
		{"kernel", Spec{"kernel", "kernel"}, "kernel"},
		{"nic", Spec{"nic", "nic"}, "nic"},
		{"afalg", Spec{"afalg", "afalg"}, "afalg"},
		{"userspace", Spec{"userspace", "userspace"}, "userspace"},
		{"stdlib", Spec{"stdlib", "stdlib"}, "stdlib"},
		{" kernel ", Spec{"kernel", "kernel"}, "kernel"},
		{"tx=kernel,rx=userspace", Spec{"kernel", "userspace"}, "tx=kernel,rx=userspace"},
		{"rx=userspace,tx=kernel", Spec{"kernel", "userspace"}, "tx=kernel,rx=userspace"},
		{" tx = kernel , rx = userspace ", Spec{"kernel", "userspace"}, "tx=kernel,rx=userspace"},
		{"tx=kernel", Spec{TX: "kernel"}, "tx=kernel,rx=auto"},
		{"rx=nic", Spec{RX: "nic"}, "tx=auto,rx=nic"},
		{"tx=auto,rx=stdlib", Spec{RX: "stdlib"}, "tx=auto,rx=stdlib"},
		{"tx=auto", Spec{}, "auto"},
		{"tx=auto,rx=auto", Spec{}, "auto"},
		{"tx=afalg,rx=afalg", Spec{"afalg", "afalg"}, "afalg"},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSpec(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
		if s := got.String(); s != tt.str {
			t.Errorf("ParseSpec(%q).String() = %q, want %q", tt.in, s, tt.str)
		}
		back, err := ParseSpec(got.String())
		if err != nil || back != got {
			t.Errorf("ParseSpec(%q) = %#v, %v; want %#v", got.String(), back, err, got)
		}
	}
}

func TestParseSpecInvalid(t *testing.T) {
	tests := []struct {
		in   string
		want string // the whole message
	}{
		{"kernal", `selector: backend spec "kernal": unknown backend "kernal" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"Kernel", `selector: backend spec "Kernel": unknown backend "Kernel" (names are lowercase; accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"AUTO", `selector: backend spec "AUTO": unknown backend "AUTO" (names are lowercase; accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"ker nel", `selector: backend spec "ker nel": unknown backend "ker nel" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"tx=kernel,tx=userspace", `selector: backend spec "tx=kernel,tx=userspace": duplicate key "tx" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"rx=auto,rx=auto", `selector: backend spec "rx=auto,rx=auto": duplicate key "rx" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"foo=kernel", `selector: backend spec "foo=kernel": unknown key "foo" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"TX=kernel", `selector: backend spec "TX=kernel": unknown key "TX" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"=kernel", `selector: backend spec "=kernel": unknown key "" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"tx=", `selector: backend spec "tx=": element "tx=" has no name (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"tx=kernal", `selector: backend spec "tx=kernal": unknown backend "kernal" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"tx=kernel,", `selector: backend spec "tx=kernel,": empty element (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{",", `selector: backend spec ",": empty element (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"kernel,rx=userspace", `selector: backend spec "kernel,rx=userspace": element "kernel" is not tx=NAME or rx=NAME (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"kernel,userspace", `selector: backend spec "kernel,userspace": element "kernel" is not tx=NAME or rx=NAME (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"tx=rx=kernel", `selector: backend spec "tx=rx=kernel": unknown backend "rx=kernel" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"tx:kernel", `selector: backend spec "tx:kernel": unknown backend "tx:kernel" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
		{"tx=kernel;rx=nic", `selector: backend spec "tx=kernel;rx=nic": unknown backend "kernel;rx=nic" (accepted: auto, kernel, nic, afalg, userspace, stdlib, or tx=NAME,rx=NAME)`},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		if err == nil {
			t.Errorf("ParseSpec(%q) = %#v, want error", tt.in, got)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParseSpec(%q) error:\n got %s\nwant %s", tt.in, err, tt.want)
		}
		if got != (Spec{}) {
			t.Errorf("ParseSpec(%q) = %#v with an error, want the zero Spec", tt.in, got)
		}
	}
}

// TestAcceptedNamesEveryEngine fails when package backend gains an engine that
// the grammar, or the list of accepted names in its errors, does not know.
func TestAcceptedNamesEveryEngine(t *testing.T) {
	for _, name := range backend.Names {
		if _, err := ParseSpec(name); err != nil {
			t.Errorf("ParseSpec(%q): %v", name, err)
		}
		if !strings.Contains(accepted, " "+name+",") {
			t.Errorf("accepted list %q does not name %q", accepted, name)
		}
	}
}

func TestSpecFor(t *testing.T) {
	s := Spec{TX: "kernel"}
	if got := s.For(TX); got != "kernel" {
		t.Errorf("For(TX) = %q, want kernel", got)
	}
	if got := s.For(RX); got != "auto" {
		t.Errorf("For(RX) = %q, want auto", got)
	}
	if got := (Spec{TX: "auto", RX: "auto"}).String(); got != "auto" {
		t.Errorf(`Spec{"auto", "auto"}.String() = %q, want auto`, got)
	}
}

func TestDirectionString(t *testing.T) {
	for d, want := range map[Direction]string{TX: "tx", RX: "rx", 7: "Direction(7)", -1: "Direction(-1)"} {
		if got := d.String(); got != want {
			t.Errorf("Direction(%d).String() = %q, want %q", int(d), got, want)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"", "auto", "kernel", "nic", "afalg", "userspace", "stdlib",
		"tx=kernel,rx=userspace", " rx = nic , tx = auto ", "tx=kernel,tx=nic",
		"foo=bar", "tx=", ",", "Kernel", "tx=rx=kernel", "kernel,rx=nic",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseSpec(s)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "selector: ") || !strings.Contains(msg, "accepted: ") {
				t.Fatalf("ParseSpec(%q): error %q lacks the prefix or the accepted forms", s, msg)
			}
			return
		}
		// Canonical: "" for auto, else an engine name.
		for _, name := range []string{spec.TX, spec.RX} {
			if name != "" && !isEngine(name) {
				t.Fatalf("ParseSpec(%q) = %#v: not canonical", s, spec)
			}
		}
		str := spec.String()
		back, err := ParseSpec(str)
		if err != nil {
			t.Fatalf("ParseSpec(%q).String() = %q, which does not parse: %v", s, str, err)
		}
		if back != spec {
			t.Fatalf("ParseSpec(%q) = %#v, but ParseSpec(%q) = %#v", s, spec, str, back)
		}
		if back.String() != str {
			t.Fatalf("String() not stable: %q then %q", str, back.String())
		}
	})
}
