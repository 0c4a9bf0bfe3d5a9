//go:build !linux

package main

import (
	"errors"
	"runtime"
)

// Everything the doctor asks the kernel is Linux's: kTLS, AF_ALG, ethtool
// netlink. Elsewhere each probe says so.

var errPlatform = errors.New("needs Linux; this is " + runtime.GOOS + "/" + runtime.GOARCH)

const nicSource = "none: " + runtime.GOOS + " has no kTLS"

func uname() (release, machine string, err error) { return "", "", nil }

func probeULP() Status {
	return Status{State: stateUnavailable, Reason: "kTLS " + errPlatform.Error()}
}

func availableULP() []string { return nil }

func tlsStat() map[string]int64 { return nil }

func afalgRestriction() (*int, string) { return nil, "" }

func afalgSocket() Status {
	return Status{State: stateUnavailable, Reason: "AF_ALG " + errPlatform.Error()}
}

func afalgBind(name string) Status { return afalgSocket() }

func cryptoAlgs() (algs []cryptoAlg, source, note string, err error) {
	return nil, "none", "", errors.New("the kernel crypto API " + errPlatform.Error())
}

func nicInterfaces() ([]NICInterface, error) {
	return nil, errors.New("kTLS device offload " + errPlatform.Error())
}
