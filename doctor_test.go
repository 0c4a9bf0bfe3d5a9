package ktls_test

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/ktls-go/ktls"
	"github.com/ktls-go/ktls/internal/testing/ktlstest"
	"github.com/ktls-go/ktls/internal/testing/testpki"
	"github.com/ktls-go/ktls/selector"
)

// TestCandidatesMatchConnection checks that Candidates says what a real
// connection gets: for each suite, a ktls server over loopback TCP against a
// stock client reports, per direction, the first candidate and its reason.
// (The server: a TLS 1.3 client installs RX later, with more to say.)
func TestCandidatesMatchConnection(t *testing.T) {
	for _, sc := range ktlstest.InteropSuites {
		t.Run(sc.String(), func(t *testing.T) {
			ccfg, scfg := testpki.Configs(sc.Version, sc.Suite)
			k, s := ktlstest.PairWithStock(t, false, ccfg, scfg)
			candidatesMatch(t, k)
			ktlstest.CloseBoth(t, k, s)
		})
	}
}

// candidatesMatch checks that ktls.Candidates gives, for each direction of
// k's version and suite, the engine k got first and the reason k reports for
// it, and returns the candidates.
func candidatesMatch(t *testing.T, k *ktls.Conn) (tx, rx []selector.Candidate) {
	t.Helper()
	st, b := k.ConnectionState(), k.Backend()
	for _, d := range []struct {
		dir  selector.Direction
		name string
		out  *[]selector.Candidate
	}{{selector.TX, b.TX, &tx}, {selector.RX, b.RX, &rx}} {
		cands, err := ktls.Candidates(st.Version, st.CipherSuite, d.dir)
		if err != nil {
			t.Fatalf("Candidates(%s): %v", d.dir, err)
		}
		*d.out = cands
		if cands[0].Name != d.name {
			t.Errorf("Candidates(%s)[0] = %s, the connection got %s (%s)", d.dir, cands[0], d.name, b.Reason)
		}
		if want := d.dir.String() + ": " + cands[0].String(); !strings.Contains(b.Reason, want) {
			t.Errorf("Backend().Reason = %q, want it to contain %q", b.Reason, want)
		}
	}
	return tx, rx
}

// TestCandidatesPolicy checks that Candidates applies the environment and
// the options as Dial does: a malformed KTLS_BACKEND is the error Dial
// returns, and an engine that is not wired in, forced under KTLS_STRICT,
// is a *StrictError.
func TestCandidatesPolicy(t *testing.T) {
	const v, s = tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256

	t.Setenv("KTLS_BACKEND", "kernal")
	_, err := ktls.Candidates(v, s, selector.TX)
	_, dialErr := ktls.Dial("tcp", "127.0.0.1:1", nil)
	if err == nil || dialErr == nil || err.Error() != dialErr.Error() {
		t.Errorf("KTLS_BACKEND=kernal: Candidates error %v, Dial error %v; want the same error", err, dialErr)
	}

	// No device offloads TLS 1.3 (mainline offloads TLS 1.2 only), here
	// or in the VMs.
	t.Setenv("KTLS_BACKEND", "nic")
	t.Setenv("KTLS_STRICT", "1")
	_, err = ktls.Candidates(v, s, selector.TX)
	var se *ktls.StrictError
	if !errors.As(err, &se) || se.Forced != "nic" {
		t.Errorf("KTLS_BACKEND=nic KTLS_STRICT=1: Candidates error %v, want a *StrictError for nic", err)
	}

	t.Setenv("KTLS_BACKEND", "")
	t.Setenv("KTLS_STRICT", "")
	cands, err := ktls.Candidates(v, s, selector.RX, ktls.WithBackend("stdlib"))
	if err != nil || len(cands) != 1 || cands[0].Name != "stdlib" {
		t.Errorf("WithBackend(stdlib): Candidates = %v, %v; want [stdlib (forced)]", cands, err)
	}
	cands, err = ktls.Candidates(v, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, selector.TX)
	if err != nil || cands[0].Name != "stdlib" {
		t.Errorf("a CBC suite: Candidates = %v, %v; want stdlib", cands, err)
	}
}
