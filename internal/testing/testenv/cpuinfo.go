package testenv

import (
	"errors"
	"os"
	"strings"
)

// CPUInfoAESGCM reads /proc/cpuinfo for the instructions AES-GCM needs, as
// the kernel saw them at boot: "aes" and "pclmulqdq" in x86's flags line,
// "aes" and "pmull" in arm64's Features line. It is the tests' source for the
// CPU's crypto instructions apart from the code under test (cpuid), so that
// the two can be checked against each other.
func CPUInfoAESGCM() (bool, error) {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false, err
	}
	for line := range strings.Lines(string(b)) {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := " " + strings.Join(strings.Fields(value), " ") + " "
		switch strings.TrimSpace(key) {
		case "flags":
			return strings.Contains(fields, " aes ") && strings.Contains(fields, " pclmulqdq "), nil
		case "Features":
			return strings.Contains(fields, " aes ") && strings.Contains(fields, " pmull "), nil
		}
	}
	return false, errors.New("testenv: /proc/cpuinfo has no flags or Features line")
}
