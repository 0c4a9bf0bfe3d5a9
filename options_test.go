package ktls

import (
	"reflect"
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/backend/nicoffload"
)

// TestOptionsReachEngines: the engine options a user can set through the
// root's Options are the ones the engines are built with, and only when
// asked (both are off by default, for their documented hazards).
func TestOptionsReachEngines(t *testing.T) {
	find := func(bs []backend.Backend, name string) backend.Backend {
		t.Helper()
		for _, b := range bs {
			if b.Name() == name {
				return b
			}
		}
		t.Fatalf("no %s engine among %d", name, len(bs))
		return nil
	}
	for _, tc := range []struct {
		opts []Option
		nic  nicoffload.Options
		kern kernel.Options
	}{
		{nil, nicoffload.Options{}, kernel.Options{}},
		{[]Option{WithNICZeroCopySendfile()}, nicoffload.Options{ZeroCopySendfile: true}, kernel.Options{}},
		{[]Option{WithRXExpectNoPad()}, nicoffload.Options{}, kernel.Options{RXExpectNoPad: true}},
	} {
		o := connOptions(tc.opts)
		if o.FIPS {
			t.Skip("FIPS 140-3 mode wires no engines")
		}
		if got, want := find(o.Backends, backend.NIC), nicoffload.New(tc.nic); !reflect.DeepEqual(got, want) {
			t.Errorf("%d options: nic engine %+v, want %+v", len(tc.opts), got, want)
		}
		if got, want := find(o.Backends, backend.Kernel), kernel.New(tc.kern); !reflect.DeepEqual(got, want) {
			t.Errorf("%d options: kernel engine %+v, want %+v", len(tc.opts), got, want)
		}
	}
}
