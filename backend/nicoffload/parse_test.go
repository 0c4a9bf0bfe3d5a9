package nicoffload

import (
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/backend"
	"github.com/ktls-go/ktls/internal/netlink"
)

// littleEndian says whether the captured netlink messages, which are in the
// byte order of the amd64 machines they came from, read right here.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// readCapture returns a captured message from testdata, in hex: the payload
// of one netlink message (for generic netlink, its header first).
func readCapture(t testing.TB, name string) []byte {
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
		for _, f := range append(tc.off, FeatureTX, FeatureRX, FeatureRecord) {
			if active[f] {
				t.Errorf("%s: %s active", tc.name, f)
			}
		}
		// The hw set lists every feature the kernel knows, so the kTLS
		// ones are there, and not set.
		for _, f := range []string{FeatureTX, FeatureRX, FeatureRecord} {
			if v, ok := hw[f]; !ok || v {
				t.Errorf("%s: hw[%s] = %v, %v; want listed and false", tc.name, f, v, ok)
			}
		}
		ifc := Interface{Name: tc.name, Features: featuresOf(hw, active)}
		if ifc.Summary() != "no kTLS offload" || ifc.Features != (Features{}) {
			t.Errorf("%s: %+v, want no kTLS offload", tc.name, ifc)
		}
		if err := anyOffers([]Interface{ifc}, true); !errors.Is(err, backend.ErrNotSupported) ||
			!strings.Contains(err.Error(), "no interface has tls-hw-tx-offload on ("+tc.name+")") {
			t.Errorf("anyOffers(tx) = %v", err)
		}
	}
}

// bitset builds a verbose ethtool bitset.
func bitset(nomask bool, bits map[string]bool) []byte {
	var list []byte
	for name, value := range bits {
		var bit []byte
		bit = netlink.AppendString(bit, ethtoolABitsetBitName, name)
		if value {
			bit = netlink.AppendAttr(bit, ethtoolABitsetBitValue, nil)
		}
		list = netlink.AppendNested(list, ethtoolABitsetBitsBit, bit)
	}
	var b []byte
	if nomask {
		b = netlink.AppendAttr(b, ethtoolABitsetNomask, nil)
	}
	return netlink.AppendNested(b, ethtoolABitsetBits, list)
}

// offloadReply is the FEATURES_GET reply of a device that offers kTLS as
// mlx5 does: TX on, RX supported but off by default
// (afalg-and-nic-offload.md, B.2).
func offloadReply() []byte {
	var reply []byte
	reply = netlink.AppendNested(reply, ethtoolAFeaturesHW, bitset(false, map[string]bool{
		FeatureTX: true, FeatureRX: true, FeatureRecord: false, "rx-gro": true,
	}))
	reply = netlink.AppendNested(reply, ethtoolAFeaturesWanted, bitset(true, map[string]bool{FeatureTX: true})) // ignored
	return netlink.AppendNested(reply, ethtoolAFeaturesActive, bitset(true, map[string]bool{FeatureTX: true, "rx-gro": true}))
}

func TestNICOffload(t *testing.T) {
	hw, active, err := parseFeatures(offloadReply())
	if err != nil {
		t.Fatal(err)
	}
	ifc := Interface{Name: "enp1s0f0np0", Features: featuresOf(hw, active)}
	if ifc.TX != (Feature{Supported: true, Active: true}) || ifc.RX != (Feature{Supported: true}) || ifc.Record != (Feature{}) {
		t.Errorf("features: %+v", ifc.Features)
	}
	want := "tls-hw-tx-offload on, tls-hw-rx-offload off (supported: ethtool -K enp1s0f0np0 tls-hw-rx-offload on)"
	if ifc.Summary() != want {
		t.Errorf("summary %q, want %q", ifc.Summary(), want)
	}
	lo := Interface{Name: "lo", Loopback: true}
	if err := anyOffers([]Interface{lo, ifc}, true); err != nil {
		t.Errorf("anyOffers(tx) = %v, want nil", err)
	}
	err = anyOffers([]Interface{lo, ifc}, false)
	if !errors.Is(err, backend.ErrNotSupported) || err.Error() != "nic: no interface has tls-hw-rx-offload on (lo, enp1s0f0np0): "+backend.ErrNotSupported.Error() {
		t.Errorf("anyOffers(rx) = %v", err)
	}
	if _, _, err := parseFeatures(nil); err == nil {
		t.Error("a reply without feature sets: no error")
	}
	if (Interface{Name: "x", Err: errors.New("EOPNOTSUPP")}).Summary() != "not read" {
		t.Error("an unread interface's summary")
	}
}

func TestOffloadable(t *testing.T) {
	for _, tc := range []struct {
		version, suite uint16
		ok             bool
	}{
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, true},
		{tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, true},
		{tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, true},
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, false},
		{tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, false},
		{tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, false},
		{tls.VersionTLS11, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, false},
	} {
		err := offloadable(tc.version, tc.suite)
		if (err == nil) != tc.ok || (err != nil && (!errors.Is(err, backend.ErrNotSupported) || !strings.HasPrefix(err.Error(), "nic: "))) {
			t.Errorf("offloadable(%s, %s) = %v", tls.VersionName(tc.version), tls.CipherSuiteName(tc.suite), err)
		}
	}
}

// TestParseRouteCaptured reads a real RTM_NEWROUTE, the answer of Linux
// 6.18 to the route lookup of a 127.0.0.1 connection: output interface 1,
// lo.
func TestParseRouteCaptured(t *testing.T) {
	oif, err := parseRouteOIF(readCapture(t, "rtm-newroute-127.0.0.1.hex"))
	if err != nil || oif != 1 {
		t.Errorf("parseRouteOIF = %d, %v; want 1", oif, err)
	}
	if _, err := parseRouteOIF(make([]byte, rtmsgLen)); err == nil {
		t.Error("a route without RTA_OIF: no error")
	}
	if _, err := parseRouteOIF(nil); err == nil {
		t.Error("a short rtmsg: no error")
	}
}

// TestParseLinkCaptured reads real RTM_NEWLINK messages of Linux 6.18: lo,
// and a veth with its kind.
func TestParseLinkCaptured(t *testing.T) {
	l, err := parseLink(readCapture(t, "rtm-newlink-lo.hex"))
	if err != nil || l.name != "lo" || l.index != 1 || l.kind != "" || l.flags&iffLoopback == 0 || l.flags&iffUp == 0 {
		t.Errorf("lo: %+v, %v", l, err)
	}
	l, err = parseLink(readCapture(t, "rtm-newlink-veth.hex"))
	if err != nil || l.name != "nicv0" || l.kind != "veth" || l.master != 0 {
		t.Errorf("veth: %+v, %v", l, err)
	}
	if d := (device{link: l}); d.String() != "nicv0 (veth)" {
		t.Errorf("device name %q", d.String())
	}
	bond := device{link: link{name: "bond0", kind: "bond"}, members: []link{{name: "eth0"}, {name: "eth1"}}}
	if bond.String() != "bond0 (bond of eth0, eth1)" {
		t.Errorf("bond name %q", bond.String())
	}
	if _, err := parseLink(make([]byte, 3)); err == nil {
		t.Error("a short ifinfomsg: no error")
	}
}

// TestParseSockDiagCaptured reads real sock_diag answers (asked with
// INET_DIAG_INFO, which the TLS block needs): a kTLS socket in software on
// Linux 7.3 in the VM (TLS 1.2 AES-GCM-128, txconf and rxconf sw, and
// TLS_INFO_TX_MAX_PAYLOAD_LEN, which the parser skips), and a plain TCP
// socket on the 6.18 host (no ULP).
func TestParseSockDiagCaptured(t *testing.T) {
	u, err := parseSockDiag(readCapture(t, "sock-diag-ktls-sw.hex"))
	if err != nil {
		t.Fatal(err)
	}
	want := ulpInfo{name: "tls", hasTLS: true, version: tls.VersionTLS12, cipher: testCipherAESGCM128, txConf: tlsConfSW, rxConf: tlsConfSW}
	if u != want {
		t.Errorf("kTLS socket: %+v, want %+v", u, want)
	}
	u, err = parseSockDiag(readCapture(t, "sock-diag-tcp.hex"))
	if err != nil || u != (ulpInfo{}) {
		t.Errorf("plain socket: %+v, %v", u, err)
	}
	if _, err := parseSockDiag(make([]byte, 10)); err == nil {
		t.Error("a short inet_diag_msg: no error")
	}
}

// TestParseSockDiagHW checks the reading of what a socket the device took
// looks like (tls_get_info: TXCONF hw and ZC_RO_TX), built from the
// captured software answer.
func TestParseSockDiagHW(t *testing.T) {
	var tlsInfo []byte
	tlsInfo = netlink.AppendAttr(tlsInfo, tlsInfoVersion, binary.NativeEndian.AppendUint16(nil, tls.VersionTLS12))
	tlsInfo = netlink.AppendAttr(tlsInfo, tlsInfoCipher, binary.NativeEndian.AppendUint16(nil, testCipherAESGCM256))
	tlsInfo = netlink.AppendAttr(tlsInfo, tlsInfoTXConf, binary.NativeEndian.AppendUint16(nil, tlsConfHW))
	tlsInfo = netlink.AppendAttr(tlsInfo, tlsInfoRXConf, binary.NativeEndian.AppendUint16(nil, tlsConfSW))
	tlsInfo = netlink.AppendAttr(tlsInfo, tlsInfoZCROTX, nil)
	var ulp []byte
	ulp = netlink.AppendString(ulp, inetULPInfoName, "tls")
	ulp = netlink.AppendAttr(ulp, inetULPInfoTLS, tlsInfo)
	msg := netlink.AppendAttr(make([]byte, inetDiagMsgLen), inetDiagULPInfo, ulp)
	u, err := parseSockDiag(msg)
	want := ulpInfo{name: "tls", hasTLS: true, version: tls.VersionTLS12, cipher: testCipherAESGCM256, txConf: tlsConfHW, rxConf: tlsConfSW, zeroCopyRO: true}
	if err != nil || u != want {
		t.Errorf("parseSockDiag = %+v, %v; want %+v", u, err, want)
	}
	if confName(u.txConf) != "hw" || confName(u.rxConf) != "sw" || confName(9) != "unknown (9)" {
		t.Error("confName")
	}
	// Without CAP_NET_ADMIN the kernel sends the name alone (Linux 6.15,
	// "tcp: ulp: diag: always print the name if any").
	msg = netlink.AppendAttr(make([]byte, inetDiagMsgLen), inetDiagULPInfo, netlink.AppendString(nil, inetULPInfoName, "tls"))
	if u, err := parseSockDiag(msg); err != nil || u != (ulpInfo{name: "tls"}) {
		t.Errorf("name only: %+v, %v", u, err)
	}
}

func TestTLSStat(t *testing.T) {
	// The layout of Linux 6.12's /proc/net/tls_stat (net/tls/tls_proc.c).
	before := parseTLSStat([]byte("TlsCurrTxSw                     \t0\nTlsCurrRxSw                     \t0\nTlsCurrTxDevice                 \t0\nTlsCurrRxDevice                 \t0\nTlsTxSw                         \t4\nTlsRxSw                         \t4\nTlsTxDevice                     \t0\nTlsRxDevice                     \t0\nTlsDecryptError                 \t0\n"))
	if before[statTXSw] != 4 || before[statRXDevice] != 0 || len(before) != 9 {
		t.Fatalf("parseTLSStat = %v", before)
	}
	after := func(kv ...any) map[string]int64 {
		m := make(map[string]int64)
		for k, v := range before {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] += int64(kv[i+1].(int))
		}
		return m
	}
	for _, tc := range []struct {
		after  map[string]int64
		tx     bool
		hw, ok bool
	}{
		{after(statTXDevice, 1), true, true, true},
		{after(statTXSw, 1), true, false, true},
		{after(statTXSw, 1, statTXDevice, 1), true, false, false}, // another socket too
		{after(statTXDevice, 2), true, false, false},
		{after(), true, false, false},
		{after(statRXDevice, 1, statTXSw, 1), false, true, true},
		{after(statRXSw, 1), false, false, true},
	} {
		if hw, ok := statVerdict(before, tc.after, tc.tx); hw != tc.hw || ok != tc.ok {
			t.Errorf("statVerdict(%v, tx %v) = %v, %v; want %v, %v", tc.after, tc.tx, hw, ok, tc.hw, tc.ok)
		}
	}
	// Before the tls module is loaded there is no file: every counter 0.
	if hw, ok := statVerdict(map[string]int64{}, map[string]int64{statRXSw: 1}, false); hw || !ok {
		t.Error("statVerdict from an absent file")
	}
}

// FuzzParse: whatever the kernel sends, the parsers return, with an error or
// without, and never panic.
func FuzzParse(f *testing.F) {
	f.Add(offloadReply())
	f.Add([]byte{})
	f.Add([]byte{4, 0, 2, 0})
	for _, name := range []string{"ethtool-features-lo.hex", "rtm-newroute-127.0.0.1.hex", "rtm-newlink-veth.hex", "sock-diag-ktls-sw.hex"} {
		if littleEndian {
			f.Add(readCapture(f, name))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parseFeatures(b)
		parseBitset(b)
		parseLink(b)
		parseRouteOIF(b)
		parseSockDiag(b)
		parseTLSStat(b)
	})
}

// The cipher types INET_DIAG_ULP_INFO reports, TLS_CIPHER_AES_GCM_128 and
// TLS_CIPHER_AES_GCM_256 (include/uapi/linux/tls.h).
const (
	testCipherAESGCM128 = 51
	testCipherAESGCM256 = 52
)
