package handshake

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ktls-go/ktls/internal/netlink"
)

// The handshake family's protocol, from Documentation/netlink/specs/handshake.yaml
// and include/uapi/linux/handshake.h. Parsing and encoding are portable so
// that tests and fuzzing run everywhere; the socket is Linux's.
const (
	// FamilyName is the generic netlink family (Linux 6.4,
	// CONFIG_NET_HANDSHAKE).
	FamilyName = "handshake"
	// GroupName is the multicast group where READY notifications for
	// the TLS handler class arrive.
	GroupName = "tlshd"

	cmdReady  = 1 // HANDSHAKE_CMD_READY
	cmdAccept = 2 // HANDSHAKE_CMD_ACCEPT
	cmdDone   = 3 // HANDSHAKE_CMD_DONE

	handlerClassTLSHD = 1 // HANDSHAKE_HANDLER_CLASS_TLSHD

	// The accept attribute set. PEERNAME and KEYRING came after the
	// family's first release: they are read when the kernel sends them.
	attrAcceptSockfd       = 1 // u32
	attrAcceptHandlerClass = 2 // u32
	attrAcceptMessageType  = 3 // u32, MsgType
	attrAcceptTimeout      = 4 // u32, milliseconds; absent: none
	attrAcceptAuthMode     = 5 // u32, AuthMode
	attrAcceptPeerIdentity = 6 // u32 key serial, multi-attr (PSK)
	attrAcceptCertificate  = 7 // nest of the x509 set, multi-attr
	attrAcceptPeername     = 8 // string
	attrAcceptKeyring      = 9 // u32 key serial

	attrX509Cert    = 1 // u32 key serial
	attrX509Privkey = 2 // u32 key serial

	attrDoneStatus     = 1 // u32, a positive errno; 0 is success
	attrDoneSockfd     = 2 // u32
	attrDoneRemoteAuth = 3 // u32 key serial, multi-attr

	genlVersion = 1 // HANDSHAKE_FAMILY_VERSION
)

// MsgType says which side of the handshake the kernel's consumer wants.
type MsgType uint32

const (
	ClientHello MsgType = 1 // HANDSHAKE_MSG_TYPE_CLIENTHELLO: we are the TLS client
	ServerHello MsgType = 2 // HANDSHAKE_MSG_TYPE_SERVERHELLO: we are the TLS server
)

func (t MsgType) String() string {
	switch t {
	case ClientHello:
		return "client"
	case ServerHello:
		return "server"
	}
	return fmt.Sprintf("message type %d", uint32(t))
}

// AuthMode is how the consumer wants the session authenticated.
type AuthMode uint32

const (
	AuthUnauth AuthMode = 1 // HANDSHAKE_AUTH_UNAUTH: encryption only, the client verifies the server
	AuthPSK    AuthMode = 2 // HANDSHAKE_AUTH_PSK
	AuthX509   AuthMode = 3 // HANDSHAKE_AUTH_X509
)

func (a AuthMode) String() string {
	switch a {
	case AuthUnauth:
		return "unauth"
	case AuthPSK:
		return "psk"
	case AuthX509:
		return "x509"
	}
	return fmt.Sprintf("auth mode %d", uint32(a))
}

// noKey is TLS_NO_CERT, TLS_NO_PRIVKEY and TLS_NO_PEERID
// (include/net/handshake.h): no key serial.
const noKey = 0

// Request is one handshake request, as an ACCEPT reply describes it.
type Request struct {
	// Sockfd is the descriptor ACCEPT installed in this process: the
	// kernel consumer's socket (net/handshake/netlink.c, handshake_dup).
	Sockfd int
	Type   MsgType
	Auth   AuthMode
	// TimeoutMillis is the kernel's limit for the handshake; 0: none given.
	TimeoutMillis uint32
	// PeerIdentities are PSK key serials (AuthPSK).
	PeerIdentities []uint32
	// Cert and PrivKey are key serials of our certificate and private key
	// (AuthX509); 0 where the consumer named none.
	Cert, PrivKey uint32
	// Peername is the name the consumer expects the server to prove
	// (newer kernels); "" where the kernel sent none.
	Peername string
	// Keyring is the serial of a keyring the kernel linked into this
	// process's keyring for the request (newer kernels); 0 where none.
	Keyring uint32
	// Unknown counts attributes this agent does not know; they are
	// ignored, so a newer kernel still works.
	Unknown int
}

// acceptRequest is HANDSHAKE_CMD_ACCEPT's payload: the generic netlink
// header and the handler class.
func acceptRequest() []byte {
	b := []byte{cmdAccept, genlVersion, 0, 0}
	return netlink.AppendU32(b, attrAcceptHandlerClass, handlerClassTLSHD)
}

// parseAccept reads an ACCEPT reply's payload (from the generic netlink
// header on). A reply without a socket, message type or auth mode is an
// error; unknown attributes are counted and skipped.
func parseAccept(payload []byte) (*Request, error) {
	if len(payload) < netlink.GenlHdrLen {
		return nil, errors.New("handshake: short ACCEPT reply")
	}
	if payload[0] != cmdAccept {
		return nil, fmt.Errorf("handshake: reply command %d, want ACCEPT (%d)", payload[0], cmdAccept)
	}
	attrs, err := netlink.ParseAttrs(payload[netlink.GenlHdrLen:])
	if err != nil {
		return nil, fmt.Errorf("handshake: ACCEPT reply: %w", err)
	}
	r := &Request{Sockfd: -1}
	var typ, auth, fd bool
	u32 := func(a netlink.Attr) (uint32, error) {
		v, ok := a.U32()
		if !ok {
			return 0, fmt.Errorf("handshake: ACCEPT attribute %d: %d bytes, want 4", a.Type, len(a.Data))
		}
		return v, nil
	}
	for _, a := range attrs {
		var v uint32
		switch a.Type {
		case attrAcceptSockfd, attrAcceptMessageType, attrAcceptTimeout, attrAcceptAuthMode, attrAcceptPeerIdentity, attrAcceptKeyring:
			if v, err = u32(a); err != nil {
				return nil, err
			}
		}
		switch a.Type {
		case attrAcceptSockfd:
			if int32(v) < 0 {
				return nil, fmt.Errorf("handshake: ACCEPT gave socket descriptor %d", int32(v))
			}
			r.Sockfd, fd = int(v), true
		case attrAcceptMessageType:
			r.Type, typ = MsgType(v), true
		case attrAcceptTimeout:
			r.TimeoutMillis = v
		case attrAcceptAuthMode:
			r.Auth, auth = AuthMode(v), true
		case attrAcceptPeerIdentity:
			if len(r.PeerIdentities) < 16 {
				r.PeerIdentities = append(r.PeerIdentities, v)
			}
		case attrAcceptCertificate:
			inner, err := netlink.ParseAttrs(a.Data)
			if err != nil {
				return nil, fmt.Errorf("handshake: ACCEPT certificate: %w", err)
			}
			for _, x := range inner {
				w, ok := x.U32()
				switch {
				case x.Type == attrX509Cert && ok && r.Cert == noKey:
					r.Cert = w
				case x.Type == attrX509Privkey && ok && r.PrivKey == noKey:
					r.PrivKey = w
				}
			}
		case attrAcceptPeername:
			r.Peername = a.Str()
		case attrAcceptKeyring:
			r.Keyring = v
		default:
			r.Unknown++
		}
	}
	switch {
	case !fd:
		return nil, errors.New("handshake: ACCEPT reply without a socket")
	case !typ:
		return r, errors.New("handshake: ACCEPT reply without a message type")
	case !auth:
		return r, errors.New("handshake: ACCEPT reply without an auth mode")
	}
	return r, nil
}

// attrSet is the attributes an operation's policy accepts, as
// CTRL_CMD_GETPOLICY told; nil where the kernel did not say, and then every
// attribute the family has had since Linux 6.4 is taken to be there.
type attrSet []uint16

func (s attrSet) has(t uint16) bool { return s == nil || slices.Contains(s, t) }

// doneRequest is HANDSHAKE_CMD_DONE's payload: status is 0 or a positive
// errno (net/handshake/netlink.c, handshake_nl_done_doit, passes it on as
// the consumer's negative status; without it the consumer gets EIO), and
// remoteAuth the peer's key serials, at most 5 of which the kernel keeps
// (net/handshake/tlshd.c, th_peerid). Only attributes in policy are sent:
// a strict policy refuses the whole message for one it does not know.
func doneRequest(status uint32, sockfd int, remoteAuth []uint32, policy attrSet) []byte {
	b := []byte{cmdDone, genlVersion, 0, 0}
	if policy.has(attrDoneStatus) {
		b = netlink.AppendU32(b, attrDoneStatus, status)
	}
	b = netlink.AppendU32(b, attrDoneSockfd, uint32(sockfd))
	if policy.has(attrDoneRemoteAuth) {
		for _, s := range remoteAuth {
			b = netlink.AppendU32(b, attrDoneRemoteAuth, s)
		}
	}
	return b
}

// isReady reports whether a message's payload is a READY notification for
// the TLS handler class (net/handshake/netlink.c, handshake_genl_notify).
func isReady(payload []byte) bool {
	if len(payload) < netlink.GenlHdrLen || payload[0] != cmdReady {
		return false
	}
	attrs, err := netlink.ParseAttrs(payload[netlink.GenlHdrLen:])
	if err != nil {
		return false
	}
	a, ok := netlink.Find(attrs, attrAcceptHandlerClass)
	if !ok {
		return true // the group is the class's own
	}
	v, ok := a.U32()
	return ok && v == handlerClassTLSHD
}
