// Package ktlsexpvar publishes ktls's process-wide counters (ktls.Stats)
// through the standard library's expvar, under the name "ktls". It is
// imported for that side effect only, as net/http/pprof is:
//
//	import _ "github.com/ktls-go/ktls/ktlsexpvar"
//
// The value is the JSON of a ktls.Counters snapshot, taken each time the
// variable is read; `ktls doctor -stats URL` prints it readably.
//
// Why a package of its own: importing expvar registers the handler
// /debug/vars on http.DefaultServeMux. A TLS library must not do that to
// every program that imports it, and a program that serves
// http.DefaultServeMux on a public address would then show its variables
// to anyone. So the root package ktls does not import expvar; a program
// that wants the counters there imports this package, and chooses where
// /debug/vars is served: on http.DefaultServeMux (a private listener, as
// for pprof), or on a mux of its own with expvar.Handler(), as
// examples/fileserver does.
package ktlsexpvar

import (
	"expvar"

	"github.com/ktls-go/ktls"
)

// Name is the expvar name the counters are published under.
const Name = "ktls"

func init() {
	expvar.Publish(Name, expvar.Func(func() any { return ktls.Stats() }))
}
