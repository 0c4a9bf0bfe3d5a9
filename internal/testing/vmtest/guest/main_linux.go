package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/ktls-go/ktls/internal/testing/testenv"
	"github.com/ktls-go/ktls/internal/testing/vmtest/plan"
)

func main() {
	p, err := readPlan(plan.Path)
	if err != nil {
		fmt.Printf("guest: %v\n", err)
		os.Exit(1)
	}
	env := append(os.Environ(), testenv.EnvVar+"=1")
	env = append(env, p.Env...)
	// The self-check runs in this process; the test binaries see the same
	// environment as it does, KTLS_VMTEST=1 included.
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			os.Setenv(k, v)
		}
	}

	sysctlErr := applySysctls(p.Sysctls)
	run(p.Nonce, plan.SelfCheck, func() int { return selfCheck(p.Nonce, p.Env, sysctlErr) })
	for _, t := range p.Tests {
		args, limit := p.Args, time.Duration(p.TimeoutSeconds)*time.Second
		if t.TimeoutSeconds > 0 {
			// The binary's own -test.timeout fires first and prints the
			// goroutines; a later flag wins over one in p.Args.
			limit = time.Duration(t.TimeoutSeconds) * time.Second
			args = append(slices.Clip(args), fmt.Sprintf("-test.timeout=%v", limit-30*time.Second))
		}
		run(p.Nonce, t.Name, func() int { return runTest(t, args, env, limit) })
	}
	fmt.Println(plan.DoneLine(p.Nonce))
}

// applySysctls writes "name=value" settings under /proc/sys, as sysctl(8)
// does: dots in the name are directory separators.
func applySysctls(settings []string) error {
	var errs []error
	for _, kv := range settings {
		name, value, _ := strings.Cut(kv, "=")
		file := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
		if err := os.WriteFile(file, []byte(value+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("sysctl %s: %w", kv, err))
			continue
		}
		fmt.Printf("guest: sysctl %s\n", kv)
	}
	return errors.Join(errs...)
}

func readPlan(path string) (*plan.Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the plan: %w", err)
	}
	var p plan.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("reading the plan %s: %w", path, err)
	}
	return &p, nil
}

// run frames one program's output with the begin and end markers.
func run(nonce, name string, f func() int) {
	fmt.Println(plan.BeginLine(nonce, name))
	start := time.Now()
	exit := f()
	fmt.Println(plan.EndLine(nonce, name, exit, time.Since(start).Seconds()))
}

// runTest runs one test binary in its package directory and returns its exit
// status, -1 when it had to be killed.
func runTest(t plan.Test, args, env []string, limit time.Duration) int {
	ctx := context.Background()
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, t.Binary, args...)
	cmd.Dir = t.Dir
	cmd.Env = env
	// One stream for both, so that the console shows them in the order the
	// test wrote them.
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stdout
	// A test that leaves a child holding the console open must not hold up
	// the next one.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		fmt.Printf("guest: %s ran past its limit of %v and was killed\n", t.Name, limit)
		return -1
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitErr.ExitCode()
	default:
		fmt.Printf("guest: %s: %v\n", t.Name, err)
		return -1
	}
}
