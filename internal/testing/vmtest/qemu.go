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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ktls-go/ktls/internal/testing/vmtest/plan"
)

// defaultAccel and defaultCPU are how qemu runs the amd64 guests. TCG, since KVM
// does not work on the project's machines (README.md). The CPU has every
// feature TCG emulates (AES-NI, PCLMULQDQ and AVX among them, so the
// kernel's x86 crypto drivers load as on real hardware) except CMPXCHG16B,
// and the vCPUs share one host thread. With qemu 7.2's defaults (one thread
// per vCPU, CMPXCHG16B on), Debian's 6.12.107 kernel crashed at boot in
// about one boot of three on the loaded 2-core host: double faults right
// after the cmpxchg16b of SLUB's per-CPU fast path (__kmalloc_noprof),
// oopses with garbage in the saved RFLAGS, and an "int3" oops on a
// just-patched static branch (another vCPU still ran the old translation).
// Without CMPXCHG16B (the x86-64 kernel does not need it: SLUB falls back to
// its locked path) the first kind went; with one thread the second. 24 boots
// of 6.12.107 out of 24 passed that way, half of them under load, and the
// whole suite ran no slower on 6.1 (84 s against 92 s). Measured while
// writing the harness; see README.md.
const (
	defaultAccel = "tcg,thread=single"
	defaultCPU   = "max,-cx16"
)

// defaultAccelARM64 and defaultCPUARM64 are how qemu runs the arm64 guests
// (qemu-system-aarch64 -machine virt). -cpu max has the Crypto Extensions
// (AES, PMULL), so the kernel serves gcm(aes) with gcm-aes-ce as on real
// arm64 servers; pauth-impdef=on swaps the architected pointer
// authentication algorithm (QARMA, which TCG computes slowly) for qemu's
// cheap implementation-defined one. Debian's arm64 kernels sign return
// addresses in every function (CONFIG_ARM64_PTR_AUTH_KERNEL), so this is
// what makes the kernel fast: measured while adding arm64, the 6.1 guest
// with one small package (internal/record) went from boot to power-off in
// 15 s instead of 29 s, of which the tests took 9 s instead of 12 s. The
// guest cannot tell the difference but in the values of its pointer
// signatures. One host thread
// for both vCPUs, as on amd64: on the shared 2-core machine the whole suite
// took 211 s on 6.1 that way and 245 s with a thread per vCPU.
const (
	defaultAccelARM64 = "tcg,thread=single"
	defaultCPUARM64   = "max,pauth-impdef=on"
)

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

// qemuArgs returns qemu's command line for the kernel's architecture. TCG,
// not KVM: KVM does not work on the machines this runs on (README.md),
// and another architecture is emulated anyway; c.accel and c.cpu are the
// architecture's defaults unless the user says otherwise. -no-reboot with
// panic=-1 turns a kernel panic into qemu's exit instead of a reboot loop;
// poweroff -f exits qemu through ACPI on amd64 and PSCI on arm64.
func qemuArgs(k kernel, initrd string, c bootConfig) []string {
	args := slices.Clone(k.arch.machineArgs)
	return append(args,
		"-accel", c.accel, "-cpu", c.cpu,
		"-smp", strconv.Itoa(c.cpus), "-m", strconv.Itoa(c.memMiB)+"M",
		"-nographic", "-no-reboot",
		// The tests talk over loopback only.
		"-nic", "none",
		"-kernel", k.image, "-initrd", initrd,
		// oops=panic: after an oops the guest cannot be trusted, and without
		// it the guest would sit until the harness's timeout.
		"-append", strings.TrimSpace("console="+k.arch.console+" quiet panic=-1 oops=panic "+c.cmdline),
	)
}

// boot runs one guest to the end, streaming its console to stdout with the
// kernel's name before each line, and feeding every line to res. It returns
// when the guest powered off, crashed, or ran past its time.
func boot(ctx context.Context, k kernel, initrd string, c bootConfig, res *kernelResult) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.arch.qemu, qemuArgs(k, initrd, c)...)
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

// stderrText returns what qemu said on stderr, less its warning about the
// fw_cfg name that SeaBIOS wants exactly as it is.
func stderrText(b *bytes.Buffer) string {
	var keep []string
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line != "" && !strings.Contains(line, "etc/sercon-port") {
			keep = append(keep, line)
		}
	}
	if len(keep) == 0 {
		return ""
	}
	return ": " + strings.Join(keep, "; ")
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
