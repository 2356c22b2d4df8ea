// Command caddy is Caddy with the pubsub module plugged in:
//
//	go run ./cmd/caddy run --config examples/Caddyfile
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-pubsub/caddy-pubsub"
)

func main() {
	caddycmd.Main()
}
