package main

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// cryptoAlg is one entry of /proc/crypto.
type cryptoAlg struct {
	name, driver, module, selftest, internal, typ string
	priority                                      int
}

// parseProcCrypto reads /proc/crypto: blocks of "key : value" lines
// separated by blank lines (crypto/proc.c, c_show).
func parseProcCrypto(r io.Reader) ([]cryptoAlg, error) {
	var algs []cryptoAlg
	var cur cryptoAlg
	flush := func() {
		if cur.name != "" {
			algs = append(algs, cur)
		}
		cur = cryptoAlg{}
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			flush()
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.TrimSpace(key) {
		case "name":
			flush()
			cur.name = value
		case "driver":
			cur.driver = value
		case "module":
			cur.module = value
		case "priority":
			cur.priority, _ = strconv.Atoi(value)
		case "selftest":
			cur.selftest = value
		case "internal":
			cur.internal = value
		case "type":
			cur.typ = value
		}
	}
	flush()
	return algs, sc.Err()
}

// bestDriver returns the implementation the kernel picks for an algorithm
// name: among the registered, non-internal entries of that name whose
// self-test did not fail, the one of highest priority (crypto/api.c,
// __crypto_alg_lookup).
func bestDriver(algs []cryptoAlg, name string) (cryptoAlg, bool) {
	var best cryptoAlg
	found := false
	for _, a := range algs {
		if a.name != name || a.internal == "yes" || (a.selftest != "" && a.selftest != "passed") {
			continue
		}
		if !found || a.priority > best.priority {
			best, found = a, true
		}
	}
	return best, found
}
