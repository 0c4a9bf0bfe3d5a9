package main

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// nlConn is a netlink socket for one request at a time. The doctor is a
// command, not the library: its few requests block their thread, with a
// receive timeout so that a kernel that never answers cannot hang it.
type nlConn struct {
	fd  int
	seq uint32
}

func dialNetlink(proto int, name string) (*nlConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_NETLINK, %s): %w", name, errnoError{err})
	}
	c := &nlConn{fd: fd}
	tv := unix.Timeval{Sec: 2}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		c.Close()
		return nil, fmt.Errorf("setsockopt(SO_RCVTIMEO): %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		c.Close()
		return nil, fmt.Errorf("bind(AF_NETLINK, %s): %w", name, errnoError{err})
	}
	return c, nil
}

func (c *nlConn) Close() error { return unix.Close(c.fd) }

// execute sends one request and returns the messages of its answer: one
// message, or with NLM_F_DUMP in flags every message up to NLMSG_DONE. An
// NLMSG_ERROR with an errno is returned as a unix.Errno.
func (c *nlConn) execute(typ, flags uint16, payload []byte) ([]nlMsg, error) {
	c.seq++
	req := newMessage(typ, flags|nlmFRequest, c.seq, payload)
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sendto: %w", err)
	}
	dump := flags&nlmFDump == nlmFDump
	buf := make([]byte, 256<<10)
	var out []nlMsg
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, unix.MSG_TRUNC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return out, errors.New("no answer from the kernel within 2s")
		}
		if err != nil {
			return out, fmt.Errorf("recvfrom: %w", err)
		}
		if n > len(buf) {
			return out, fmt.Errorf("a reply of %d bytes does not fit in %d", n, len(buf))
		}
		msgs, err := parseMessages(append([]byte(nil), buf[:n]...))
		if err != nil {
			return out, err
		}
		for _, m := range msgs {
			if m.seq != c.seq {
				continue
			}
			switch m.typ {
			case nlmsgError:
				errno, err := errnoOf(m)
				if err != nil {
					return out, err
				}
				if errno != 0 {
					return out, unix.Errno(errno)
				}
				return out, nil // an acknowledgement
			case nlmsgDone:
				if len(m.data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.data)); e < 0 {
						return out, unix.Errno(-e)
					}
				}
				return out, nil
			}
			out = append(out, m)
			if !dump && m.flags&nlmFMulti == 0 {
				return out, nil
			}
			if len(out) > nlmsgMaxReply {
				return out, errors.New("too many messages in the reply")
			}
		}
	}
}

// genlFamily resolves a generic netlink family's id by name
// (CTRL_CMD_GETFAMILY).
func (c *nlConn) genlFamily(name string) (uint16, error) {
	payload := []byte{unix.CTRL_CMD_GETFAMILY, 1, 0, 0}
	payload = appendAttr(payload, unix.CTRL_ATTR_FAMILY_NAME, append([]byte(name), 0))
	msgs, err := c.execute(unix.GENL_ID_CTRL, 0, payload)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("generic netlink has no %q family (ENOENT)", name)
		}
		return 0, fmt.Errorf("generic netlink family %q: %w", name, err)
	}
	for _, m := range msgs {
		if len(m.data) < genlHdrLen {
			continue
		}
		attrs, err := parseAttrs(m.data[genlHdrLen:])
		if err != nil {
			return 0, err
		}
		for _, a := range attrs {
			if a.typ == unix.CTRL_ATTR_FAMILY_ID {
				if id, ok := a.u16(); ok {
					return id, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("generic netlink family %q: no id in the reply", name)
}

// errnoError shows an errno as errnoText does and still wraps it.
type errnoError struct{ err error }

func (e errnoError) Error() string { return errnoText(e.err) }
func (e errnoError) Unwrap() error { return e.err }

// errnoText spells an errno as its name and message, "ENOENT (no such file
// or directory)"; other errors as they are.
func errnoText(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name + " (" + errno.Error() + ")"
		}
	}
	return err.Error()
}
