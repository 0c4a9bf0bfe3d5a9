package benchmarks

import (
	"os"
	"strconv"
	"strings"
)

// kernelSlab returns the kernel's slab memory in bytes, /proc/meminfo's
// "Slab:" line (SReclaimable + SUnreclaim; Documentation/filesystems/proc.rst,
// meminfo), and whether it could be read. An idle kTLS socket keeps its
// state there: the tls_context (net/tls/tls_main.c, tls_ctx_create), each
// direction's software context and AEAD transform with its key schedule
// (net/tls/tls_sw.c, tls_set_sw_offload), and the socket's own structures,
// which a crypto/tls pair has too. The difference between kinds in one run
// is what the kernel engine costs per connection beyond a TCP socket.
func kernelSlab() (int64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		// "Slab:          123456 kB"
		if f := strings.Fields(line); len(f) == 3 && f[0] == "Slab:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}
