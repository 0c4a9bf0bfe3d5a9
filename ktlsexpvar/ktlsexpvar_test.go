package ktlsexpvar_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"expvar"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"github.com/ktls-go/ktls/ktlsexpvar"
)

// TestPublished reads the counters as a client of /debug/vars would, over
// HTTP from expvar.Handler, before and after one connection, and checks
// that the JSON is ktls.Counters and that it moved with the connection.
func TestPublished(t *testing.T) {
	srv := httptest.NewServer(expvar.Handler())
	defer srv.Close()
	read := func() ktls.Counters {
		t.Helper()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var vars map[string]json.RawMessage
		if err := json.Unmarshal(body, &vars); err != nil {
			t.Fatalf("/debug/vars: %v", err)
		}
		raw, ok := vars[ktlsexpvar.Name]
		if !ok {
			t.Fatalf("/debug/vars has no %q", ktlsexpvar.Name)
		}
		var c ktls.Counters
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("the %q var is not ktls.Counters: %v", ktlsexpvar.Name, err)
		}
		return c
	}
	before := read()
	ccfg, scfg := testpki.Configs(tls.VersionTLS13, 0)
	k, s := ktlstest.PairWithStock(t, false, ccfg, scfg, ktls.WithBackend("userspace"))
	testenv.Exchange(t, k, s, 1234)
	ktlstest.CloseBoth(t, k, s)
	after := read()
	if d := after.TX.Connections.Userspace - before.TX.Connections.Userspace; d != 1 {
		t.Errorf("tx.connections.userspace moved by %d, want 1", d)
	}
	if d := after.RX.Bytes.Userspace - before.RX.Bytes.Userspace; d != 1234 {
		t.Errorf("rx.bytes.userspace moved by %d, want 1234", d)
	}
}

// TestOnDefaultMux: importing this package registers /debug/vars on
// http.DefaultServeMux (expvar's side effect), which is why the root
// package does not import expvar (TestNoDebugVars there).
func TestOnDefaultMux(t *testing.T) {
	if _, pattern := http.DefaultServeMux.Handler(httptest.NewRequest("GET", "/debug/vars", nil)); !strings.HasSuffix(pattern, "/debug/vars") {
		t.Errorf("after importing ktlsexpvar, the default mux's pattern for /debug/vars is %q", pattern)
	}
}
