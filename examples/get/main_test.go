package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/ktls-go/ktls/internal/testing/testpki"
	"github.com/ktls-go/ktls/ktlshttp"
)

// get against a ktlshttp server, over each protocol: the body on one
// writer, the status, protocol, TLS and engines on the other.
func TestGet(t *testing.T) {
	client, server := testpki.Configs(0, 0)
	s := &ktlshttp.Server{Server: &http.Server{TLSConfig: server, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "hello over "+r.Proto)
	})}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeTLS(l, "", "") }()
	defer func() {
		s.Close()
		<-served
	}()
	url := "https://" + l.Addr().String() + "/"

	for _, p := range []struct{ alpn, proto string }{{"", "HTTP/2.0"}, {"http/1.1", "HTTP/1.1"}} {
		config := client.Clone()
		if p.alpn != "" {
			config.NextProtos = []string{p.alpn}
		}
		var body, info bytes.Buffer
		if err := get(context.Background(), url, config, &body, &info); err != nil {
			t.Fatalf("%s: %v", p.proto, err)
		}
		if want := "hello over " + p.proto; body.String() != want {
			t.Errorf("body %q, want %q", body.String(), want)
		}
		for _, want := range []string{p.proto + " 200 OK\n", "TLS 1.3 TLS_", "engines: tx="} {
			if !strings.Contains(info.String(), want) {
				t.Errorf("%s: info lacks %q:\n%s", p.proto, want, info.String())
			}
		}
	}
	var body, info bytes.Buffer
	if err := get(context.Background(), url+"missing", client, &body, &info); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a missing page gave %v, want a 404 error", err)
	}
}
