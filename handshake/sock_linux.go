package handshake

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// sockState is what net.FileConn changes on a socket it wraps, which the
// consumer shares with us: O_NONBLOCK on the open file description (the
// dup shares it), TCP_NODELAY on, and keepalive with Go's default idle,
// interval and count (net/tcpsock.go, newTCPConn; tcpsock_unix.go,
// SetKeepAliveConfig). They are read before the wrap and put back before
// DONE, so the consumer gets its socket as it handed it over.
type sockState struct {
	flags                                int
	nodelay, keepalive, idle, intvl, cnt int
}

var sockOpts = []struct {
	name       string
	level, opt int
	field      func(*sockState) *int
}{
	{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, func(s *sockState) *int { return &s.nodelay }},
	{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, func(s *sockState) *int { return &s.idle }},
	{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, func(s *sockState) *int { return &s.intvl }},
	{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, func(s *sockState) *int { return &s.cnt }},
	// SO_KEEPALIVE last: turning it off after the timers is what the
	// consumer had, whatever order it set them in.
	{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, func(s *sockState) *int { return &s.keepalive }},
}

func saveSockState(fd int) (sockState, error) {
	var s sockState
	var err error
	if s.flags, err = unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil {
		return s, fmt.Errorf("handshake: F_GETFL: %w", err)
	}
	for _, o := range sockOpts {
		v, err := unix.GetsockoptInt(fd, o.level, o.opt)
		if err != nil {
			return s, fmt.Errorf("handshake: getsockopt(%s): %w", o.name, err)
		}
		*o.field(&s) = v
	}
	return s, nil
}

// restore puts back every saved option that differs now, and the file
// status flags.
func (s sockState) restore(fd int) error {
	now, err := saveSockState(fd)
	if err != nil {
		return err
	}
	for _, o := range sockOpts {
		if v := *o.field(&s); v != *o.field(&now) {
			if err := unix.SetsockoptInt(fd, o.level, o.opt, v); err != nil {
				return fmt.Errorf("handshake: restoring %s: %w", o.name, err)
			}
		}
	}
	if now.flags != s.flags {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, s.flags); err != nil {
			return fmt.Errorf("handshake: restoring the file status flags: %w", err)
		}
	}
	return nil
}
