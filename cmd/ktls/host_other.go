//go:build !linux

package main

import (
	"errors"
	"runtime"
)

// Everything the doctor asks the kernel is Linux's: kTLS, AF_ALG, ethtool
// netlink. Elsewhere each probe says so (AF_ALG's through backend/afalg's
// own stub, which names the platform).

var errPlatform = errors.New("needs Linux; this is " + runtime.GOOS + "/" + runtime.GOARCH)

const nicSource = "none: " + runtime.GOOS + " has no kTLS"

// hostIsLinux says the kernel is Linux, whose files the diagnosis reads.
const hostIsLinux = false

func uname() (release, machine string, err error) { return "", "", nil }

func probeULP() Status {
	return Status{State: stateUnavailable, Reason: "kTLS " + errPlatform.Error()}
}

func availableULP() []string { return nil }

func tlsStat() map[string]int64 { return nil }
