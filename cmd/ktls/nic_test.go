package main

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/internal/netlink"
)

// littleEndian says whether the captured netlink messages, which are in the
// byte order of the amd64 host they came from, read right here.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// readCapture returns a captured message from testdata: the payload of an
// ETHTOOL_MSG_FEATURES_GET_REPLY (generic netlink header first), in hex.
func readCapture(t *testing.T, name string) []byte {
	t.Helper()
	if !littleEndian {
		t.Skip("the captured netlink messages are little-endian, netlink is in the host's order")
	}
	text, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseFeaturesCaptured reads the replies of the development host's
// kernel (Linux 6.18) for lo and for eth0 (virtio-net under Firecracker).
func TestParseFeaturesCaptured(t *testing.T) {
	for _, tc := range []struct {
		file   string
		name   string
		active []string // some features that are on
		off    []string // some features the kernel knows that are off
	}{
		{"ethtool-features-lo.hex", "lo", []string{"loopback", "rx-checksum", "tx-tcp-segmentation"}, []string{"rx-gro-hw"}},
		{"ethtool-features-eth0.hex", "eth0", []string{"rx-gro-hw", "tx-checksum-ip-generic"}, []string{"loopback"}},
	} {
		b := readCapture(t, tc.file)
		if len(b) < netlink.GenlHdrLen || b[0] != ethtoolMsgFeaturesGet {
			t.Fatalf("%s: not a FEATURES_GET reply", tc.file)
		}
		hw, active, err := parseFeatures(b[netlink.GenlHdrLen:])
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		for _, f := range tc.active {
			if !active[f] {
				t.Errorf("%s: %s not active", tc.name, f)
			}
		}
		for _, f := range append(tc.off, featTLSTX, featTLSRX, featTLSRecord) {
			if active[f] {
				t.Errorf("%s: %s active", tc.name, f)
			}
		}
		// The hw set lists every feature the kernel knows, so the kTLS
		// ones are there, and not set.
		for _, f := range []string{featTLSTX, featTLSRX, featTLSRecord} {
			if v, ok := hw[f]; !ok || v {
				t.Errorf("%s: hw[%s] = %v, %v; want listed and false", tc.name, f, v, ok)
			}
		}
		ifc := NICInterface{Name: tc.name}
		nicOf(&ifc, hw, active)
		if ifc.Summary != "no kTLS offload" || ifc.TLSTX == nil || *ifc.TLSTX != (NICFeature{}) {
			t.Errorf("%s: %+v, want no kTLS offload", tc.name, ifc)
		}
	}
}

// bitset builds a verbose ethtool bitset.
func bitset(nomask bool, bits map[string]bool) []byte {
	var list []byte
	for name, value := range bits {
		var bit []byte
		bit = netlink.AppendAttr(bit, ethtoolABitsetBitName, append([]byte(name), 0))
		if value {
			bit = netlink.AppendAttr(bit, ethtoolABitsetBitValue, nil)
		}
		list = netlink.AppendAttr(list, ethtoolABitsetBitsBit|netlink.FNested, bit)
	}
	var b []byte
	if nomask {
		b = netlink.AppendAttr(b, ethtoolABitsetNomask, nil)
	}
	return netlink.AppendAttr(b, ethtoolABitsetBits|netlink.FNested, list)
}

// TestNICOffload checks the reading of a device that offers kTLS, as mlx5
// does: TX on, RX supported but off by default (afalg-and-nic-offload.md,
// B.2).
func TestNICOffload(t *testing.T) {
	var reply []byte
	reply = netlink.AppendAttr(reply, ethtoolAFeaturesHW|netlink.FNested, bitset(false, map[string]bool{
		featTLSTX: true, featTLSRX: true, featTLSRecord: false, "rx-gro": true,
	}))
	reply = netlink.AppendAttr(reply, 3|netlink.FNested, bitset(true, map[string]bool{featTLSTX: true})) // WANTED, ignored
	reply = netlink.AppendAttr(reply, ethtoolAFeaturesActive|netlink.FNested, bitset(true, map[string]bool{featTLSTX: true, "rx-gro": true}))
	hw, active, err := parseFeatures(reply)
	if err != nil {
		t.Fatal(err)
	}
	ifc := NICInterface{Name: "enp1s0f0np0"}
	nicOf(&ifc, hw, active)
	if *ifc.TLSTX != (NICFeature{Supported: true, Active: true}) ||
		*ifc.TLSRX != (NICFeature{Supported: true}) || *ifc.TLSRecord != (NICFeature{}) {
		t.Errorf("features: tx %+v, rx %+v, record %+v", *ifc.TLSTX, *ifc.TLSRX, *ifc.TLSRecord)
	}
	want := "tls-hw-tx-offload on, tls-hw-rx-offload off (supported: ethtool -K enp1s0f0np0 tls-hw-rx-offload on)"
	if ifc.Summary != want {
		t.Errorf("summary %q, want %q", ifc.Summary, want)
	}
	if _, _, err := parseFeatures(reply[:0]); err == nil {
		t.Error("a reply without feature sets: no error")
	}
}

// FuzzParseFeatures: whatever the kernel sends, the parsers return, with an
// error or without, and never panic.
func FuzzParseFeatures(f *testing.F) {
	var reply []byte
	reply = netlink.AppendAttr(reply, ethtoolAFeaturesHW|netlink.FNested, bitset(false, map[string]bool{featTLSTX: true}))
	reply = netlink.AppendAttr(reply, ethtoolAFeaturesActive|netlink.FNested, bitset(true, map[string]bool{featTLSTX: true}))
	f.Add(reply)
	f.Add([]byte{})
	f.Add([]byte{4, 0, 2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseFeatures(b)
		netlink.ParseMessages(b)
		parseCryptoUserAlg(b)
	})
}
