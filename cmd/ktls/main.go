// Command ktls tells an operator what ktls can do on this host, serves
// the kernel's TLS handshake requests, and proxies TCP into and out of TLS.
//
//	ktls doctor          # readable text
//	ktls doctor -json    # the same as JSON (the schema is the Report type)
//	ktls doctor -stats http://127.0.0.1:6060/debug/vars   # a running program's counters
//	ktls tlshd [-config /etc/tlshd/config]   # the handshake agent (package handshake)
//	ktls proxy -listen :443 -backend 127.0.0.1:8080 -cert c.pem -key k.pem   # package proxy
//
// doctor reports, each from a real attempt where one is possible: the kernel
// release; whether the kernel's TLS module (kTLS) takes each TLS version,
// cipher suite and direction, and new keys (KeyUpdate), by the kernel
// engine's own probes; whether AF_ALG gives out the AEADs and which driver
// serves each (a CPU implementation or a hardware engine, and what said so);
// kTLS offload features of each network interface, over ethtool netlink; the
// CPU's AES instructions; the FIPS 140-3 mode (crypto/fips140), in which
// every connection stays on crypto/tls's own record layer; what KTLS_BACKEND
// and KTLS_STRICT make of a program's choice; and which engine each
// direction of a connection would get, with the reasons, by the selector
// ktls itself uses. A probe that fails says why in its section; the others
// go on. The exit status is 0 unless the command line is wrong (2) or the
// report cannot be written (1).
//
// proxy terminates TLS in front of a plain TCP or unix backend (server
// mode), or originates TLS for plain local clients (client mode), with
// package proxy: on the kernel engine the bytes never enter the process
// (splice(2) one way, kTLS's ReadFrom the other). Several listeners, and
// backends by server name, come from a JSON file (-config). It logs
// "listening on ADDR" once each listener is ready and one line per
// connection; SIGHUP reads the certificates again; SIGTERM or SIGINT stop it
// gracefully (exit 0).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: ktls doctor [-json] [-stats URL]
       ktls tlshd [-config FILE] [-debug]
       ktls proxy -listen ADDR -backend ADDR|unix:PATH -cert FILE -key FILE
                  [-client-ca FILE] [-proxy-protocol] [-handshake-timeout 10s]
                  [-idle-timeout 5m] [-max-conns N] [-grace 30s]
       ktls proxy -mode client -listen ADDR -connect HOST:PORT [-ca FILE] [-sni NAME]
       ktls proxy -config FILE

doctor  describe what ktls can do on this host: kTLS, AF_ALG, NIC offload,
        the kernel's handshake upcall, CPU, FIPS 140-3 mode,
        KTLS_BACKEND/KTLS_STRICT, and the engine each direction gets;
        why kTLS is missing, and what to do; with -stats URL, the
        counters of a running program instead, from its expvar endpoint
        (the "ktls" variable of package ktlsexpvar)
tlshd   serve the kernel's TLS handshake requests (NFS and NVMe over TLS) in
        the foreground, as ktls-utils' tlshd does, with its configuration
        file; logs to stderr; SIGHUP reloads, SIGTERM stops
proxy   a TLS-terminating (server mode) or TLS-originating (client mode) TCP
        proxy whose bytes stay in the kernel on the kTLS engine; logs
        "listening on ADDR" per listener and a line per connection to
        stderr; SIGHUP reloads the certificates, SIGTERM or SIGINT stop it
        after at most -grace (exit 0). -config FILE is JSON:
          {"handshake-timeout": "10s", "idle-timeout": "5m",
           "max-conns": 1000, "grace": "30s",
           "listeners": [
             {"listen": ":443", "backend": "127.0.0.1:8080",
              "cert": "site.pem", "key": "site.key", "proxy-protocol": true,
              "routes": [{"sni": "b.example", "backend": "unix:/run/b.sock",
                          "cert": "b.pem", "key": "b.key"}]},
             {"mode": "client", "listen": "127.0.0.1:8025",
              "connect": "mail.example:465", "ca": "ca.pem"}]}
        every key is the flag's name; durations as "10s"; a route without
        cert uses the listener's
`

// run is the command, for the tests: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "doctor":
		return doctor(args[1:], stdout, stderr)
	case "tlshd":
		return tlshd(args[1:], stderr)
	case "proxy":
		return proxyCmd(args[1:], stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "ktls: unknown command %q\n%s", args[0], usage)
	return 2
}

// newFlags returns the flag set of subcommand name, whose usage is the
// command's with the subcommand's flags after it.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ktls "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage+"\nflags of "+name+":\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses a subcommand's flags; it takes no arguments. It
// returns false and the exit status where the command is to end: 0 for
// -help, 2 for a wrong command line.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2, false
	}
	return 0, true
}

func doctor(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("doctor", stderr)
	asJSON := fs.Bool("json", false, "write the report as JSON")
	stats := fs.String("stats", "", "print a running program's ktls counters from its expvar endpoint (http://127.0.0.1:6060/debug/vars) instead")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *stats != "" {
		return doctorStats(*stats, *asJSON, stdout, stderr)
	}
	r := collect()
	var err error
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		err = writeText(stdout, r)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ktls doctor: writing the report: %v\n", err)
		return 1
	}
	return 0
}
