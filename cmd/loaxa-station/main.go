// Command loaxa-station is the device agent of a commune loudspeaker
// cluster (docs/protocol.md): it keeps the device's schedule from the daemon,
// fetches and verifies the audio, plays it on time with or without a
// network, and reports every step as a signed event until the daemon has
// logged it. With simulate it runs a whole fleet of such devices in one
// process, for demos and load tests.
//
//	loaxa-station [--config FILE]            run the agent (see devices/agent for the file)
//	loaxa-station keygen --out FILE          write a new signing key; print its public key
//	loaxa-station pubkey --key FILE          print the public key of a key file
//	loaxa-station simulate --units FILE --secrets FILE --broker URL [...]
//	loaxa-station version
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is set by the build (-ldflags "-X main.version=…").
var version = ""

func main() {
	// SIGTERM is what systemd sends, often because the UPS is about to
	// give out: the agent reports what it was playing and disconnects.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, version))
}
