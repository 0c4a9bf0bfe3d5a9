// Command guest is the program that the VM harness (internal/testing/vmtest) runs
// inside each guest, from the initramfs's /init once the modules are in.
//
// It reads the plan that the host put at /vmtest/plan.json, then
//
//  1. runs the self-check: kernel TLS works end to end on a loopback TCP
//     pair, AF_ALG serves gcm(aes) (and the kernel can instantiate
//     ChaCha20-Poly1305), and the real peers (openssl, gnutls-cli,
//     gnutls-serv, curl) start; it prints the kernel release, which driver
//     serves gcm(aes) and /proc/net/tls_stat;
//  2. runs each test binary of the plan in its package directory, with the
//     plan's arguments and environment and a time limit;
//  3. prints the done marker, and returns to /init, which powers off.
//
// Its output looks like `go test -v` output (=== RUN, --- PASS, --- FAIL),
// so the host counts the self-check's checks as it counts tests, and every
// program is framed by the markers of package plan.
//
// It is built with CGO_ENABLED=0 into a static binary; it is useful only on
// Linux, and elsewhere it only says so.
package main
