package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ktls-go/ktls/handshake"
	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// TestTlshd runs `ktls tlshd -config FILE` as the NFS tests do. Without the
// handshake family (this host, the 6.1 guest) it exits 1 at once, naming
// the family; with it (every guest from 6.4) it serves, reloads its file on
// SIGHUP, and exits 0 on SIGTERM. Unknown keys of the file are reported either way.
func TestTlshd(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "config")
	os.WriteFile(conf, []byte("[debug]\nloglevel=1\n[authenticate.server]\nx509.pq.certificate=/x\n"), 0o600)
	info, err := handshake.Probe()
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	stderr := &testenv.Buffer{}
	if !info.Family {
		if testenv.InVM() && testenv.ExpectedInVM(testenv.FeatureNetHandshake) {
			t.Fatalf("no handshake family inside the VM on %s", testenv.KernelVersion())
		}
		if code := run([]string{"tlshd", "-config", conf}, &stdout, stderr); code != 1 {
			t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr)
		}
		for _, s := range []string{"x509.pq.certificate is unknown", `no \"handshake\" generic netlink family`, "CONFIG_NET_HANDSHAKE"} {
			if !strings.Contains(stderr.String(), s) {
				t.Errorf("stderr does not say %q:\n%s", s, stderr)
			}
		}
		return
	}
	done := make(chan int, 1)
	go func() { done <- run([]string{"tlshd", "-config", conf}, &stdout, stderr) }()
	waitFor(t, stderr, "handshake agent ready")
	self, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// SIGHUP reads the file again; a file that no longer parses keeps
	// the configuration in use.
	if err := self.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, stderr, "configuration reloaded")
	os.WriteFile(conf, []byte("[authenticate.server]\nx509.certificate=/missing.pem\nx509.private_key=/missing.key\n"), 0o600)
	if err := self.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, stderr, "keeping the configuration in use")
	if err := self.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(stderr.String(), "stopped") {
			t.Errorf("exit %d after SIGTERM:\n%s", code, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the agent did not stop on SIGTERM:\n%s", stderr)
	}
}

func TestTlshdCommandLine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"tlshd", "-no-such-flag"}, &stdout, &stderr); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
	if code := run([]string{"tlshd", "extra"}, &stdout, &stderr); code != 2 {
		t.Errorf("an argument: exit %d", code)
	}
	stderr.Reset()
	if code := run([]string{"tlshd", "-config", filepath.Join(t.TempDir(), "missing")}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "no such file") {
		t.Errorf("a missing file: exit %d, %s", code, &stderr)
	}
	stdout.Reset()
	run([]string{"help"}, &stdout, &stderr)
	if !strings.Contains(stdout.String(), "ktls tlshd [-config FILE]") {
		t.Errorf("usage does not name tlshd:\n%s", &stdout)
	}
}

func TestHandshakeReport(t *testing.T) {
	for _, tc := range []struct {
		name           string
		info           handshake.Info
		err            error
		family, agents string
	}{
		{"no family", handshake.Info{}, nil, stateUnavailable, stateNotChecked},
		{"not linux", handshake.Info{}, errors.ErrUnsupported, stateUnavailable, stateNotChecked},
		{"broken", handshake.Info{}, errors.New("EPERM"), stateError, stateNotChecked},
		{"no agent", handshake.Info{Family: true, Version: 1, Group: 3, ListenersKnown: true}, nil, stateAvailable, stateUnavailable},
		{"agent", handshake.Info{Family: true, Version: 1, Group: 3, ListenersKnown: true, Listeners: []uint32{812}}, nil, stateAvailable, stateAvailable},
		{"group beyond 32", handshake.Info{Family: true, Version: 1, Group: 40}, nil, stateAvailable, stateNotChecked},
	} {
		r := handshakeReport(func() (handshake.Info, error) { return tc.info, tc.err })
		if r.Family.State != tc.family || r.Agents.State != tc.agents {
			t.Errorf("%s: %+v", tc.name, r)
		}
	}
}

// waitFor waits for the command to log s.
func waitFor(t *testing.T, stderr *testenv.Buffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not log %q:\n%s", s, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
