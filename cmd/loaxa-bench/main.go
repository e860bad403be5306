// Command loaxa-bench measures, in one run, what docs/benchmarks.md asks of the daemon
// at national scale, against the real daemon (daemon.Start) and a simulated
// fleet of one device per commune:
//
//   - the fan-out of schedule snapshots to every device through the
//     scheduler and Hub.PublishSnapshot, next to a bare pipelined paho
//     publisher sending the same bytes through the same broker;
//   - the ingestion of signed events with receipts, next to the broker's own
//     round trip of the same exchange (the same devices' events answered by
//     a bare receiver), its one-way delivery rate, and storage's raw group
//     commit;
//   - the daemon's RSS with every device connected.
//
// Each for the embedded broker and for Mosquitto, started with the files the
// daemon writes for it. The devices run in a child process of their own, so
// that the daemon's process holds the daemon alone. See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `usage: go run ./cmd/loaxa-bench [flags]

Runs the daemon at national scale against a simulated fleet (one device per
commune of the units file) and prints: the fan-out of schedule snapshots next
to a bare paho publisher, event ingestion with receipts next to the broker's
own round trip and one-way rate and storage's raw group commit, and the
daemon's RSS. A full run (2,000 and 10,047 devices, both brokers) takes about
a minute on two CPUs.

flags:
`

// Options are a run's settings.
type Options struct {
	Devices         []int    // fleet sizes, each a scenario
	Brokers         []string // brokerEmbedded, brokerMosquitto
	EventsPerDevice int
	Rounds          int           // fan-out rounds
	Units           string        // the units CSV: one station and device per commune
	Mosquitto       string        // Mosquitto's binary; "" finds it
	Timeout         time.Duration // for each timed phase
	Markdown        string        // a file for the markdown report; "" for none
	CPUProfiles     string        // a directory for the daemon's CPU profiles; "" for none
	Command         string        // the command line, for the report
}

func main() {
	if role, ok := childRole(os.Args); ok {
		os.Exit(runChild(role, os.Stdin, os.Stdout, os.Stderr))
	}
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loaxa-bench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := Run(ctx, opts, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loaxa-bench: %v\n", err)
		os.Exit(1)
	}
	if rep.Failures > 0 {
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (Options, error) {
	fs := flag.NewFlagSet("loaxa-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	devs := fs.String("devices", "2000,10047", "fleet sizes, comma-separated; one device per commune, in file order")
	broker := fs.String("broker", "both", "embedded, mosquitto or both")
	events := fs.Int("events-per-device", 1, "signed events each device sends at once (1: one each, as when a broadcast ends everywhere at once; 4: an airing's received, ready, started and finished, as a reconnecting device's backlog)")
	rounds := fs.Int("rounds", 5, "fan-out rounds (the daemon restarts for each); the table shows the medians")
	units := fs.String("units", "configs/data/vietnam-units-2025-03.csv", "units CSV (shared data format)")
	mosq := fs.String("mosquitto-bin", "", "Mosquitto binary (default: /usr/sbin/mosquitto, or mosquitto on PATH)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up on a timed phase after this long")
	md := fs.String("markdown", "", "also write the report as markdown to this file")
	prof := fs.String("cpuprofile", "", "write CPU profiles of the daemon's process during its fan-out and ingestion, and heap profiles after each, into this directory")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		return Options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o := Options{EventsPerDevice: *events, Rounds: *rounds, Units: *units, Mosquitto: *mosq, Timeout: *timeout, Markdown: *md, CPUProfiles: *prof,
		Command: strings.TrimSpace("go run ./cmd/loaxa-bench " + strings.Join(args, " "))}
	for _, s := range strings.Split(*devs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-devices: %q is not a positive number", s)
		}
		o.Devices = append(o.Devices, n)
	}
	switch *broker {
	case "both":
		o.Brokers = []string{brokerEmbedded, brokerMosquitto}
	case brokerEmbedded, brokerMosquitto:
		o.Brokers = []string{*broker}
	default:
		return o, fmt.Errorf("-broker %q: want embedded, mosquitto or both", *broker)
	}
	if o.EventsPerDevice < 1 {
		return o, fmt.Errorf("-events-per-device %d: want at least 1", o.EventsPerDevice)
	}
	if o.Rounds < 1 {
		return o, fmt.Errorf("-rounds %d: want at least 1", o.Rounds)
	}
	if o.Timeout <= 0 {
		return o, errors.New("-timeout must be positive")
	}
	return o, nil
}

// Run runs every scenario, each in its own process, prints the table to
// stdout (progress goes to stderr) and writes the markdown. A scenario that
// fails is reported and counted in Failures; the others still run.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) (Report, error) {
	units, err := filepath.Abs(o.Units)
	if err != nil {
		return Report{}, err
	}
	if o.CPUProfiles != "" {
		if o.CPUProfiles, err = filepath.Abs(o.CPUProfiles); err == nil {
			err = os.MkdirAll(o.CPUProfiles, 0o755)
		}
		if err != nil {
			return Report{}, fmt.Errorf("-cpuprofile: %w", err)
		}
	}
	if _, err := os.Stat(units); err != nil {
		return Report{}, fmt.Errorf("units file: %w (run from the repository's root, or pass -units)", err)
	}
	var bin string
	for _, b := range o.Brokers {
		if b == brokerMosquitto {
			if bin, err = findMosquitto(o.Mosquitto); err != nil {
				return Report{}, err
			}
		}
	}
	rep := Report{Machine: machine(bin), Command: o.Command, Started: time.Now()}
	fmt.Fprintf(stdout, "%s, %d CPUs, %s, %s, %s; load %s\n", rep.Machine.CPU, rep.Machine.CPUs, rep.Machine.Memory, rep.Machine.Go, rep.Machine.Kernel, loadAverage())
	for _, b := range o.Brokers {
		for _, n := range o.Devices {
			spec := Spec{Broker: b, Devices: n, EventsPerDevice: o.EventsPerDevice, Rounds: o.Rounds, Units: units, Mosquitto: bin, Timeout: o.Timeout, CPUProfiles: o.CPUProfiles}
			res, err := runScenarioProcess(ctx, spec, stderr)
			if err != nil {
				res = Result{Spec: spec, Err: err.Error()}
			}
			if res.Err != "" {
				rep.Failures++
			}
			rep.Results = append(rep.Results, res)
			fmt.Fprintln(stderr, res.details())
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
		}
	}
	rep.Took = time.Since(rep.Started).Round(time.Second).String()
	rep.LoadEnd = loadAverage()
	fmt.Fprintln(stdout)
	printTable(stdout, rep)
	if o.Markdown != "" {
		if err := os.WriteFile(o.Markdown, markdown(rep), 0o644); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// runScenarioProcess runs a scenario in a fresh process: its RSS is then the
// daemon's, not the leftovers of the scenario before.
func runScenarioProcess(ctx context.Context, spec Spec, stderr io.Writer) (Result, error) {
	c, err := startChild(ctx, roleScenario, stderr)
	if err != nil {
		return Result{}, err
	}
	var res Result
	err = c.call("run", spec, &res)
	if cerr := c.close(2 * time.Minute); err == nil && cerr != nil {
		err = cerr
	}
	return res, err
}
