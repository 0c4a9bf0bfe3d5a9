//go:build linux

package nicoffload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/internal/netlink"
)

// ethtoolFamily caches the id of the "ethtool" generic netlink family: the
// kernel assigns it when the family registers (built in, at boot), so it
// does not change while the process lives.
var ethtoolFamily atomic.Uint32

// ethtool is a generic netlink socket that reads device features.
type ethtool struct {
	c      *netlink.Conn
	family uint16
}

// dialEthtool opens ethtool netlink. Its errors are without the engine's
// name: the install's refusal (backend.NotSupported) and the exported
// functions add it.
func dialEthtool() (*ethtool, error) {
	c, err := netlink.Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		return nil, err
	}
	if id := ethtoolFamily.Load(); id != 0 {
		return &ethtool{c, uint16(id)}, nil
	}
	id, err := c.GenlFamily(ethtoolGenlName)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: the kernel has no ethtool netlink (CONFIG_ETHTOOL_NETLINK, Linux 5.6)", err)
	}
	ethtoolFamily.Store(uint32(id))
	return &ethtool{c, id}, nil
}

func (e *ethtool) Close() error { return e.c.Close() }

// features asks for one device's features, with verbose bitsets
// (ETHTOOL_MSG_FEATURES_GET: a GET needs no privilege, ethtool-netlink.rst).
func (e *ethtool) features(index int) (Features, error) {
	header := netlink.AppendU32(nil, ethtoolAHeaderDevIndex, uint32(index))
	payload := []byte{ethtoolMsgFeaturesGet, ethtoolGenlVersion, 0, 0}
	payload = netlink.AppendNested(payload, ethtoolAFeaturesHeader, header)
	msgs, err := e.c.Execute(e.family, 0, payload)
	if err != nil {
		return Features{}, fmt.Errorf("nic: ETHTOOL_MSG_FEATURES_GET: %s", netlink.ErrnoText(err))
	}
	for _, m := range msgs {
		if m.Type == e.family && len(m.Data) >= netlink.GenlHdrLen {
			hw, active, err := parseFeatures(m.Data[netlink.GenlHdrLen:])
			if err != nil {
				return Features{}, err
			}
			return featuresOf(hw, active), nil
		}
	}
	return Features{}, errors.New("nic: ETHTOOL_MSG_FEATURES_GET: no reply")
}

// DeviceFeatures reads the kTLS features of the device with this interface
// index over ethtool netlink.
func DeviceFeatures(index int) (Features, error) {
	e, err := dialEthtool()
	if err != nil {
		return Features{}, fmt.Errorf("nic: %w", err)
	}
	defer e.Close()
	return e.features(index)
}

// Interfaces lists the network interfaces of the calling thread's network
// namespace with their kTLS features, read over ethtool netlink by name. An
// interface whose features could not be read has Err set; the error is for
// the listing as a whole (no rtnetlink, no ethtool netlink), and then the
// interfaces listed so far come with it.
func Interfaces() ([]Interface, error) {
	rt, err := netlink.Dial(unix.NETLINK_ROUTE, "NETLINK_ROUTE")
	if err != nil {
		return nil, fmt.Errorf("nic: %w", err)
	}
	links, err := dumpLinks(rt)
	rt.Close()
	if err != nil {
		return nil, err
	}
	out := make([]Interface, 0, len(links))
	for _, l := range links {
		out = append(out, interfaceOf(l))
	}
	e, err := dialEthtool()
	if err != nil {
		err = fmt.Errorf("nic: %w", err)
		for k := range out {
			out[k].Err = err
		}
		return out, err
	}
	defer e.Close()
	for k := range out {
		out[k].Features, out[k].Err = e.features(out[k].Index)
	}
	return out, nil
}

func interfaceOf(l link) Interface {
	return Interface{Name: l.name, Index: l.index, Kind: l.kind, Master: l.master,
		Up: l.flags&iffUp != 0, Loopback: l.flags&iffLoopback != 0}
}

// dumpLinks lists every link (RTM_GETLINK with NLM_F_DUMP).
func dumpLinks(c *netlink.Conn) ([]link, error) {
	msgs, err := c.Execute(rtmGetLink, netlink.FDump, make([]byte, ifinfomsgLen))
	if err != nil {
		return nil, fmt.Errorf("nic: RTM_GETLINK dump: %w", err)
	}
	var out []link
	for _, m := range msgs {
		if m.Type != rtmNewLink {
			continue
		}
		l, err := parseLink(m.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// linkRequest is the RTM_GETLINK of one link: struct ifinfomsg with its
// index.
func linkRequest(index int) []byte {
	req := make([]byte, ifinfomsgLen)
	binary.NativeEndian.PutUint32(req[4:8], uint32(index))
	return req
}

// getLink reads one link by index.
func getLink(c *netlink.Conn, index int) (link, error) {
	msgs, err := c.Execute(rtmGetLink, 0, linkRequest(index))
	if err != nil {
		return link{}, fmt.Errorf("nic: RTM_GETLINK %d: %w", index, err)
	}
	for _, m := range msgs {
		if m.Type == rtmNewLink {
			return parseLink(m.Data)
		}
	}
	return link{}, fmt.Errorf("nic: RTM_GETLINK %d: no reply", index)
}

// sockInfo is what the route lookup and sock_diag need of a socket.
type sockInfo struct {
	// family is the socket's (AF_INET6 for an IPv4 peer reached through a
	// dual-stack socket: sock_diag looks it up so, with ::ffff:a.b.c.d).
	family        int
	local, remote netip.AddrPort
	boundIf       int    // SO_BINDTOIFINDEX (SO_BINDTODEVICE, a VRF)
	mark          uint32 // SO_MARK
	cookie        uint64 // SO_COOKIE (Linux 4.12); 0 if none
}

// socketOf reads the socket's addresses and the options that steer its
// route. Its errors are without the engine's name, as dialEthtool's.
func socketOf(tcp *net.TCPConn) (sockInfo, error) {
	rc, err := tcp.SyscallConn()
	if err != nil {
		return sockInfo{}, err
	}
	var s sockInfo
	var serr error
	err = rc.Control(func(fd uintptr) {
		var la, ra unix.Sockaddr
		if la, serr = unix.Getsockname(int(fd)); serr != nil {
			serr = fmt.Errorf("getsockname: %w", serr)
			return
		}
		if ra, serr = unix.Getpeername(int(fd)); serr != nil {
			serr = fmt.Errorf("getpeername: %w", serr)
			return
		}
		switch la := la.(type) {
		case *unix.SockaddrInet4:
			s.family = unix.AF_INET
			s.local = netip.AddrPortFrom(netip.AddrFrom4(la.Addr), uint16(la.Port))
		case *unix.SockaddrInet6:
			s.family = unix.AF_INET6
			s.local = netip.AddrPortFrom(netip.AddrFrom16(la.Addr), uint16(la.Port))
		default:
			serr = fmt.Errorf("not an IP socket (%T)", la)
			return
		}
		switch ra := ra.(type) {
		case *unix.SockaddrInet4:
			s.remote = netip.AddrPortFrom(netip.AddrFrom4(ra.Addr), uint16(ra.Port))
		case *unix.SockaddrInet6:
			s.remote = netip.AddrPortFrom(netip.AddrFrom16(ra.Addr), uint16(ra.Port))
		}
		// Each of these is best effort: a kernel without the option
		// has no such steering either.
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX); err == nil {
			s.boundIf = v
		}
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK); err == nil {
			s.mark = uint32(v)
		}
		if v, err := unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE); err == nil {
			s.cookie = v
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return sockInfo{}, err
	}
	return s, nil
}

// routeRequest builds the RTM_GETROUTE of the packets s sends: struct rtmsg,
// RTA_DST, RTA_SRC, and what policy routing may match on (RTA_OIF, RTA_MARK,
// RTA_UID, RTA_IP_PROTO, RTA_SPORT, RTA_DPORT; rtnetlink(7),
// net/ipv4/route.c inet_rtm_getroute). A dual-stack socket with an IPv4
// peer routes as IPv4.
func routeRequest(s sockInfo, uid uint32) []byte {
	dst, src := s.remote.Addr().Unmap(), s.local.Addr().Unmap()
	family, bits := byte(unix.AF_INET6), byte(128)
	if dst.Is4() {
		family, bits = unix.AF_INET, 32
	}
	b := make([]byte, rtmsgLen)
	b[0], b[1], b[2] = family, bits, bits // rtm_family, rtm_dst_len, rtm_src_len
	b = netlink.AppendAttr(b, rtaDst, dst.AsSlice())
	if src.Is4() == dst.Is4() && !src.IsUnspecified() {
		b = netlink.AppendAttr(b, rtaSrc, src.AsSlice())
	}
	if s.boundIf != 0 {
		b = netlink.AppendU32(b, rtaOIF, uint32(s.boundIf))
	}
	if s.mark != 0 {
		b = netlink.AppendU32(b, rtaMark, s.mark)
	}
	b = netlink.AppendU32(b, rtaUID, uid)
	b = netlink.AppendAttr(b, rtaIPProto, []byte{unix.IPPROTO_TCP})
	b = netlink.AppendAttr(b, rtaSport, binary.BigEndian.AppendUint16(nil, s.local.Port()))
	b = netlink.AppendAttr(b, rtaDport, binary.BigEndian.AppendUint16(nil, s.remote.Port()))
	return b
}

// egress finds the device the kernel will hand s to
// (net/tls/tls_device.c, get_netdev_for_sock: the socket's route's device,
// then netdev_sk_get_lowest_dev, which only a bond descends through).
func egress(s sockInfo) (device, error) {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, "NETLINK_ROUTE")
	if err != nil {
		return device{}, fmt.Errorf("nic: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(rtmGetRoute, 0, routeRequest(s, uint32(os.Geteuid())))
	if err != nil {
		return device{}, fmt.Errorf("nic: route lookup to %v: %w", s.remote.Addr(), err)
	}
	oif := 0
	for _, m := range msgs {
		if m.Type == rtmNewRoute {
			if oif, err = parseRouteOIF(m.Data); err != nil {
				return device{}, err
			}
			break
		}
	}
	if oif == 0 {
		return device{}, fmt.Errorf("nic: route lookup to %v: no route", s.remote.Addr())
	}
	l, err := getLink(c, oif)
	if err != nil {
		return device{}, err
	}
	d := device{link: l}
	if l.kind == "bond" {
		all, err := dumpLinks(c)
		if err != nil {
			return device{}, err
		}
		for _, m := range all {
			if m.master == l.index {
				d.members = append(d.members, m)
			}
		}
	}
	return d, nil
}

// Egress names the device the kernel would offload c's records to, and for
// a bond its members; it reads the route as the kernel does for a new kTLS
// socket, without touching c.
func Egress(c *net.TCPConn) (string, error) {
	s, err := socketOf(c)
	if err != nil {
		return "", fmt.Errorf("nic: %w", err)
	}
	d, err := egress(s)
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// sockDiagRequest builds the exact lookup of s: struct inet_diag_req_v2 with
// the socket's addresses, ports and cookie (include/uapi/linux/inet_diag.h;
// without NLM_F_DUMP the kernel answers for this one socket,
// inet_diag_find_one_icsk, and ESTALE when the cookie is another socket's).
func sockDiagRequest(s sockInfo) []byte {
	b := make([]byte, inetDiagReqLen)
	b[0] = byte(s.family)
	b[1] = unix.IPPROTO_TCP
	// idiag_ext must ask for INET_DIAG_INFO: inet_sk_diag_fill calls the
	// protocol's idiag_get_aux, which adds INET_DIAG_ULP_INFO, only then
	// (net/ipv4/inet_diag.c; ss(8) shows the TLS block with -i only).
	b[2] = 1 << (inetDiagInfo - 1)
	binary.NativeEndian.PutUint32(b[4:8], ^uint32(0)) // idiag_states: any
	id := b[8:]
	binary.BigEndian.PutUint16(id[0:2], s.local.Port())
	binary.BigEndian.PutUint16(id[2:4], s.remote.Port())
	if s.family == unix.AF_INET {
		a, r := s.local.Addr().Unmap().As4(), s.remote.Addr().Unmap().As4()
		copy(id[4:8], a[:])
		copy(id[20:24], r[:])
	} else {
		a, r := s.local.Addr().As16(), s.remote.Addr().As16()
		copy(id[4:20], a[:])
		copy(id[20:36], r[:])
	}
	binary.NativeEndian.PutUint32(id[36:40], uint32(s.boundIf))
	lo, hi := inetDiagNoCookie, inetDiagNoCookie
	if s.cookie != 0 {
		lo, hi = uint32(s.cookie), uint32(s.cookie>>32)
	}
	binary.NativeEndian.PutUint32(id[40:44], lo)
	binary.NativeEndian.PutUint32(id[44:48], hi)
	return b
}

// sockDiag asks the kernel what it did with s's TLS upper-layer protocol.
// The TLS block comes only to a requester with CAP_NET_ADMIN in the
// namespace's user namespace (tcp_diag_get_aux); ulpInfo.hasTLS says
// whether it came.
func sockDiag(s sockInfo) (ulpInfo, []byte, error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, "NETLINK_SOCK_DIAG")
	if err != nil {
		return ulpInfo{}, nil, fmt.Errorf("nic: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(sockDiagByFamily, 0, sockDiagRequest(s))
	if err != nil {
		return ulpInfo{}, nil, fmt.Errorf("nic: sock_diag: %w", err)
	}
	for _, m := range msgs {
		if m.Type == sockDiagByFamily {
			u, err := parseSockDiag(m.Data)
			return u, m.Data, err
		}
	}
	return ulpInfo{}, nil, errors.New("nic: sock_diag: no reply")
}

// readTLSStat reads the tls_stat of the calling thread's network namespace,
// the one its netlink sockets ask: /proc/net is the thread group leader's
// (/proc/self), /proc/thread-self/net the thread's own (Linux 3.17). The
// result is empty where the file is absent (no tls module loaded yet: every
// counter is 0).
func readTLSStat() map[string]int64 {
	b, err := os.ReadFile("/proc/thread-self/net/tls_stat")
	if err != nil {
		if b, err = os.ReadFile(procTLSStat); err != nil {
			return map[string]int64{}
		}
	}
	return parseTLSStat(b)
}
