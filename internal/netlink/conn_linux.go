package netlink

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktls-go/ktls/internal/rawio"
)

// DefaultTimeout bounds one request of a [Conn] unless SetTimeout says
// otherwise: a kernel that never answers cannot hang the caller.
const DefaultTimeout = 2 * time.Second

// Conn is a netlink socket for one request at a time (not safe for
// concurrent use). The socket is non-blocking and parked on the Go netpoller
// through an *os.File's syscall.RawConn (docs/ARCHITECTURE.md, house rule 7, the model being
// mdlayher/socket): waiting for the kernel's answer parks the goroutine, not
// its thread, and each request has a deadline.
//
// A netlink socket talks to the network namespace of the thread that created
// it: Dial from the namespace whose routes, links and sockets are meant.
type Conn struct {
	f       *os.File
	rc      syscall.RawConn
	seq     uint32
	timeout time.Duration
	buf     []byte
}

// Dial opens a netlink socket of protocol proto (unix.NETLINK_ROUTE, ...);
// name spells proto in errors.
func Dial(proto int, name string) (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		return nil, fmt.Errorf("netlink: socket(AF_NETLINK, %s): %w", name, ErrnoError{err})
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink: bind(AF_NETLINK, %s): %w", name, ErrnoError{err})
	}
	// os.NewFile sees O_NONBLOCK and registers the fd with the netpoller,
	// which is what makes SetDeadline and RawConn.Read park.
	f := os.NewFile(uintptr(fd), "netlink:"+name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netlink: %s: %w", name, err)
	}
	return &Conn{f: f, rc: rc, timeout: DefaultTimeout}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.f.Close() }

// SetTimeout sets the limit of each later request (d <= 0: none).
func (c *Conn) SetTimeout(d time.Duration) { c.timeout = d }

// Execute sends one request and returns the messages of its answer: one
// message, or with NLM_F_DUMP in flags every message up to NLMSG_DONE. An
// NLMSG_ERROR with an errno is returned as a unix.Errno; an acknowledgement
// (asked for with NLM_F_ACK) ends the answer without an error.
func (c *Conn) Execute(typ, flags uint16, payload []byte) ([]Msg, error) {
	c.seq++
	if c.timeout > 0 {
		if err := c.f.SetDeadline(time.Now().Add(c.timeout)); err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
	} else {
		c.f.SetDeadline(time.Time{})
	}
	req := NewMessage(typ, flags|FRequest, c.seq, payload)
	err := cmp.Or(rawio.Write(c.rc, func(fd int) error {
		return unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	}))
	if err != nil {
		return nil, c.ioError("sendto", err)
	}
	dump := flags&FDump == FDump
	if c.buf == nil {
		c.buf = make([]byte, 256<<10)
	}
	var out []Msg
	for {
		n, err := c.recv()
		if err != nil {
			return out, c.ioError("recvfrom", err)
		}
		if n > len(c.buf) {
			return out, fmt.Errorf("netlink: a reply of %d bytes does not fit in %d", n, len(c.buf))
		}
		msgs, err := ParseMessages(append([]byte(nil), c.buf[:n]...))
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
				return out, errors.New("netlink: too many messages in the reply")
			}
		}
	}
}

// ioError says what a send or receive returned; a deadline names the limit.
func (c *Conn) ioError(op string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("netlink: no answer from the kernel within %v: %w", c.timeout, err)
	}
	return fmt.Errorf("netlink: %s: %w", op, ErrnoError{err})
}

// GenlFamily resolves a generic netlink family's id by name
// (CTRL_CMD_GETFAMILY).
func (c *Conn) GenlFamily(name string) (uint16, error) {
	f, err := c.GenlFamilyInfo(name)
	return f.ID, err
}

// GenlFamilyInfo resolves a generic netlink family by name
// (CTRL_CMD_GETFAMILY): its id, version, highest attribute and multicast
// groups. A kernel without the family answers ENOENT, which the error wraps.
func (c *Conn) GenlFamilyInfo(name string) (Family, error) {
	payload := []byte{unix.CTRL_CMD_GETFAMILY, 1, 0, 0}
	payload = AppendAttr(payload, unix.CTRL_ATTR_FAMILY_NAME, append([]byte(name), 0))
	msgs, err := c.Execute(unix.GENL_ID_CTRL, 0, payload)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return Family{}, fmt.Errorf("generic netlink has no %q family (ENOENT): %w", name, err)
		}
		return Family{}, fmt.Errorf("generic netlink family %q: %w", name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < GenlHdrLen {
			continue
		}
		return ParseFamily(m.Data[GenlHdrLen:])
	}
	return Family{}, fmt.Errorf("generic netlink family %q: no id in the reply", name)
}

// GenlOpPolicy returns the attribute types that operation op of family
// accepts in a request (CTRL_CMD_GETPOLICY with CTRL_ATTR_OP). A kernel
// that cannot say (before Linux 5.12, or an operation without a policy)
// answers an error, or a dump without one: then the caller knows nothing.
func (c *Conn) GenlOpPolicy(family uint16, op uint8) ([]uint16, error) {
	payload := []byte{ctrlCmdGetPolicy, 1, 0, 0}
	payload = AppendAttr(payload, ctrlAttrFamilyID, binary.NativeEndian.AppendUint16(nil, family))
	payload = AppendU32(payload, ctrlAttrOp, uint32(op))
	msgs, err := c.Execute(unix.GENL_ID_CTRL, FDump, payload)
	if err != nil {
		return nil, fmt.Errorf("netlink: CTRL_CMD_GETPOLICY: %w", err)
	}
	if len(msgs) > maxPolicyMessages {
		return nil, errors.New("netlink: CTRL_CMD_GETPOLICY: too many messages")
	}
	var payloads [][]byte
	for _, m := range msgs {
		if len(m.Data) >= GenlHdrLen {
			payloads = append(payloads, m.Data[GenlHdrLen:])
		}
	}
	types, ok := ParseOpPolicy(payloads, uint32(op))
	if !ok {
		return nil, fmt.Errorf("netlink: CTRL_CMD_GETPOLICY: no policy for operation %d", op)
	}
	return types, nil
}

// JoinGroup subscribes the socket to multicast group id
// (NETLINK_ADD_MEMBERSHIP, netlink(7)). Notifications then arrive for
// Receive; a socket that joins groups is best kept for them alone, since
// Execute skips messages that do not answer its request.
func (c *Conn) JoinGroup(id uint32) error {
	var err error
	if cerr := c.rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(id))
	}); cerr != nil {
		return fmt.Errorf("netlink: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("netlink: NETLINK_ADD_MEMBERSHIP %d: %w", id, ErrnoError{err})
	}
	return nil
}

// Receive waits for the next datagram on the socket and returns its
// messages: notifications of the groups it joined. It parks the goroutine
// until one arrives or ctx ends (then it returns ctx's error). ENOBUFS says
// the socket's buffer overflowed and notifications were lost (netlink(7)).
func (c *Conn) Receive(ctx context.Context) ([]Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.f.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { c.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if c.buf == nil {
		c.buf = make([]byte, 256<<10)
	}
	n, err := c.recv()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("netlink: recvfrom: %w", ErrnoError{err})
	}
	if n > len(c.buf) {
		return nil, fmt.Errorf("netlink: a message of %d bytes does not fit in %d", n, len(c.buf))
	}
	return ParseMessages(append([]byte(nil), c.buf[:n]...))
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

// recv reads one datagram into c.buf on the netpoller and returns its
// length; MSG_TRUNC makes a datagram larger than c.buf say so (n >
// len(c.buf)) instead of being cut silently (netlink(7)).
func (c *Conn) recv() (n int, err error) {
	err = cmp.Or(rawio.Read(c.rc, func(fd int) (err error) {
		n, _, err = unix.Recvfrom(fd, c.buf, unix.MSG_TRUNC)
		return err
	}))
	return n, err
}
