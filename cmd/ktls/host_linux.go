package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ktls-go/ktls/internal/netlink"
	"golang.org/x/sys/unix"
)

// hostIsLinux says the kernel is Linux, whose files the diagnosis reads.
const hostIsLinux = true

// uname returns the kernel release and the machine.
func uname() (release, machine string, err error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", "", fmt.Errorf("uname: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:]), nil
}

// probeULP attaches the "tls" upper-layer protocol to a connected loopback
// TCP socket, as the kernel engine does first (Documentation/networking/
// tls.rst): ENOENT means the kernel has no tls module it can load.
func probeULP() Status {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return Status{State: stateError, Reason: "loopback listener: " + err.Error()}
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return Status{State: stateError, Reason: "loopback dial: " + err.Error()}
	}
	defer c.Close()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := ln.AcceptTCP()
	if err != nil {
		return Status{State: stateError, Reason: "loopback accept: " + err.Error()}
	}
	defer s.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return Status{State: stateError, Reason: err.Error()}
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_ULP, "tls")
	}); err != nil {
		return Status{State: stateError, Reason: err.Error()}
	}
	const what = `setsockopt(TCP_ULP, "tls")`
	switch {
	case serr == nil:
		return Status{State: stateAvailable, Reason: what + " on a loopback socket"}
	case errors.Is(serr, unix.ENOENT):
		return Status{State: stateUnavailable, Reason: what + ": " + netlink.ErrnoText(serr) + ": the kernel has no tls module (CONFIG_TLS) it can load"}
	}
	return Status{State: stateError, Reason: what + ": " + netlink.ErrnoText(serr)}
}

// availableULP reads the ULPs the kernel has registered.
func availableULP() []string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_ulp")
	if err != nil {
		return nil
	}
	return append([]string{}, strings.Fields(string(b))...)
}

// tlsStat reads /proc/net/tls_stat; nil where it is absent.
func tlsStat() map[string]int64 {
	b, err := os.ReadFile("/proc/net/tls_stat")
	if err != nil {
		return nil
	}
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
