package main

// The report of ktls doctor, and the schema of `ktls doctor -json`. Field
// names are stable within a Schema number; a field may be added without a
// new number, never renamed or removed. Every section has an Error that says
// why the section could not be filled, in which case the rest of it may be
// empty; one section's failure never stops the others.

// Schema is the version of the JSON schema below.
const Schema = 1

// Report is everything ktls doctor found.
type Report struct {
	Schema int         `json:"schema"`
	Host   HostReport  `json:"host"`
	KTLS   KTLSReport  `json:"ktls"`
	AFALG  AFALGReport `json:"afalg"`
	NIC    NICReport   `json:"nic"`
	// Handshake is the kernel's handshake upcall, which ktls tlshd serves.
	Handshake HandshakeReport `json:"handshake"`
	CPU       CPUReport       `json:"cpu"`
	FIPS      FIPSReport      `json:"fips140"`
	Policy    PolicyReport    `json:"policy"`
	// Auto is what the automatic choice gives each version, suite and
	// direction here, with KTLS_BACKEND and KTLS_STRICT unset.
	Auto []Choice `json:"auto"`
	// Effective is the same under the environment's KTLS_BACKEND and
	// KTLS_STRICT, for a program that passes no options; null when neither
	// is set.
	Effective []Choice `json:"effective"`
}

// Status is the outcome of one probe.
type Status struct {
	// State is "available", "unavailable" (conclusively: the probe
	// attempted the real thing and the kernel refused), "error" (the probe
	// could not decide) or "not-checked".
	State string `json:"state"`
	// Reason says why, for every state but "available" (where it may add
	// a detail).
	Reason string `json:"reason,omitempty"`
}

const (
	stateAvailable   = "available"
	stateUnavailable = "unavailable"
	stateError       = "error"
	stateNotChecked  = "not-checked"
)

// HostReport is what runs here.
type HostReport struct {
	OS   string `json:"os"`   // runtime.GOOS
	Arch string `json:"arch"` // runtime.GOARCH
	// Kernel is the release from uname(2) ("6.18.44-fc-v657"); empty
	// where there is none.
	Kernel string `json:"kernel"`
	// Machine is uname's machine ("x86_64").
	Machine string `json:"machine,omitempty"`
	Go      string `json:"go"` // the Go release the doctor was built with
	Error   string `json:"error,omitempty"`
}

// KTLSReport is the kernel engine: Linux kTLS in software.
type KTLSReport struct {
	// ULP is setsockopt(TCP_ULP, "tls") on a connected loopback socket.
	ULP Status `json:"ulp"`
	// AvailableULP is /proc/sys/net/ipv4/tcp_available_ulp read after the
	// probes (which load the tls module where the kernel can); null
	// where it could not be read.
	AvailableULP []string `json:"tcp_available_ulp"`
	// Suites is kernel.Probe for each version, suite and direction: a key
	// installed with TLS_TX or TLS_RX on a loopback pair and a record
	// through.
	Suites []KTLSSuite `json:"suites"`
	// Rekey is kernel.ProbeRekey: a second TLS_TX and TLS_RX on a TLS 1.3
	// socket (KeyUpdate, Linux 6.14).
	Rekey Status `json:"rekey"`
	// Diagnosis says why kTLS is missing here, and what to do (or that it
	// is available): host_diagnosis.go.
	Diagnosis *KTLSDiagnosis `json:"diagnosis"`
	Error     string         `json:"error,omitempty"`
}

// KTLSSuite is the kernel's answer for one version and suite.
type KTLSSuite struct {
	Version string `json:"version"` // "TLS 1.3"
	Cipher  string `json:"cipher"`  // "AES-128-GCM"
	Suite   string `json:"suite"`   // the crypto/tls suite probed
	SuiteID uint16 `json:"suite_id"`
	TX      Status `json:"tx"`
	RX      Status `json:"rx"`
}

// AFALGReport is the kernel crypto API as AF_ALG serves it to processes.
type AFALGReport struct {
	// Socket is socket(AF_ALG, SOCK_SEQPACKET, 0).
	Socket Status `json:"socket"`
	// Restrict is /proc/sys/crypto/af_alg_restrict (Linux 7.3): 0 no
	// restriction, 1 (the default) an allowlist without gcm(aes) or
	// ChaCha20-Poly1305, 2 AF_ALG off; null where the sysctl is absent.
	Restrict *int `json:"af_alg_restrict"`
	// RestrictMeaning says what Restrict does, in words.
	RestrictMeaning string `json:"af_alg_restrict_meaning,omitempty"`
	// AEADs are the two AEADs a TLS record layer would use.
	AEADs []AEADReport `json:"aeads"`
	// DriverSource is where the drivers were read: "crypto netlink
	// (CRYPTO_MSG_GETALG)" or "/proc/crypto".
	DriverSource string `json:"driver_source"`
	// DriverSourceNote says why crypto netlink was not used, when it was
	// not.
	DriverSourceNote string `json:"driver_source_note,omitempty"`
	// Engine says what ktls does with AF_ALG.
	Engine string `json:"engine"`
	Error  string `json:"error,omitempty"`
}

// AEADReport is one AEAD: whether AF_ALG gives it out and who serves it.
type AEADReport struct {
	Name   string `json:"name"`   // the crypto API name, "gcm(aes)"
	Serves string `json:"serves"` // the TLS ciphers it would serve
	// Bind is bind(2) of an AF_ALG "aead" socket to Name.
	Bind Status `json:"bind"`
	// Driver is the implementation the kernel picks for Name: the
	// registered, tested, non-internal one of highest priority; null when
	// none is registered (templates are instantiated on first use, and the
	// probes above are such a use).
	Driver *Driver `json:"driver"`
	// Others are the other implementations of Name, highest priority
	// first.
	Others []Driver `json:"others,omitempty"`
}

// Driver is one implementation of an algorithm.
type Driver struct {
	Driver   string `json:"driver"` // cra_driver_name
	Module   string `json:"module"` // "kernel" when built in
	Priority int    `json:"priority"`
	// Flags are cra_flags, from crypto netlink only.
	Flags *uint32 `json:"flags,omitempty"`
	// Kind is "cpu" (instructions of the CPU, or generic C), "hardware"
	// (an engine off the CPU) or "unknown".
	Kind string `json:"kind"`
	// Signal says what decided Kind.
	Signal string `json:"signal"`
}

// HandshakeReport is the kernel's handshake upcall: the "handshake" generic
// netlink family, and whether an agent waits on its "tlshd" group.
type HandshakeReport struct {
	// Family is available where CTRL_CMD_GETFAMILY resolves it.
	Family Status `json:"family"`
	// Version is the family's version.
	Version uint32 `json:"version,omitempty"`
	// Agents is available where a socket of this network namespace is in
	// the group (/proc/net/netlink), unavailable where none is, and
	// not-checked where the file cannot tell (a group id above 32).
	Agents Status `json:"agents"`
	// AgentPorts are the netlink port ids of those sockets (often the
	// agent's pid).
	AgentPorts []uint32 `json:"agent_ports,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// NICReport is kTLS device offload per network interface.
type NICReport struct {
	// Source is how the features were read.
	Source     string         `json:"source"`
	Interfaces []NICInterface `json:"interfaces"`
	// TLSStat are the device counters of /proc/net/tls_stat in this
	// network namespace (TlsTxDevice, TlsRxDevice, ...); null where it is
	// absent (no tls module).
	TLSStat map[string]int64 `json:"tls_stat"`
	// Engine says what ktls does with NIC offload.
	Engine string `json:"engine"`
	Error  string `json:"error,omitempty"`
}

// NICInterface is one interface and its kTLS features.
type NICInterface struct {
	Name     string `json:"name"`
	Index    int    `json:"index"`
	Up       bool   `json:"up"`
	Loopback bool   `json:"loopback"`
	// The three features; null when they could not be read (Error says
	// why).
	TLSTX     *NICFeature `json:"tls_hw_tx_offload"`
	TLSRX     *NICFeature `json:"tls_hw_rx_offload"`
	TLSRecord *NICFeature `json:"tls_hw_record"`
	// Summary says it in words: "no kTLS offload", "tls-hw-tx-offload on".
	Summary string `json:"summary"`
	Error   string `json:"error,omitempty"`
}

// NICFeature is one ethtool feature.
type NICFeature struct {
	Supported bool `json:"supported"` // in the device's hw_features
	Active    bool `json:"active"`    // in its features: on now
}

// CPUReport is the CPU's crypto instructions, as the selector sees them
// (internal/cpufacts: cpuid for the CPU, golang.org/x/sys/cpu for Go).
type CPUReport struct {
	Arch     string       `json:"arch"`
	Features []CPUFeature `json:"features"`
	// AESGCM says the CPU has the instructions AES-GCM needs (AES and a
	// carry-less multiply), which the kernel's AES-GCM uses; GoAESGCM says
	// Go's AES-GCM, that of the userspace and stdlib engines, runs on them
	// here (not on 386, not with GODEBUG=cpu.aes=off).
	AESGCM   bool   `json:"aes_gcm"`
	GoAESGCM bool   `json:"go_aes_gcm"`
	Note     string `json:"note,omitempty"`
}

// CPUFeature is one instruction set extension.
type CPUFeature struct {
	Name    string `json:"name"`
	Present bool   `json:"present"`
}

// FIPSReport is the doctor's own FIPS 140-3 mode (crypto/fips140;
// https://go.dev/doc/security/fips140), which decides before any engine: in
// it every connection stays on stdlib, crypto/tls's own record layer, the
// only one inside the Go Cryptographic Module. A program's mode is its own:
// the same GODEBUG in its environment, or the same GOFIPS140 at its build,
// gives it the same.
type FIPSReport struct {
	// Mode is "off", "on" (crypto/fips140.Enabled) or "only" (Enabled and
	// Enforced: GODEBUG=fips140=only, where non-approved algorithms also
	// fail).
	Mode string `json:"mode"`
	// Module is crypto/fips140.Version: the Go Cryptographic Module's
	// version, "latest" unless built against a frozen one with GOFIPS140.
	Module string `json:"module"`
	// GOFIPS140 is the binary's GOFIPS140 build setting
	// (runtime/debug.BuildInfo), which turns the mode on by default; empty
	// when the build recorded none (GOFIPS140=off).
	GOFIPS140 string `json:"GOFIPS140,omitempty"`
	// GODEBUG is the fips140 setting of the environment's GODEBUG, which
	// wins over the build's default; empty when it sets none.
	GODEBUG string `json:"GODEBUG,omitempty"`
	// Meaning says what the mode does to the choice, in words.
	Meaning string `json:"meaning"`
	Error   string `json:"error,omitempty"`
}

// PolicyReport is what the environment makes of the choice.
type PolicyReport struct {
	// Backend and Strict are the raw values of KTLS_BACKEND and
	// KTLS_STRICT; empty when unset.
	Backend string `json:"KTLS_BACKEND"`
	Strict  string `json:"KTLS_STRICT"`
	// Spec is the resolved choice for a program without options ("auto",
	// "kernel", "tx=kernel,rx=auto"), StrictMode whether a forced engine
	// that cannot serve fails the handshake, Source where Spec came from
	// ("KTLS_BACKEND" or "default").
	Spec       string `json:"spec"`
	StrictMode bool   `json:"strict"`
	Source     string `json:"source"`
	// Meaning says it in words.
	Meaning string `json:"meaning"`
	// Error is a malformed KTLS_BACKEND or KTLS_STRICT: every Dial and
	// Listen of a program would fail with it.
	Error string `json:"error,omitempty"`
}

// Choice is the selector's answer for one version, suite and direction.
type Choice struct {
	Version   string `json:"version"`
	Cipher    string `json:"cipher"`
	Suite     string `json:"suite"`
	SuiteID   uint16 `json:"suite_id"`
	Direction string `json:"direction"` // "tx" or "rx"
	// Engine is the first candidate: what a connection gets unless its
	// install is refused at run time; empty with Error.
	Engine string `json:"engine"`
	// Candidates are the engines in the order they would be tried.
	Candidates []Candidate `json:"candidates"`
	// Error is a policy that cannot be met (a *ktls.StrictError) or
	// cannot be read.
	Error string `json:"error,omitempty"`
}

// Candidate is one engine to try and why.
type Candidate struct {
	Engine string `json:"engine"`
	Reason string `json:"reason"`
}
