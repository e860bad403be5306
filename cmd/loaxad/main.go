// Command loaxad is the loaxa daemon: it plans a province's commune radio
// broadcasts, dispatches them to the stations over MQTT and keeps the
// evidence that they aired.
//
//	loaxad [--config FILE]                          run the daemon
//	loaxad version                                  print the version
//	loaxad fsck [--config FILE]                     check audio blobs against the records
//	loaxad mosquitto-config --config FILE --out DIR write Mosquitto password, ACL and config files
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // stations keep their local time even on a machine without tzdata

	"github.com/loaxa/loaxa/cmd/loaxad/daemon"
	"github.com/loaxa/loaxa/configs"
)

// version is set by the build (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("loaxad "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "configuration file (YAML); without it, the embedded defaults")
	out := fs.String("out", "", "mosquitto-config: directory to write passwd, acl and mosquitto.conf into")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: loaxad [serve] [--config FILE]\n       loaxad version\n       loaxad fsck [--config FILE]\n       loaxad mosquitto-config --config FILE --out DIR\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cmd == "version" {
		fmt.Fprintln(stdout, "loaxad", version)
		return 0
	}
	cfg, err := configs.Load(*configFile)
	if err != nil {
		fmt.Fprintf(stderr, "loaxad: configuration:\n%v\n", err)
		return 2
	}
	switch cmd {
	case "serve":
		err = daemon.Run(ctx, daemon.Options{Config: cfg, ConfigFile: *configFile})
	case "fsck":
		err = daemon.Fsck(cfg, stdout)
	case "mosquitto-config":
		if *out == "" {
			fmt.Fprintln(stderr, "loaxad mosquitto-config: --out DIR is required")
			return 2
		}
		err = daemon.MosquittoConfig(cfg, *out, stdout)
	default:
		fmt.Fprintf(stderr, "loaxad: unknown command %q\n", cmd)
		fs.Usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "loaxad %s: %v\n", cmd, err)
		return 1
	}
	return 0
}
