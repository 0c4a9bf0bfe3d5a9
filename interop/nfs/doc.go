// Package nfs holds the tests of the kernel's own TLS consumers, the NFS
// client and server, with a user-space handshake agent serving their
// handshakes over the kernel's "handshake" netlink family
// (Documentation/networking/tls-handshake.rst; RFC 9289, RPC-with-TLS):
// NFS over TLS inside one VM guest, over loopback and between two network
// namespaces (docs/ARCHITECTURE.md, "Test layers"). It has no code of its
// own.
//
// The agent under test is the project's own, "ktls tlshd" (the guests have
// the ktls command at /usr/bin/ktls), unless the environment variable
// KTLS_NFS_AGENT names another command line, in which {config} stands for
// the path of the tlshd.conf(5) file the test writes. TestNFSOverTLS runs
// it and then Debian's tlshd, the reference; across namespaces the agent
// under test serves one side and tlshd the other, both ways round. To test
// tlshd alone:
//
//	go run ./internal/testing/vmtest -kernel 6.12 -pkg ./interop/nfs -env 'KTLS_NFS_AGENT=tlshd -s -c {config}'
//
// The tests start nfsd and mount file systems as root, so they run only in
// the guests of the VM harness (internal/testing/vmtest), which bring the
// NFS modules, nfsd's helpers and tlshd; elsewhere they skip. Inside a guest
// whose kernel has the handshake family (Linux 6.4+) they fail, not skip, if
// anything is missing; on 6.1 they skip, naming the missing family.
package nfs
