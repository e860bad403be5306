package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/loaxa/loaxa/devices/agent"
)

// defaultConfig is where a packaged receiver keeps its config.
const defaultConfig = "/etc/loaxa-station/station.yaml"

const usage = `usage: loaxa-station [run] [--config FILE]      run the device agent
       loaxa-station keygen --out FILE          write a new ed25519 signing key (PKCS#8 PEM, mode 0600)
                                                and print its public key for the daemon
       loaxa-station pubkey --key FILE          print the public key of a key file
       loaxa-station simulate [flags]           run a fleet of simulated devices (see simulate -h)
       loaxa-station version
`

// run is the whole command, callable from tests; it returns the exit code:
// 0 done, 1 failed, 2 bad usage or configuration.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, version string) int {
	if version == "" {
		version = agent.Version
	}
	cmd := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runAgent(ctx, args, stderr, version)
	case "keygen":
		return keygen(args, stdout, stderr)
	case "pubkey":
		return pubkey(args, stdout, stderr)
	case "simulate":
		return simulate(ctx, args, stdout, stderr, version)
	case "version":
		fmt.Fprintln(stdout, "loaxa-station", version)
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "loaxa-station: unknown command %q\n%s", cmd, usage)
	return 2
}

// logFlags are the logging flags every long-running command takes.
type logFlags struct {
	level, format *string
}

func addLogFlags(fs *flag.FlagSet, level string) logFlags {
	return logFlags{
		level:  fs.String("log-level", level, "debug, info, warn or error"),
		format: fs.String("log-format", "text", "text or json"),
	}
}

func (f logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*f.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", *f.level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch *f.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", *f.format)
}

// parse parses flags and reports the exit code to return, if any.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, true
	}
	return 0, false
}

func runAgent(ctx context.Context, args []string, stderr io.Writer, version string) int {
	fs := flag.NewFlagSet("loaxa-station", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", defaultConfig, "the agent's YAML configuration")
	lf := addLogFlags(fs, "info")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage+"\nflags:\n")
		fs.PrintDefaults()
	}
	if code, done := parse(fs, args); done {
		return code
	}
	log, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "loaxa-station:", err)
		return 2
	}
	cfg, err := agent.LoadConfig(*configFile)
	if err != nil {
		fmt.Fprintf(stderr, "loaxa-station: %v\n", err)
		return 2
	}
	a, err := agent.New(cfg, agent.Options{Logger: log.With("device", cfg.Device), Version: version})
	if err != nil {
		fmt.Fprintf(stderr, "loaxa-station: %v\n", err)
		return 2
	}
	if err := a.Run(ctx); err != nil {
		log.Error("agent failed", "err", err)
		return 1
	}
	return 0
}

func keygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loaxa-station keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "the private key file to create (never overwritten)")
	if code, done := parse(fs, args); done {
		return code
	}
	if *out == "" {
		fmt.Fprintln(stderr, "loaxa-station keygen: --out FILE is required")
		return 2
	}
	pub, err := agent.WriteKeyFile(*out)
	if err != nil {
		fmt.Fprintf(stderr, "loaxa-station keygen: %v\n", err)
		return 1
	}
	// stdout carries the key alone, so that a script can capture it; the
	// advice goes to stderr.
	fmt.Fprintln(stdout, agent.PublicKeyString(pub))
	fmt.Fprintf(stderr, "wrote %s; register the public key above with the daemon (POST /api/v1/stations/{id}/devices, field public_key) and set key_file: %s\n", *out, *out)
	return 0
}

func pubkey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loaxa-station pubkey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	key := fs.String("key", "", "the private key file")
	if code, done := parse(fs, args); done {
		return code
	}
	if strings.TrimSpace(*key) == "" {
		fmt.Fprintln(stderr, "loaxa-station pubkey: --key FILE is required")
		return 2
	}
	priv, err := agent.LoadKeyFile(*key)
	if err != nil {
		fmt.Fprintf(stderr, "loaxa-station pubkey: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, agent.PublicKeyString(priv.Public().(ed25519.PublicKey)))
	return 0
}
