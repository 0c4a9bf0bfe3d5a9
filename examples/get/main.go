// Command get fetches a URL over ktls with ktlshttp's Transport, HTTP/2 or
// HTTP/1.1 as the server picks by ALPN. It writes the body to standard
// output, and to standard error the status, the protocol, the TLS version
// and suite, and which engine each direction of the connection got, and why.
//
//	go run ./examples/get https://go.dev/ > page.html
//	go run ./examples/get -k https://127.0.0.1:8443/README.md          # the fileserver example
//	go run ./examples/get -http1.1 -k https://127.0.0.1:8443/README.md
//
// -k accepts any certificate, such as the example servers' self-signed
// ones. KTLS_BACKEND forces an engine (for example KTLS_BACKEND=stdlib).
// It exits with status 1 when the request fails or the status is 400 or
// more.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sync"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/ktlshttp"
)

func main() {
	insecure := flag.Bool("k", false, "accept any server certificate")
	http1 := flag.Bool("http1.1", false, "offer only HTTP/1.1 by ALPN")
	timeout := flag.Duration("timeout", time.Minute, "limit for the whole request")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: get [-k] [-http1.1] [-timeout d] URL")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	config := &tls.Config{InsecureSkipVerify: *insecure}
	if *http1 {
		config.NextProtos = []string{"http/1.1"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := get(ctx, flag.Arg(0), config, os.Stdout, os.Stderr); err != nil {
		log.Fatalf("get: %v", err)
	}
}

// get fetches url with config, writes the body to body and what carried it
// to info.
func get(ctx context.Context, url string, config *tls.Config, body, info io.Writer) error {
	tr := ktlshttp.NewTransport(config)
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	// The connection of the last request (after any redirect).
	var mu sync.Mutex
	var conn net.Conn
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			mu.Lock()
			conn = i.Conn
			mu.Unlock()
		},
	}))
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()

	fmt.Fprintf(info, "%s %s\n", resp.Proto, resp.Status)
	if st := resp.TLS; st != nil {
		fmt.Fprintf(info, "%s %s, ALPN %q\n", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.NegotiatedProtocol)
	} else {
		fmt.Fprintln(info, "no TLS")
	}
	mu.Lock()
	kc, ok := conn.(*ktls.Conn)
	mu.Unlock()
	if ok {
		b := kc.Backend()
		fmt.Fprintf(info, "engines: tx=%s rx=%s (%s)\n", b.TX, b.RX, b.Reason)
	}
	n, err := io.Copy(body, resp.Body)
	if err != nil {
		return fmt.Errorf("after %d bytes of the body: %w", n, err)
	}
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}
