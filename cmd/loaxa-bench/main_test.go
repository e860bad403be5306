package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the benchmark's child processes too: the
// scenario and devices processes re-execute the running binary.
func TestMain(m *testing.M) {
	if role, ok := childRole(os.Args); ok {
		os.Exit(runChild(role, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestSmoke runs the whole benchmark small: 20 devices on the embedded
// broker, every phase, in a few seconds. It keeps the program compiling and
// its processes, protocol and figures working; the figures themselves mean
// nothing at this size.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	md := filepath.Join(t.TempDir(), "benchmarks.md")
	var stderr io.Writer = io.Discard
	if testing.Verbose() {
		stderr = os.Stderr
	}
	var out bytes.Buffer
	rep, err := Run(ctx, Options{
		Devices: []int{20}, Brokers: []string{brokerEmbedded}, EventsPerDevice: 4, Rounds: 2,
		Units:   "../../configs/data/vietnam-units-2025-03.csv",
		Timeout: time.Minute, Markdown: md, CPUProfiles: t.TempDir(), Command: "go run ./cmd/loaxa-bench -devices 20 -broker embedded",
	}, &out, stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if len(rep.Results) != 1 {
		t.Fatalf("%d results, want 1", len(rep.Results))
	}
	r := rep.Results[0]
	if r.Err != "" || rep.Failures != 0 {
		t.Fatalf("the scenario failed: %s", r.Err)
	}
	for name, d := range map[string]time.Duration{
		"daemon fan-out": r.FanoutDaemon, "bare fan-out": r.FanoutBare,
		"daemon ingestion": r.IngestDaemon, "broker round trip": r.IngestRoundTrip,
		"broker delivery": r.IngestBroker, "raw storage": r.RawStorage,
	} {
		if d <= 0 || d > time.Minute {
			t.Errorf("%s took %s", name, d)
		}
	}
	if r.Events != 20*4 || r.RawEvents != 20*4 {
		t.Errorf("%d events, %d raw, want 80 of each", r.Events, r.RawEvents)
	}
	// The round trip ran before the daemon's first start: none of its
	// events may reach the daemon, or the devices' would be duplicates.
	if n := r.IngestCommits.EventsAppended; n != 80 {
		t.Errorf("the daemon appended %d events in its ingestion, want 80", n)
	}
	// The round trip's events stand for the daemon's: the same size but
	// for the digits of a timestamp's fraction, which JSON trims.
	if d := r.RoundTripBytes - r.EventBytes; d < -5 || d > 5 {
		t.Errorf("round trip events of %.0f B, the daemon's %.0f B", r.RoundTripBytes, r.EventBytes)
	}
	if len(r.Notes) > 0 {
		t.Errorf("notes: %q", r.Notes)
	}
	if r.SnapshotItems < 1 || r.SnapshotBytes < 500 {
		t.Errorf("snapshots of %.0f bytes and %.1f items: the devices' week is empty", r.SnapshotBytes, r.SnapshotItems)
	}
	if r.RSSPeak <= 0 || r.DevicesRSS <= 0 {
		t.Errorf("RSS: daemon %d, devices %d", r.RSSPeak, r.DevicesRSS)
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "| embedded | 20 |") {
		t.Errorf("the markdown has no row for the scenario:\n%s", b)
	}
	for _, want := range []string{"| broker round trip | daemon/round trip (goal ≥ 0.8) |", "broker round trip before the daemon's first start: "} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the markdown lacks %q:\n%s", want, b)
		}
	}
}
