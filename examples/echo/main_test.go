package main

import (
	"bytes"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/testpki"
)

// The server and the client in one process: what the client sends comes
// back whole, and both log their engines.
func TestEcho(t *testing.T) {
	client, server := testpki.Configs(0, 0)
	l, err := ktls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	var serverLog syncBuffer
	served := make(chan error, 1)
	go func() { served <- serve(l, log.New(&serverLog, "", 0)) }()

	for _, in := range []string{"hello\nworld\n", strings.Repeat("0123456789abcdef", 1<<16)} {
		var out, clientLog bytes.Buffer
		if err := runClient(l.Addr().String(), client, strings.NewReader(in), &out, log.New(&clientLog, "", 0)); err != nil {
			t.Fatalf("client: %v", err)
		}
		if out.String() != in {
			t.Errorf("sent %d bytes, got back %d", len(in), out.Len())
		}
		if !strings.Contains(clientLog.String(), "TLS 1.3 TLS_") || !strings.Contains(clientLog.String(), " tx=") {
			t.Errorf("client log without version or engines: %s", clientLog.String())
		}
	}
	l.Close()
	if err := <-served; err == nil {
		t.Error("serve returned nil after its listener closed")
	}
	// A connection's goroutine logs its end after the client saw it.
	for deadline := time.Now().Add(5 * time.Second); strings.Count(serverLog.String(), "; the client closed") < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not log the end of both connections:\n%s", serverLog.String())
		}
	}
	if strings.Count(serverLog.String(), " tx=") != 2 {
		t.Errorf("server log without engines:\n%s", serverLog.String())
	}
}

// syncBuffer is a log destination the server's goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
