// Command caddy is Caddy with the ktls listener wrapper built in, as xcaddy
// would build it (xcaddy build --with github.com/ktls-go/ktls/ktlscaddy):
// Caddy's command, its standard modules, and package ktlscaddy. The wrapper
// does nothing until a server's configuration names it (see the package
// documentation of ktlscaddy).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/ktls-go/ktls/ktlscaddy"
)

func main() {
	caddycmd.Main()
}
