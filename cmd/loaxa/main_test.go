package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast/audio/audiotest"
	"github.com/loaxa/loaxa/cmd/loaxad/daemon"
	"github.com/loaxa/loaxa/configs"
)

// bin is the loaxa binary under test, built once by TestMain: the tests
// run it as operators and scripts do, so that exit codes, stdout and
// stderr are the real process's.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "loaxa-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "loaxa")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build loaxa:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// shiftedClock is real time moved to 2026-12-10 08:00 in Vietnam, so that
// the month's plan never depends on the day the tests run.
type shiftedClock struct{ offset time.Duration }

func newShiftedClock(at time.Time) shiftedClock             { return shiftedClock{offset: time.Until(at)} }
func (c shiftedClock) Now() time.Time                       { return time.Now().Add(c.offset) }
func (shiftedClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

var ict = time.FixedZone("ICT", 7*3600)

// testDaemon is a real loaxad in-process with Thanh Hoa's units.
type testDaemon struct {
	url, admin, dataDir string
}

func startDaemon(t *testing.T) testDaemon {
	t.Helper()
	cfg := configs.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.PublicURL = ""
	cfg.MQTT.Embedded.Listen = "127.0.0.1:0"
	cfg.UnitsCSV = "../../configs/data/thanh-hoa-units-2025-03.csv"
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg, Logger: log, Clock: newShiftedClock(time.Date(2026, 12, 10, 8, 0, 0, 0, ict))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return testDaemon{url: "http://" + d.HTTPAddr(), admin: strings.TrimSpace(string(admin)), dataDir: cfg.DataDir}
}

// result is what a run of the binary left.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// loaxa runs the binary with LOAXA_URL and LOAXA_TOKEN set to url and
// token (left out when empty) and nothing else from the environment.
func loaxa(t *testing.T, url, token string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{}
	if url != "" {
		cmd.Env = append(cmd.Env, "LOAXA_URL="+url)
	}
	if token != "" {
		cmd.Env = append(cmd.Env, "LOAXA_TOKEN="+token)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run loaxa %q: %v", args, err)
	}
	return r
}

// must runs the binary and fails the test unless it exits with want.
func must(t *testing.T, want int, url, token string, args ...string) result {
	t.Helper()
	r := loaxa(t, url, token, args...)
	if r.code != want {
		t.Fatalf("loaxa %s: want exit %d, got %v", strings.Join(args, " "), want, r)
	}
	return r
}

// wav writes a PCM WAV of the given length, real audio the daemon accepts,
// and returns its path.
func wav(t *testing.T, d time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chuyen-doi-so.wav")
	if err := os.WriteFile(path, audiotest.WAV(d), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
