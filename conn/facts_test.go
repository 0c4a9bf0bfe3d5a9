package conn

import (
	"crypto/tls"
	"reflect"
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/backend/afalg"
	"github.com/ktls-go/ktls/backend/kernel"
	"github.com/ktls-go/ktls/backend/nicoffload"
	"github.com/ktls-go/ktls/backend/userspace"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/selector"
)

// TestFactsBoth: what the handoff decides from (factsBoth) is what Facts
// says for each direction, with every engine wired in, for every suite and
// one that no engine serves.
func TestFactsBoth(t *testing.T) {
	o := Options{Backends: []backend.Backend{
		kernel.New(kernel.Options{}), nicoffload.New(nicoffload.Options{}), afalg.New(), userspace.New(),
	}}
	type vs struct{ v, s uint16 }
	cases := []vs{{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}
	for _, s := range keyschedule.Suites() {
		cases = append(cases, vs{s.Version, s.ID})
	}
	for _, c := range cases {
		for _, unknown := range []string{"", "some reason"} {
			tx, rx := o.factsBoth(c.v, c.s, unknown)
			if want := o.Facts(selector.TX, c.v, c.s, unknown); !reflect.DeepEqual(tx, want) {
				t.Errorf("%#04x %#04x tx: %+v, want %+v", c.v, c.s, tx, want)
			}
			if want := o.Facts(selector.RX, c.v, c.s, unknown); !reflect.DeepEqual(rx, want) {
				t.Errorf("%#04x %#04x rx: %+v, want %+v", c.v, c.s, rx, want)
			}
			// The two lists share an array: appending to TX's must not
			// reach RX's.
			if cap(tx.Engines) != len(tx.Engines) {
				t.Errorf("tx engines: cap %d, len %d", cap(tx.Engines), len(tx.Engines))
			}
		}
	}
}
