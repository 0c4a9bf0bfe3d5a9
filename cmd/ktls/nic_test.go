package main

import (
	"errors"
	"testing"

	"github.com/ktls-go/ktls/backend/nicoffload"
)

// TestNICInterfaceOf checks the report of what the nic engine read (the
// parsing itself is tested with captured messages in backend/nicoffload).
func TestNICInterfaceOf(t *testing.T) {
	mlx := nicoffload.Interface{Name: "enp1s0f0np0", Index: 2, Up: true,
		Features: nicoffload.Features{TX: nicoffload.Feature{Supported: true, Active: true}, RX: nicoffload.Feature{Supported: true}}}
	got := nicInterfaceOf(mlx)
	if got.Name != "enp1s0f0np0" || got.Index != 2 || !got.Up || got.Loopback ||
		*got.TLSTX != (NICFeature{Supported: true, Active: true}) || *got.TLSRX != (NICFeature{Supported: true}) || *got.TLSRecord != (NICFeature{}) {
		t.Errorf("nicInterfaceOf = %+v", got)
	}
	want := "tls-hw-tx-offload on, tls-hw-rx-offload off (supported: ethtool -K enp1s0f0np0 tls-hw-rx-offload on)"
	if got.Summary != want {
		t.Errorf("summary %q, want %q", got.Summary, want)
	}
	got = nicInterfaceOf(nicoffload.Interface{Name: "veth0", Kind: "veth"})
	if got.Summary != "no kTLS offload (veth: a software device)" || got.TLSTX == nil {
		t.Errorf("veth: %+v", got)
	}
	got = nicInterfaceOf(nicoffload.Interface{Name: "eth9", Err: errors.New("nic: ETHTOOL_MSG_FEATURES_GET: EOPNOTSUPP")})
	if got.Summary != "not read" || got.Error == "" || got.TLSTX != nil {
		t.Errorf("unread: %+v", got)
	}
}
