package netlink

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Conn is a netlink socket for one request at a time. The doctor is a
// command, not the library: its few requests block their thread, with a
// receive timeout so that a kernel that never answers cannot hang it.
type Conn struct {
	fd  int
	seq uint32
}

func Dial(proto int, name string) (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_NETLINK, %s): %w", name, ErrnoError{err})
	}
	c := &Conn{fd: fd}
	tv := unix.Timeval{Sec: 2}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		c.Close()
		return nil, fmt.Errorf("setsockopt(SO_RCVTIMEO): %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		c.Close()
		return nil, fmt.Errorf("bind(AF_NETLINK, %s): %w", name, ErrnoError{err})
	}
	return c, nil
}

func (c *Conn) Close() error { return unix.Close(c.fd) }

// execute sends one request and returns the messages of its answer: one
// message, or with NLM_F_DUMP in flags every message up to NLMSG_DONE. An
// NLMSG_ERROR with an errno is returned as a unix.Errno.
func (c *Conn) Execute(typ, flags uint16, payload []byte) ([]Msg, error) {
	c.seq++
	req := NewMessage(typ, flags|FRequest, c.seq, payload)
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sendto: %w", err)
	}
	dump := flags&FDump == FDump
	buf := make([]byte, 256<<10)
	var out []Msg
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
		msgs, err := ParseMessages(append([]byte(nil), buf[:n]...))
		if err != nil {
			return out, err
		}
		for _, m := range msgs {
			if m.Seq != c.seq {
				continue
			}
			switch m.Type {
			case MsgError:
				errno, err := ErrnoOf(m)
				if err != nil {
					return out, err
				}
				if errno != 0 {
					return out, unix.Errno(errno)
				}
				return out, nil // an acknowledgement
			case MsgDone:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e < 0 {
						return out, unix.Errno(-e)
					}
				}
				return out, nil
			}
			out = append(out, m)
			if !dump && m.Flags&FMulti == 0 {
				return out, nil
			}
			if len(out) > maxReply {
				return out, errors.New("too many messages in the reply")
			}
		}
	}
}

// GenlFamily resolves a generic netlink family's id by name
// (CTRL_CMD_GETFAMILY).
func (c *Conn) GenlFamily(name string) (uint16, error) {
	payload := []byte{unix.CTRL_CMD_GETFAMILY, 1, 0, 0}
	payload = AppendAttr(payload, unix.CTRL_ATTR_FAMILY_NAME, append([]byte(name), 0))
	msgs, err := c.Execute(unix.GENL_ID_CTRL, 0, payload)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, fmt.Errorf("generic netlink has no %q family (ENOENT)", name)
		}
		return 0, fmt.Errorf("generic netlink family %q: %w", name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < GenlHdrLen {
			continue
		}
		attrs, err := ParseAttrs(m.Data[GenlHdrLen:])
		if err != nil {
			return 0, err
		}
		for _, a := range attrs {
			if a.Type == unix.CTRL_ATTR_FAMILY_ID {
				if id, ok := a.U16(); ok {
					return id, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("generic netlink family %q: no id in the reply", name)
}

// ErrnoError shows an errno as ErrnoText does and still wraps it.
type ErrnoError struct{ err error }

func (e ErrnoError) Error() string { return ErrnoText(e.err) }
func (e ErrnoError) Unwrap() error { return e.err }

// ErrnoText spells an errno as its name and message, "ENOENT (no such file
// or directory)"; other errors as they are.
func ErrnoText(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name + " (" + errno.Error() + ")"
		}
	}
	return err.Error()
}
