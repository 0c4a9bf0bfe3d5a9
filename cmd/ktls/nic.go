package main

import (
	"github.com/ktls-go/ktls/backend/nicoffload"
)

// nicInterfaces lists the interfaces and their kTLS features as the nic
// engine reads them (nicoffload.Interfaces: ethtool netlink, features by
// name); the knowledge lives there, the doctor only reports it.
func nicInterfaces() ([]NICInterface, error) {
	ifs, err := nicoffload.Interfaces()
	out := make([]NICInterface, 0, len(ifs))
	for _, i := range ifs {
		out = append(out, nicInterfaceOf(i))
	}
	return out, err
}

// nicInterfaceOf is one interface as the report shows it.
func nicInterfaceOf(i nicoffload.Interface) NICInterface {
	ifc := NICInterface{Name: i.Name, Index: i.Index, Up: i.Up, Loopback: i.Loopback, Summary: i.Summary()}
	if i.Kind != "" && i.Kind != "bond" {
		// tls-offload.rst: sockets routed through software devices
		// (tunnels, virtual networking) are not offloaded.
		ifc.Summary += " (" + i.Kind + ": a software device)"
	}
	if i.Err != nil {
		ifc.Error = i.Err.Error()
		return ifc
	}
	feat := func(f nicoffload.Feature) *NICFeature { return &NICFeature{Supported: f.Supported, Active: f.Active} }
	ifc.TLSTX, ifc.TLSRX, ifc.TLSRecord = feat(i.TX), feat(i.RX), feat(i.Record)
	return ifc
}
