// Package handshake is a handshake agent for the Linux kernel's own TLS
// consumers: the NFS client (mount -o xprtsec=tls|mtls), the NFS server
// (exports with xprtsec=) and NVMe-TCP ask user space for a TLS handshake
// on a socket the kernel owns, over the "handshake" generic netlink family
// (Linux 6.4, CONFIG_NET_HANDSHAKE; Documentation/networking/tls-handshake.rst,
// Documentation/netlink/specs/handshake.yaml). [Serve] answers them as
// ktls-utils' tlshd does:
//
//  1. READY, a notification to the "tlshd" multicast group, says a request
//     waits.
//  2. ACCEPT takes it: the kernel installs the socket as a descriptor in
//     this process and says which side to play (client or server hello),
//     how to authenticate (unauth, x509, psk), the timeout, and key serials
//     of the certificate and private key, and on newer kernels the peer's
//     name and a keyring.
//  3. The handshake runs in crypto/tls through ktls, TLS 1.3 only, with the
//     kernel engine forced and strict: both directions end in kTLS with
//     the exact sequence numbers, or the handshake fails.
//  4. DONE hands the socket back with a status (0 or a positive errno, see
//     [Status]) and, where the peer presented a certificate that verified, a
//     key serial that records it (remote-auth; nfsd requires one on mtls
//     exports).
//
// Nothing is read or written on the socket after the handshake: no
// close_notify, no shutdown, no session tickets either way. The socket
// options that net.FileConn changes are put back before DONE.
//
// The portable part (messages, [Status], [Config]) builds everywhere; Serve
// and [Probe] are Linux's and fail elsewhere, naming the platform.
package handshake
