// Package nicoffload is the kTLS engine with NIC offload ("nic"): the
// kernel's TLS_HW mode, where the network device encrypts and decrypts the
// records of a kTLS socket (Documentation/networking/tls-offload.rst).
//
// Userspace cannot ask for device offload: "the operation mode is selected
// automatically based on device configuration" (tls-offload.rst), and when
// the device refuses a socket the kernel silently keeps it in software
// (do_tls_setsockopt_conf: tls_set_device_offload, else tls_set_sw_offload).
// So the engine:
//
//  1. takes only what mainline devices take: TLS 1.2 with AES-GCM-128 or
//     AES-GCM-256 (tls_set_device_offload rejects every other version with
//     EOPNOTSUPP; the drivers' tlsdev_ops serve AES-GCM only);
//  2. finds the device the kernel will ask (net/tls/tls_device.c,
//     get_netdev_for_sock, for TX and RX alike): a route lookup over
//     rtnetlink with the socket's addresses, ports, bound interface and mark,
//     a bond resolved to its members (the kernel hands the socket to one of
//     them, netdev_sk_get_lowest_dev);
//  3. reads that device's features over ethtool netlink, by name, never by
//     bit index (net/ethtool/common.c, netdev_features_strings):
//     tls-hw-tx-offload, tls-hw-rx-offload, tls-hw-record. A device without
//     the direction's feature on is refused before the socket is touched
//     (backend.ErrNotSupported: the connection tries the next engine);
//  4. installs kTLS through the kernel engine (package backend/kernel), so
//     that the kernel may choose the device;
//  5. asks the kernel per socket whether it did: sock_diag with
//     INET_DIAG_ULP_INFO (TLS_INFO_TXCONF / TLS_INFO_RXCONF == TLS_CONF_HW),
//     which needs CAP_NET_ADMIN (tcp_diag_get_aux), else the device counters
//     of /proc/net/tls_stat around the install. A half the kernel kept in
//     software is plain kernel kTLS and says so: it is a backend.Reporter
//     whose Engine is backend.Kernel with the reason, never "nic".
//
// nic decorates the kernel engine: the one engine that imports another, and
// the only such import allowed (docs/ARCHITECTURE.md, Rooms). The dependency
// is one-way and narrow: kernel.New, whose halves nic installs and wraps,
// and kernel.Probe, the cached answer whether kTLS serves the suite at all.
// Everything else (the route, the device's features, sock_diag) is nic's
// own, and the kernel engine knows nothing of nic. Moving kTLS's install
// below both would export the socket primitives for this one user.
//
// Its refusals are *backend.NotSupportedError of engine "nic"; a refusal of
// the kernel engine it passes on becomes nic's, with the kernel's as Err.
// Errors and reasons start with "nic: ", the engine's name as KTLS_BACKEND
// and BackendInfo spell it.
//
// TLS_HW passing TXCONF is necessary, not sufficient: after the device goes
// down, or when a route change sends the socket's packets elsewhere, the
// kernel encrypts in software (tls_device_down, tls_sw_fallback) while the
// socket still says TLS_HW; only the driver's counters (ethtool -S
// tx_tls_encrypted_bytes) prove the device does the work.
//
// The netlink sockets this engine opens talk to the network namespace of
// the calling thread, which is the socket's unless the program moves its
// threads between namespaces.
package nicoffload

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/keyschedule"
	"github.com/ktls-go/ktls/internal/netlink"
)

// Options change how the engine installs a connection.
type Options struct {
	// ZeroCopySendfile sets TLS_TX_ZEROCOPY_RO on a sending socket the
	// device took (Linux 5.19, commit c1318b39c7d3; include/uapi/linux/tls.h):
	// sendfile then hands the page cache's pages to the device without the
	// kernel copying them first.
	//
	// The hazard: the file must not change while it is sent. The device
	// reads the pages when it transmits, and again for every TCP
	// retransmission, so a file written to before the peer acknowledged
	// its bytes goes out in versions that differ between the first
	// transmission and the retransmission: "to the receiver this will look
	// like TLS records had been tampered with and will result in record
	// authentication failures" (Documentation/networking/tls.rst,
	// TLS_TX_ZEROCOPY_RO). Set it only for files that nothing writes
	// while they are served (immutable objects, content-addressed blobs).
	//
	// Off by default. It does nothing for a socket the kernel kept in
	// software (the option is the device path's, tls_device.c), and a
	// kernel before 5.19 ignores the request; BackendInfo's reason says
	// whether it was set.
	ZeroCopySendfile bool
}

// The ethtool feature strings of kTLS device offload (net/ethtool/common.c,
// netdev_features_strings). Looked up by name: the bit indices differ
// between kernels.
const (
	FeatureTX     = "tls-hw-tx-offload" // NETIF_F_HW_TLS_TX: TLS_HW sending
	FeatureRX     = "tls-hw-rx-offload" // NETIF_F_HW_TLS_RX: TLS_HW receiving
	FeatureRecord = "tls-hw-record"     // NETIF_F_HW_TLS_RECORD: TOE (chtls), not used by ktls
)

// From include/uapi/linux/ethtool_netlink_generated.h; x/sys/unix has them
// under the same names, spelled here so that the parsers build everywhere.
const (
	ethtoolAFeaturesHeader = 1 // ETHTOOL_A_FEATURES_HEADER
	ethtoolAFeaturesHW     = 2 // ETHTOOL_A_FEATURES_HW: dev->hw_features
	ethtoolAFeaturesWanted = 3 // ETHTOOL_A_FEATURES_WANTED
	ethtoolAFeaturesActive = 4 // ETHTOOL_A_FEATURES_ACTIVE: dev->features
	ethtoolAHeaderDevIndex = 1 // ETHTOOL_A_HEADER_DEV_INDEX
	ethtoolABitsetNomask   = 1 // ETHTOOL_A_BITSET_NOMASK
	ethtoolABitsetBits     = 3 // ETHTOOL_A_BITSET_BITS
	ethtoolABitsetBitsBit  = 1 // ETHTOOL_A_BITSET_BITS_BIT
	ethtoolABitsetBitName  = 2 // ETHTOOL_A_BITSET_BIT_NAME
	ethtoolABitsetBitValue = 3 // ETHTOOL_A_BITSET_BIT_VALUE
	ethtoolMsgFeaturesGet  = 11
	ethtoolGenlVersion     = 1
	ethtoolGenlName        = "ethtool"
)

// From include/uapi/linux/rtnetlink.h, if_link.h, if_addr.h, veth.h.
const (
	rtmNewLink   = 16
	rtmGetLink   = 18
	rtmNewAddr   = 20
	rtmNewRoute  = 24
	rtmGetRoute  = 26
	rtmsgLen     = 12 // struct rtmsg
	ifinfomsgLen = 16 // struct ifinfomsg
	ifaddrmsgLen = 8  // struct ifaddrmsg

	rtaDst     = 1  // RTA_DST
	rtaSrc     = 2  // RTA_SRC
	rtaOIF     = 4  // RTA_OIF
	rtaMark    = 16 // RTA_MARK
	rtaUID     = 25 // RTA_UID
	rtaIPProto = 27 // RTA_IP_PROTO
	rtaSport   = 28 // RTA_SPORT
	rtaDport   = 29 // RTA_DPORT

	iflaIfname   = 3  // IFLA_IFNAME
	iflaMaster   = 10 // IFLA_MASTER
	iflaLinkinfo = 18 // IFLA_LINKINFO
	iflaNetNSFD  = 28 // IFLA_NET_NS_FD
	iflaInfoKind = 1  // IFLA_INFO_KIND
	iflaInfoData = 2  // IFLA_INFO_DATA
	vethInfoPeer = 1  // VETH_INFO_PEER
	ifaLocal     = 2  // IFA_LOCAL
	ifaAddress   = 1  // IFA_ADDRESS

	iffUp       = 0x1 // IFF_UP
	iffLoopback = 0x8 // IFF_LOOPBACK
)

// From include/uapi/linux/inet_diag.h, sock_diag.h and tls.h.
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagReqLen   = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	inetDiagInfo     = 2  // INET_DIAG_INFO
	inetDiagULPInfo  = 19 // INET_DIAG_ULP_INFO
	inetULPInfoName  = 1  // INET_ULP_INFO_NAME
	inetULPInfoTLS   = 2  // INET_ULP_INFO_TLS
	tlsInfoVersion   = 1  // TLS_INFO_VERSION
	tlsInfoCipher    = 2  // TLS_INFO_CIPHER
	tlsInfoTXConf    = 3  // TLS_INFO_TXCONF
	tlsInfoRXConf    = 4  // TLS_INFO_RXCONF
	tlsInfoZCROTX    = 5  // TLS_INFO_ZC_RO_TX
	inetDiagNoCookie = ^uint32(0)
	optTXZeroCopyRO  = 3 // TLS_TX_ZEROCOPY_RO
	tlsConfBase      = 1 // TLS_CONF_BASE
	tlsConfSW        = 2 // TLS_CONF_SW
	tlsConfHW        = 3 // TLS_CONF_HW
	tlsConfHWRecord  = 4 // TLS_CONF_HW_RECORD
	procTLSStat      = "/proc/net/tls_stat"
	statTXDevice     = "TlsTxDevice"
	statRXDevice     = "TlsRxDevice"
	statTXSw         = "TlsTxSw"
	statRXSw         = "TlsRxSw"
)

// offloadable says whether a mainline device can take version and suite
// (the suite table's NICOffload): tls_set_device_offload and
// tls_set_device_offload_rx refuse every version but TLS 1.2 (TLS 1.3
// offload is not mainline: the series of Dec 2025 was not merged), and the
// drivers with tlsdev_ops (mlx5, ch_ktls, nfp, funeth) take AES-GCM only.
// nil, or an error that wraps backend.ErrNotSupported.
func offloadable(version, suite uint16) error {
	if version != tls.VersionTLS12 {
		return backend.NotSupported(backend.NIC, "mainline kernels offload TLS 1.2 only, not %s (tls_device.c)", tls.VersionName(version))
	}
	if s, ok := keyschedule.Lookup(version, suite); ok && s.NICOffload {
		return nil
	}
	return backend.NotSupported(backend.NIC, "devices offload AES-GCM only, not %s", tls.CipherSuiteName(suite))
}

// Feature is one ethtool feature of a device.
type Feature struct {
	// Supported: in the device's hw_features, it can be switched on.
	Supported bool
	// Active: in its features, on now. The kernel checks this one
	// (netdev->features & NETIF_F_HW_TLS_TX) when a socket gets its key.
	Active bool
}

// Features are a device's three kTLS offload features.
type Features struct {
	TX, RX, Record Feature
}

// Interface is one network interface and its kTLS features.
type Interface struct {
	Name  string
	Index int
	// Kind is the rtnetlink link kind (IFLA_INFO_KIND: "bond", "veth",
	// "vlan"...), "" for a device without one (a physical NIC, lo).
	Kind     string
	Up       bool
	Loopback bool
	// Master is the index of the bond (or bridge, VRF) the device is in, 0
	// if none.
	Master int
	Features
	// Err says why Features could not be read; they are then all off.
	Err error
}

// Summary says an interface's kTLS features in words, as the doctor shows
// them: "no kTLS offload", "tls-hw-tx-offload on, tls-hw-rx-offload off
// (supported: ethtool -K eth0 tls-hw-rx-offload on)".
func (i Interface) Summary() string {
	if i.Err != nil {
		return "not read"
	}
	var parts []string
	for _, f := range []struct {
		name string
		f    Feature
	}{{FeatureTX, i.TX}, {FeatureRX, i.RX}, {FeatureRecord, i.Record}} {
		switch {
		case f.f.Active:
			parts = append(parts, f.name+" on")
		case f.f.Supported:
			parts = append(parts, f.name+" off (supported: ethtool -K "+i.Name+" "+f.name+" on)")
		}
	}
	if len(parts) == 0 {
		return "no kTLS offload"
	}
	return strings.Join(parts, ", ")
}

// direction returns the feature that serves tx or rx and its name.
func (f Features) direction(tx bool) (Feature, string) {
	if tx {
		return f.TX, FeatureTX
	}
	return f.RX, FeatureRX
}

// anyOffers is nil if an interface has the direction's feature on, else an
// error wrapping backend.ErrNotSupported that names those checked.
func anyOffers(ifs []Interface, tx bool) error {
	var names []string
	for _, i := range ifs {
		if f, _ := i.direction(tx); i.Err == nil && f.Active {
			return nil
		}
		names = append(names, i.Name)
	}
	if len(names) > 4 {
		names = append(names[:4], "and "+strconv.Itoa(len(names)-4)+" more")
	}
	_, name := Features{}.direction(tx)
	return backend.NotSupported(backend.NIC, "no interface has %s on (%s)", name, strings.Join(names, ", "))
}

// featuresOf picks the three kTLS features out of a device's feature sets.
func featuresOf(hw, active map[string]bool) Features {
	f := func(name string) Feature { return Feature{Supported: hw[name], Active: active[name]} }
	return Features{TX: f(FeatureTX), RX: f(FeatureRX), Record: f(FeatureRecord)}
}

// parseFeatures reads an ETHTOOL_MSG_FEATURES_GET_REPLY's attributes (after
// the generic netlink header): the features the device can offer (hw) and
// those that are on (active), by name. The request asked for verbose bitsets
// (no ETHTOOL_FLAG_COMPACT_BITSETS), so every bit comes with its name
// (Documentation/networking/ethtool-netlink.rst, FEATURES_GET).
func parseFeatures(b []byte) (hw, active map[string]bool, err error) {
	attrs, err := netlink.ParseAttrs(b)
	if err != nil {
		return nil, nil, fmt.Errorf("nic: ethtool features reply: %w", err)
	}
	for _, a := range attrs {
		switch a.Type {
		case ethtoolAFeaturesHW:
			if hw, err = parseBitset(a.Data); err != nil {
				return nil, nil, fmt.Errorf("nic: ETHTOOL_A_FEATURES_HW: %w", err)
			}
		case ethtoolAFeaturesActive:
			if active, err = parseBitset(a.Data); err != nil {
				return nil, nil, fmt.Errorf("nic: ETHTOOL_A_FEATURES_ACTIVE: %w", err)
			}
		}
	}
	if hw == nil || active == nil {
		return nil, nil, errors.New("nic: the ethtool features reply lacks the hw or the active feature set")
	}
	return hw, active, nil
}

// parseBitset reads a verbose ethtool bitset (ethtool-netlink.rst, "Bit
// sets"): with ETHTOOL_A_BITSET_NOMASK every listed bit is set; otherwise the
// list is the mask (for the hw set, every feature the kernel knows) and a bit
// is set when it carries ETHTOOL_A_BITSET_BIT_VALUE. The result maps every
// listed name to whether it is set.
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

// link is what the engine needs of an RTM_NEWLINK message.
type link struct {
	index  int
	name   string
	kind   string
	flags  uint32
	master int
}

// parseLink reads an RTM_NEWLINK message: struct ifinfomsg {u8 family; u8
// pad; u16 type; s32 index; u32 flags; u32 change}, then IFLA_* attributes.
func parseLink(b []byte) (link, error) {
	if len(b) < ifinfomsgLen {
		return link{}, fmt.Errorf("nic: RTM_NEWLINK of %d bytes", len(b))
	}
	l := link{
		index: int(int32(binary.NativeEndian.Uint32(b[4:8]))),
		flags: binary.NativeEndian.Uint32(b[8:12]),
	}
	attrs, err := netlink.ParseAttrs(b[ifinfomsgLen:])
	if err != nil {
		return link{}, fmt.Errorf("nic: RTM_NEWLINK: %w", err)
	}
	for _, a := range attrs {
		switch a.Type {
		case iflaIfname:
			l.name = a.Str()
		case iflaMaster:
			if v, ok := a.U32(); ok {
				l.master = int(v)
			}
		case iflaLinkinfo:
			info, err := netlink.ParseAttrs(a.Data)
			if err != nil {
				return link{}, fmt.Errorf("nic: IFLA_LINKINFO: %w", err)
			}
			if k, ok := netlink.Find(info, iflaInfoKind); ok {
				l.kind = k.Str()
			}
		}
	}
	if l.name == "" {
		l.name = "if" + strconv.Itoa(l.index)
	}
	return l, nil
}

// device is the device the kernel will hand a socket to: the route's output
// link, and for a bond its members, one of which the kernel picks per
// socket (bond_sk_get_lower_dev).
type device struct {
	link
	members []link
}

// String names the device: "eth0", "bond0 (bond of eth0, eth1)".
func (d device) String() string {
	if len(d.members) == 0 {
		if d.kind != "" {
			return d.name + " (" + d.kind + ")"
		}
		return d.name
	}
	names := make([]string, len(d.members))
	for i, m := range d.members {
		names[i] = m.name
	}
	return d.name + " (bond of " + strings.Join(names, ", ") + ")"
}

// parseRouteOIF reads the output interface of an RTM_NEWROUTE message, the
// answer to a route lookup: struct rtmsg, then RTA_OIF.
func parseRouteOIF(b []byte) (int, error) {
	if len(b) < rtmsgLen {
		return 0, fmt.Errorf("nic: RTM_NEWROUTE of %d bytes", len(b))
	}
	attrs, err := netlink.ParseAttrs(b[rtmsgLen:])
	if err != nil {
		return 0, fmt.Errorf("nic: RTM_NEWROUTE: %w", err)
	}
	if a, ok := netlink.Find(attrs, rtaOIF); ok {
		if v, ok := a.U32(); ok && v != 0 {
			return int(v), nil
		}
	}
	return 0, errors.New("nic: the route has no output interface (RTA_OIF)")
}

// ulpInfo is what sock_diag says about a socket's TLS upper-layer protocol
// (net/tls/tls_main.c, tls_get_info).
type ulpInfo struct {
	// name is INET_ULP_INFO_NAME ("tls"), "" when the kernel sent none.
	name string
	// hasTLS: the kernel sent INET_ULP_INFO_TLS, which it does only to a
	// requester with CAP_NET_ADMIN (tcp_diag_get_aux).
	hasTLS         bool
	version        uint16
	cipher         uint16
	txConf, rxConf uint16 // TLS_CONF_*
	zeroCopyRO     bool   // TLS_INFO_ZC_RO_TX
}

// parseSockDiag reads a SOCK_DIAG_BY_FAMILY answer: struct inet_diag_msg,
// then INET_DIAG_* attributes, of which INET_DIAG_ULP_INFO (nested, without
// NLA_F_NESTED: nla_nest_start_noflag in tcp_diag_put_ulp) holds
// INET_ULP_INFO_NAME and INET_ULP_INFO_TLS {TLS_INFO_*}.
func parseSockDiag(b []byte) (ulpInfo, error) {
	if len(b) < inetDiagMsgLen {
		return ulpInfo{}, fmt.Errorf("nic: inet_diag_msg of %d bytes", len(b))
	}
	attrs, err := netlink.ParseAttrs(b[inetDiagMsgLen:])
	if err != nil {
		return ulpInfo{}, fmt.Errorf("nic: inet_diag_msg: %w", err)
	}
	var u ulpInfo
	a, ok := netlink.Find(attrs, inetDiagULPInfo)
	if !ok {
		return u, nil
	}
	ulp, err := netlink.ParseAttrs(a.Data)
	if err != nil {
		return ulpInfo{}, fmt.Errorf("nic: INET_DIAG_ULP_INFO: %w", err)
	}
	if n, ok := netlink.Find(ulp, inetULPInfoName); ok {
		u.name = n.Str()
	}
	t, ok := netlink.Find(ulp, inetULPInfoTLS)
	if !ok {
		return u, nil
	}
	info, err := netlink.ParseAttrs(t.Data)
	if err != nil {
		return ulpInfo{}, fmt.Errorf("nic: INET_ULP_INFO_TLS: %w", err)
	}
	u.hasTLS = true
	for _, f := range info {
		v, _ := f.U16()
		switch f.Type {
		case tlsInfoVersion:
			u.version = v
		case tlsInfoCipher:
			u.cipher = v
		case tlsInfoTXConf:
			u.txConf = v
		case tlsInfoRXConf:
			u.rxConf = v
		case tlsInfoZCROTX:
			u.zeroCopyRO = true
		}
	}
	return u, nil
}

// confName spells a TLS_CONF_* value as ss(8) does ("sw", "hw").
func confName(c uint16) string {
	switch c {
	case tlsConfBase:
		return "base"
	case tlsConfSW:
		return "sw"
	case tlsConfHW:
		return "hw"
	case tlsConfHWRecord:
		return "hw-record"
	}
	return "unknown (" + strconv.Itoa(int(c)) + ")"
}

// parseTLSStat reads /proc/net/tls_stat (net/tls/tls_proc.c: "name value"
// per line).
func parseTLSStat(b []byte) map[string]int64 {
	m := make(map[string]int64)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			m[f[0]] = v
		}
	}
	return m
}

// statVerdict reads the device and software counters of /proc/net/tls_stat
// before and after one install in direction tx: do_tls_setsockopt_conf
// counts TlsTxDevice on offload and TlsTxSw on the software path. The
// counters are the network namespace's, so another install at the same
// moment (another process: this one serializes its own) blurs them; only a
// clean answer counts: hw is true when the device counter moved and the
// software one did not, and ok is false when the counters cannot tell.
func statVerdict(before, after map[string]int64, tx bool) (hw, ok bool) {
	dev, sw := statRXDevice, statRXSw
	if tx {
		dev, sw = statTXDevice, statTXSw
	}
	dDev, dSW := after[dev]-before[dev], after[sw]-before[sw]
	switch {
	case dDev == 1 && dSW == 0:
		return true, true
	case dDev == 0 && dSW == 1:
		return false, true
	}
	return false, false
}
