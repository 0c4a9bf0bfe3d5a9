package netlink

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestConn resolves generic netlink families over a real socket, which is
// non-blocking on the netpoller and close-on-exec (docs/ARCHITECTURE.md, house rule 7).
func TestConn(t *testing.T) {
	c, err := Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.rc.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Errorf("F_GETFL = %#x, %v; want O_NONBLOCK", fl, err)
		}
		fd2, err := unix.FcntlInt(fd, unix.F_GETFD, 0)
		if err != nil || fd2&unix.FD_CLOEXEC == 0 {
			t.Errorf("F_GETFD = %#x, %v; want FD_CLOEXEC", fd2, err)
		}
	})
	if id, err := c.GenlFamily("nlctrl"); err != nil || id != unix.GENL_ID_CTRL {
		t.Errorf("GenlFamily(nlctrl) = %d, %v", id, err)
	}
	if _, err := c.GenlFamily("no-such-family"); err == nil || !strings.Contains(err.Error(), "ENOENT") {
		t.Errorf("GenlFamily(no-such-family) = %v", err)
	}
}

// TestConnDeadline: a kernel that does not answer parks the goroutine until
// the request's deadline, and the error says so. The kernel answers nothing
// to NLMSG_NOOP unless asked for an acknowledgement (net/netlink/af_netlink.c,
// netlink_rcv_skb: control types below NLMSG_MIN_TYPE go to "ack", which
// acknowledges only with NLM_F_ACK or an error).
func TestConnDeadline(t *testing.T) {
	c, err := Dial(unix.NETLINK_ROUTE, "NETLINK_ROUTE")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetTimeout(100 * time.Millisecond)
	start := time.Now()
	_, err = c.Execute(unix.NLMSG_NOOP, 0, nil)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "no answer from the kernel within 100ms") {
		t.Errorf("Execute to nobody = %v", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 5*time.Second {
		t.Errorf("Execute gave up after %v", d)
	}
}

// TestGenlFamilyInfo reads nlctrl's own description, which has had the
// "notify" multicast group since generic netlink began
// (net/netlink/genetlink.c), joins it, and waits for a notification that
// does not come until the context ends.
func TestGenlFamilyInfo(t *testing.T) {
	c, err := Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := c.GenlFamilyInfo("nlctrl")
	if err != nil {
		t.Fatal(err)
	}
	id, ok := f.Groups["notify"]
	if f.ID != unix.GENL_ID_CTRL || f.Name != "nlctrl" || !ok {
		t.Fatalf("GenlFamilyInfo(nlctrl) = %+v", f)
	}
	if _, err := c.GenlFamilyInfo("no-such-family"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("GenlFamilyInfo(no-such-family) = %v, want ENOENT", err)
	}
	l, err := Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.JoinGroup(id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if msgs, err := l.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive = %v, %v; want the context's deadline", msgs, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Receive gave up after %v", d)
	}
	cancel()
	if _, err := l.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		t.Errorf("Receive with an ended context = %v", err)
	}
}

// TestGenlOpPolicy asks the kernel what nlctrl's own operations accept
// (net/netlink/genetlink.c): ctrl_policy_family for CTRL_CMD_GETFAMILY's
// do; CTRL_CMD_GETPOLICY is a dump only, so it has no do policy to tell.
func TestGenlOpPolicy(t *testing.T) {
	c, err := Dial(unix.NETLINK_GENERIC, "NETLINK_GENERIC")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := []uint16{unix.CTRL_ATTR_FAMILY_ID, unix.CTRL_ATTR_FAMILY_NAME}
	if got, err := c.GenlOpPolicy(unix.GENL_ID_CTRL, unix.CTRL_CMD_GETFAMILY); err != nil || !slices.Equal(got, want) {
		t.Errorf("GenlOpPolicy(nlctrl, GETFAMILY) = %v, %v; want %v", got, err, want)
	}
	if got, err := c.GenlOpPolicy(unix.GENL_ID_CTRL, ctrlCmdGetPolicy); err == nil {
		t.Errorf("GenlOpPolicy(nlctrl, GETPOLICY) = %v: a dump-only operation has no do policy", got)
	}
}
