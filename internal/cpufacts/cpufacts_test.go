package cpufacts

import (
	"runtime"
	"testing"

	"github.com/ktls-go/ktls/internal/testing/testenv"
)

// TestDetectMatchesCPUInfo checks cpuid's reading of the AES-GCM
// instructions against the kernel's, from /proc/cpuinfo: in the VMs the
// emulated amd64 and arm64 CPUs have them, the host's has them too.
func TestDetectMatchesCPUInfo(t *testing.T) {
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("/proc/cpuinfo names x86 and arm64 Linux features only; %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	want, err := testenv.CPUInfoAESGCM()
	if err != nil {
		t.Fatal(err)
	}
	f := Detect()
	if f.Arch != runtime.GOARCH || f.AESGCM != want {
		t.Fatalf("Detect() = %+v; /proc/cpuinfo says AES-GCM instructions: %v", f, want)
	}
	if f.GoAESGCM && !f.AESGCM {
		t.Fatalf("Detect() = %+v: Go cannot use instructions the CPU lacks", f)
	}
	names := map[string]bool{}
	for _, x := range Features() {
		names[x.Name] = x.Present
	}
	aes, clmul := "AES-NI", "PCLMULQDQ"
	if runtime.GOARCH == "arm64" {
		aes, clmul = "AES", "PMULL"
	}
	if (names[aes] && names[clmul]) != want {
		t.Errorf("Features() = %v: %s and %s disagree with /proc/cpuinfo (%v)", Features(), aes, clmul, want)
	}
}
