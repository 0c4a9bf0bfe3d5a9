package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ktls-go/ktls/internal/netlink"
	"golang.org/x/sys/unix"
)

// afalgRestrictFile is Linux 7.3's switch for AF_ALG ("crypto: af_alg - Add
// af_alg_restrict sysctl, defaulting to 1";
// Documentation/admin-guide/sysctl/crypto.rst): 0 unrestricted, 1 (the
// default) an allowlist whose only AEAD is ccm(aes), 2 AF_ALG disabled. The
// af_alg module registers it when it loads.
const afalgRestrictFile = "/proc/sys/crypto/af_alg_restrict"

// afalgRestriction returns af_alg_restrict, or nil where it is absent.
func afalgRestriction() (*int, string) {
	b, err := os.ReadFile(afalgRestrictFile)
	if err != nil {
		return nil, ""
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Sprintf("%s reads %q", afalgRestrictFile, b)
	}
	var meaning string
	switch n {
	case 0:
		meaning = "0: AF_ALG unrestricted"
	case 1:
		meaning = "1 (the Linux 7.3 default): an allowlist whose only AEAD is ccm(aes); gcm(aes) and ChaCha20-Poly1305 are refused (ENOENT)"
	case 2:
		meaning = "2: AF_ALG disabled"
	default:
		meaning = strconv.Itoa(n) + ": a value this doctor does not know"
	}
	return &n, meaning
}

// afalgSocket attempts socket(AF_ALG).
func afalgSocket() Status {
	fd, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return afalgStatus("socket(AF_ALG)", err)
	}
	unix.Close(fd)
	return Status{State: stateAvailable}
}

// afalgBind attempts what an afalg engine would do first for name: an
// AF_ALG socket bound to "aead" and name (Documentation/crypto/
// userspace-if.rst). Nothing is kept open.
func afalgBind(name string) Status {
	fd, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return afalgStatus("socket(AF_ALG)", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrALG{Type: "aead", Name: name}); err != nil {
		return afalgStatus("bind(aead, "+name+")", err)
	}
	return Status{State: stateAvailable, Reason: "bound an AF_ALG aead socket"}
}

// afalgStatus turns an AF_ALG error into a status: the errors that say the
// kernel does not offer it are conclusive (shared/reference/
// afalg-and-nic-offload.md, A.6).
func afalgStatus(what string, err error) Status {
	reason := what + ": " + netlink.ErrnoText(err)
	switch {
	case errors.Is(err, unix.EAFNOSUPPORT):
		return Status{State: stateUnavailable, Reason: reason + ": the kernel has no AF_ALG (CONFIG_CRYPTO_USER_API), or a policy blocks it"}
	case errors.Is(err, unix.ENOENT):
		note := ": no such algorithm, or algif_aead is missing"
		if r, _ := afalgRestriction(); r != nil && *r != 0 {
			note = fmt.Sprintf(": %s is %d", afalgRestrictFile, *r)
		}
		return Status{State: stateUnavailable, Reason: reason + note}
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return Status{State: stateUnavailable, Reason: reason + ": refused by a security policy (seccomp, LSM)"}
	}
	return Status{State: stateError, Reason: reason}
}

// cryptoAlgs returns the registered implementations, from crypto netlink
// where the kernel has it (CONFIG_CRYPTO_USER), else from /proc/crypto; the
// note says why netlink was not used.
func cryptoAlgs() (algs []cryptoAlg, source, note string, err error) {
	algs, nlErr := cryptoNetlink()
	if nlErr == nil {
		return algs, "crypto netlink (CRYPTO_MSG_GETALG)", "", nil
	}
	f, err := os.Open("/proc/crypto")
	if err != nil {
		return nil, "", "", fmt.Errorf("crypto netlink: %v; /proc/crypto: %w", nlErr, err)
	}
	defer f.Close()
	algs, err = parseProcCrypto(f)
	return algs, "/proc/crypto", "crypto netlink not used: " + nlErr.Error() +
		"; the driver name lists decide, without the CRYPTO_ALG_KERN_DRIVER_ONLY flag", err
}

// cryptoNetlink dumps the registered algorithms with CRYPTO_MSG_GETALG on
// NETLINK_CRYPTO (crypto/crypto_user.c; reading needs no capability).
func cryptoNetlink() ([]cryptoAlg, error) {
	c, err := netlink.Dial(unix.NETLINK_CRYPTO, "NETLINK_CRYPTO")
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, fmt.Errorf("%v: no CONFIG_CRYPTO_USER (module crypto_user)", err)
		}
		return nil, err
	}
	defer c.Close()
	msgs, err := c.Execute(cryptoMsgGetAlg, netlink.FDump, make([]byte, sizeofCryptoUser))
	if err != nil {
		return nil, fmt.Errorf("CRYPTO_MSG_GETALG dump: %s", netlink.ErrnoText(err))
	}
	var algs []cryptoAlg
	for _, m := range msgs {
		if m.Type != cryptoMsgGetAlg {
			continue
		}
		a, err := parseCryptoUserAlg(m.Data)
		if err != nil {
			return nil, err
		}
		algs = append(algs, a)
	}
	if len(algs) == 0 {
		return nil, errors.New("CRYPTO_MSG_GETALG dump: no algorithms in the reply")
	}
	return algs, nil
}
