// Package nvme holds the test of the handshake agent's refusal of a PSK
// request from the kernel's NVMe-over-TCP host: NVMe/TCP with TLS
// (drivers/nvme/host/tcp.c, CONFIG_NVME_TCP_TLS) asks a user-space agent
// over the "handshake"
// netlink family for a TLS 1.3 handshake with a pre-shared key
// (tls_client_hello_psk, Documentation/networking/tls-handshake.rst), and
// crypto/tls has no external PSK (Go issue 6379), so "ktls tlshd" answers
// ENOKEY at once. The test checks that the kernel takes that answer: the
// connect fails promptly and no kTLS socket is made. It has no code of its
// own.
//
// The test loads nvmet and configures a loopback target through configfs,
// so it runs only in the guests of the VM harness (internal/testing/vmtest),
// which bring the NVMe modules, null_blk, Debian trixie's nvme-cli and
// keyctl, and the ktls command; elsewhere it skips. Inside a guest whose
// kernel has the handshake family (Linux 6.4+) it fails, not skips, if
// anything is missing; on 6.1 it skips, naming the missing family.
package nvme
