package main

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/ktls-go/ktls/internal/netlink"
)

// The ethtool feature strings of kTLS device offload
// (net/ethtool/common.c, netdev_features_strings): looked up by name, never
// by bit index, which differs between kernels
// (shared/reference/afalg-and-nic-offload.md, B.2).
const (
	featTLSTX     = "tls-hw-tx-offload"
	featTLSRX     = "tls-hw-rx-offload"
	featTLSRecord = "tls-hw-record"
)

// From include/uapi/linux/ethtool_netlink_generated.h; x/sys/unix has them
// under the same names, spelled here so that the parser builds everywhere.
const (
	ethtoolAFeaturesHeader = 1 // ETHTOOL_A_FEATURES_HEADER
	ethtoolAFeaturesHW     = 2 // ETHTOOL_A_FEATURES_HW: dev->hw_features
	ethtoolAFeaturesActive = 4 // ETHTOOL_A_FEATURES_ACTIVE: dev->features
	ethtoolAHeaderDevIndex = 1 // ETHTOOL_A_HEADER_DEV_INDEX
	ethtoolABitsetNomask   = 1 // ETHTOOL_A_BITSET_NOMASK
	ethtoolABitsetBits     = 3 // ETHTOOL_A_BITSET_BITS
	ethtoolABitsetBitsBit  = 1 // ETHTOOL_A_BITSET_BITS_BIT
	ethtoolABitsetBitName  = 2 // ETHTOOL_A_BITSET_BIT_NAME
	ethtoolABitsetBitValue = 3 // ETHTOOL_A_BITSET_BIT_VALUE
	ethtoolMsgFeaturesGet  = 11
)

// parseFeatures reads an ETHTOOL_MSG_FEATURES_GET_REPLY's attributes (after
// the generic netlink header): the features the device can offer (hw) and
// those that are on (active), by name. The request asked for verbose bitsets
// (no ETHTOOL_FLAG_COMPACT_BITSETS), so every bit comes with its name.
func parseFeatures(b []byte) (hw, active map[string]bool, err error) {
	attrs, err := netlink.ParseAttrs(b)
	if err != nil {
		return nil, nil, err
	}
	for _, a := range attrs {
		switch a.Type {
		case ethtoolAFeaturesHW:
			if hw, err = parseBitset(a.Data); err != nil {
				return nil, nil, fmt.Errorf("ETHTOOL_A_FEATURES_HW: %w", err)
			}
		case ethtoolAFeaturesActive:
			if active, err = parseBitset(a.Data); err != nil {
				return nil, nil, fmt.Errorf("ETHTOOL_A_FEATURES_ACTIVE: %w", err)
			}
		}
	}
	if hw == nil || active == nil {
		return nil, nil, errors.New("the reply lacks the hw or the active feature set")
	}
	return hw, active, nil
}

// parseBitset reads a verbose ethtool bitset (Documentation/networking/
// ethtool-netlink.rst, "Bit sets"): with ETHTOOL_A_BITSET_NOMASK every listed
// bit is set; otherwise the list is the mask (for the hw set, every feature
// the kernel knows) and a bit is set when it carries
// ETHTOOL_A_BITSET_BIT_VALUE. The result maps every listed name to whether
// it is set.
func parseBitset(b []byte) (map[string]bool, error) {
	attrs, err := netlink.ParseAttrs(b)
	if err != nil {
		return nil, err
	}
	nomask := false
	var bits []byte
	for _, a := range attrs {
		switch a.Type {
		case ethtoolABitsetNomask:
			nomask = true
		case ethtoolABitsetBits:
			bits = a.Data
		}
	}
	set := make(map[string]bool)
	list, err := netlink.ParseAttrs(bits)
	if err != nil {
		return nil, err
	}
	for _, bit := range list {
		if bit.Type != ethtoolABitsetBitsBit {
			continue
		}
		fields, err := netlink.ParseAttrs(bit.Data)
		if err != nil {
			return nil, err
		}
		name, value := "", false
		for _, f := range fields {
			switch f.Type {
			case ethtoolABitsetBitName:
				name = f.Str()
			case ethtoolABitsetBitValue:
				value = true
			}
		}
		if name == "" {
			// A feature bit the kernel has no string for: not one of
			// ours, whatever it is.
			continue
		}
		set[name] = nomask || value
	}
	return set, nil
}

// nicOf fills an interface's three kTLS features from its feature sets.
func nicOf(ifc *NICInterface, hw, active map[string]bool) {
	feat := func(name string) *NICFeature {
		return &NICFeature{Supported: hw[name], Active: active[name]}
	}
	ifc.TLSTX, ifc.TLSRX, ifc.TLSRecord = feat(featTLSTX), feat(featTLSRX), feat(featTLSRecord)
	var parts []string
	for _, f := range []struct {
		name string
		f    *NICFeature
	}{{featTLSTX, ifc.TLSTX}, {featTLSRX, ifc.TLSRX}, {featTLSRecord, ifc.TLSRecord}} {
		switch {
		case f.f.Active:
			parts = append(parts, f.name+" on")
		case f.f.Supported:
			parts = append(parts, f.name+" off (supported: ethtool -K "+ifc.Name+" "+f.name+" on)")
		}
	}
	if len(parts) == 0 {
		ifc.Summary = "no kTLS offload"
	} else {
		ifc.Summary = strings.Join(parts, ", ")
	}
}

// interfaceFlags spells the flags the doctor shows.
func interfaceFlags(f net.Flags) (up, loopback bool) {
	return f&net.FlagUp != 0, f&net.FlagLoopback != 0
}
