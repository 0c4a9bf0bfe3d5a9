package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ktls-go/ktls/internal/vmtest/plan"
)

// defaultCPU is the guest CPU: every feature TCG emulates (AES-NI, PCLMULQDQ
// and AVX among them, so the kernel's x86 crypto drivers load as on real
// hardware), except CMPXCHG16B. With it, Debian's 6.12.107 kernel died at
// boot in about one boot of three on a loaded 2-core host under qemu 7.2
// (Debian 12): double faults right after the cmpxchg16b of SLUB's per-CPU
// fast path (__kmalloc_noprof), oopses with garbage in the saved RFLAGS, and
// page-table corruption, in swapper, insmod and cryptomgr alike; with
// "-thread=single", -smp 1, la57=off or mitigations=off it still did. Without
// CMPXCHG16B, which the x86-64 kernel does not require (SLUB falls back to
// its locked path), 12 boots of 12 passed under the same load, as did 6.1 and
// 7.3. Measured while writing the harness; see README.md.
const defaultCPU = "max,-cx16"

// bootConfig is how a guest is booted.
type bootConfig struct {
	accel   string // qemu's -accel: "tcg", or "tcg,thread=single"
	cpu     string // qemu's -cpu
	memMiB  int
	cpus    int
	cmdline string        // added to the kernel's command line
	timeout time.Duration // for the whole guest, boot to power-off
	logFile string        // the raw console output is kept here
}

// qemuArgs returns qemu's command line. TCG, not KVM: KVM does not work on
// the machines this runs on (vm-recipe.md); the CPU is defaultCPU unless the
// user says otherwise. -no-reboot with panic=-1 turns a kernel panic into
// qemu's exit instead of a reboot loop.
func qemuArgs(k kernel, initrd string, c bootConfig) []string {
	return []string{
		"-accel", c.accel, "-cpu", c.cpu,
		"-smp", strconv.Itoa(c.cpus), "-m", strconv.Itoa(c.memMiB) + "M",
		"-nographic", "-no-reboot",
		// The tests talk over loopback only.
		"-nic", "none",
		// Keep SeaBIOS off the serial console: its banner and screen
		// clearing only clutter the output.
		"-fw_cfg", "name=etc/sercon-port,string=0",
		"-kernel", k.image, "-initrd", initrd,
		// oops=panic: after an oops the guest cannot be trusted, and without
		// it the guest would sit until the harness's timeout.
		"-append", strings.TrimSpace("console=ttyS0 quiet panic=-1 oops=panic " + c.cmdline),
	}
}

// boot runs one guest to the end, streaming its console to stdout with the
// kernel's name before each line, and feeding every line to res. It returns
// when the guest powered off, crashed, or ran past its time.
func boot(ctx context.Context, k kernel, initrd string, c bootConfig, res *kernelResult) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", qemuArgs(k, initrd, c)...)
	// SIGTERM lets qemu restore the terminal; SIGKILL follows if it does
	// not go.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	logf, err := os.Create(c.logFile)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	defer logf.Close()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("vmtest: starting qemu: %w", err)
	}
	prefix := "[" + k.name + "] "
	readConsole(stdout, func(line string) {
		fmt.Fprintln(logf, line)
		m, isMarker := res.feed(line)
		if !isMarker {
			fmt.Println(prefix + line)
			return
		}
		switch m.Kind {
		case plan.Begin:
			fmt.Printf("%s### %s\n", prefix, m.Name)
		case plan.End:
			fmt.Printf("%s### %s: exit status %d, %.1fs\n", prefix, m.Name, m.Exit, m.Seconds)
		}
	})
	waitErr := cmd.Wait()
	res.elapsed = time.Since(start)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		running := "while booting"
		if res.cur != nil {
			running = "while running " + res.cur.name
		}
		res.problems = append(res.problems, fmt.Sprintf("the guest did not finish within %v (%s): qemu was killed", c.timeout, running))
	case ctx.Err() != nil:
		res.problems = append(res.problems, "interrupted: qemu was stopped")
	case !res.done:
		res.problems = append(res.problems, fmt.Sprintf("the guest stopped before it finished (a kernel panic or a crash of the guest program; qemu: %v%s)",
			exitText(waitErr), stderrText(&stderr)))
	case waitErr != nil:
		res.problems = append(res.problems, fmt.Sprintf("qemu: %v%s", waitErr, stderrText(&stderr)))
	}
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exited normally"
	}
	return err.Error()
}

func stderrText(b *bytes.Buffer) string {
	if s := strings.TrimSpace(b.String()); s != "" {
		return ": " + s
	}
	return ""
}

// ansiEscape matches the terminal escape sequences that firmware and the
// kernel send to a serial console (SeaBIOS clears the screen with ESC c).
var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[@-Z\\-_a-z])`)

// cleanLine makes a console line safe to print on the user's terminal:
// escape sequences, carriage returns and other control characters go.
func cleanLine(s string) string {
	s = ansiEscape.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r == '\t' || r >= ' ' && r != 0x7f {
			return r
		}
		return -1
	}, s)
}

// readConsole calls f with every line read from r, cleaned, until EOF.
func readConsole(r io.Reader, f func(string)) {
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			f(cleanLine(strings.TrimRight(line, "\r\n")))
		}
		if err != nil {
			return
		}
	}
}
