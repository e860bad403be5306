package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/devices/agent"
)

const simulateUsage = `usage: loaxa-station simulate --units FILE --secrets FILE [flags]

Runs one agent per device, all in this process, each with the null player (it
waits out each audio's duration in silence) and its own state in
DATA_DIR/<id>. Stations are the communes of the units file (the shared data
format: a commune_code column); device ids are <commune_code>-01 ... -NN.
The secrets file holds "id secret" lines as the daemon issued them
(POST /api/v1/stations/{id}/devices); lines starting with # are comments.

flags:
`

func simulate(ctx context.Context, args []string, stdout, stderr io.Writer, version string) int {
	fs := flag.NewFlagSet("loaxa-station simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	unitsFile := fs.String("units", "", "units CSV with a commune_code column (required)")
	perStation := fs.Int("devices-per-station", 1, "devices per station")
	brokerURL := fs.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	secretsFile := fs.String("secrets", "", `file of "id secret" lines (required)`)
	dataDir := fs.String("data-dir", "sim-data", "directory for the devices' state, one subdirectory each")
	topicRoot := fs.String("topic-root", agent.DefaultTopicRoot, "MQTT topic root")
	keysDir := fs.String("keys-dir", "", "optional: a key file DIR/<id>.key signs that device's events")
	under := fs.String("under", "", "only communes whose province, district or commune code is this")
	limit := fs.Int("limit", 0, "at most this many stations (0: all)")
	ramp := fs.Duration("ramp", 10*time.Second, "spread the devices' start over this long, so that they do not all connect at once")
	skipMissing := fs.Bool("skip-missing", false, "skip devices that have no secret instead of refusing to start")
	every := fs.Duration("progress", 30*time.Second, "print a progress line this often (0: never)")
	lf := addLogFlags(fs, "warn")
	fs.Usage = func() {
		fmt.Fprint(stderr, simulateUsage)
		fs.PrintDefaults()
	}
	if code, done := parse(fs, args); done {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "loaxa-station simulate: "+format+"\n", a...)
		return 2
	}
	switch {
	case *unitsFile == "":
		return fail("--units FILE is required")
	case *secretsFile == "":
		return fail("--secrets FILE is required")
	case *perStation < 1 || *perStation > 99:
		return fail("--devices-per-station %d: want 1-99", *perStation)
	case *ramp < 0:
		return fail("--ramp must not be negative")
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return fail("%v", err)
	}
	communes, err := readCommunes(*unitsFile, *under)
	if err != nil {
		return fail("%v", err)
	}
	if *limit > 0 && len(communes) > *limit {
		communes = communes[:*limit]
	}
	secrets, err := readSecrets(*secretsFile)
	if err != nil {
		return fail("%v", err)
	}

	var agents []*agent.Agent
	var ids, missing []string
	for _, code := range communes {
		for n := 1; n <= *perStation; n++ {
			id := fmt.Sprintf("%s-%02d", code, n)
			secret, ok := secrets[id]
			if !ok {
				missing = append(missing, id)
				continue
			}
			cfg := agent.Config{
				Device: id, Secret: secret, Broker: *brokerURL, TopicRoot: *topicRoot,
				DataDir: filepath.Join(*dataDir, id), Player: []string{"null"},
			}
			if *keysDir != "" {
				if p := filepath.Join(*keysDir, id+".key"); fileExists(p) {
					cfg.KeyFile = p
				}
			}
			a, err := agent.New(cfg, agent.Options{Logger: log.With("device", id), Version: version})
			if err != nil {
				return fail("device %s: %v", id, err)
			}
			agents = append(agents, a)
			ids = append(ids, id)
		}
	}
	if len(missing) > 0 && !*skipMissing {
		return fail("%d devices have no secret in %s (first: %s); add them or pass --skip-missing", len(missing), *secretsFile, missing[0])
	}
	if len(agents) == 0 {
		return fail("no devices to simulate")
	}
	fmt.Fprintf(stdout, "simulating %d devices at %d stations on %s\n", len(agents), len(communes), *brokerURL)
	return runFleet(ctx, agents, ids, *ramp, *every, stdout, stderr)
}

// runFleet runs every agent until ctx is done. Each agent shares nothing
// with the others but the process.
func runFleet(ctx context.Context, agents []*agent.Agent, ids []string, ramp, every time.Duration, stdout, stderr io.Writer) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	step := ramp / time.Duration(len(agents))
	progressDone := make(chan struct{})
	if every > 0 {
		go func() {
			defer close(progressDone)
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					fmt.Fprintln(stdout, summary(agents))
				}
			}
		}()
	} else {
		close(progressDone)
	}
start:
	for i, a := range agents {
		if i > 0 && step > 0 {
			select {
			case <-time.After(step):
			case <-ctx.Done():
				break start
			}
		}
		wg.Go(func() {
			if err := a.Run(ctx); err != nil {
				fmt.Fprintf(stderr, "loaxa-station simulate: device %s: %v\n", ids[i], err)
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	<-progressDone
	fmt.Fprintln(stdout, "stopped:", summary(agents))
	if failed > 0 {
		return 1
	}
	return 0
}

func summary(agents []*agent.Agent) string {
	var connected, playing, outbox, sent, refused int64
	for _, a := range agents {
		s := a.Stats()
		if s.Connected {
			connected++
		}
		if s.Playing != "" {
			playing++
		}
		outbox += int64(s.Outbox)
		if s.NextSeq > 0 {
			sent += int64(s.NextSeq - 1)
		}
		for _, n := range s.Rejected {
			refused += n
		}
	}
	return fmt.Sprintf("devices=%d connected=%d playing=%d events=%d awaiting_receipt=%d refused=%d",
		len(agents), connected, playing, sent, outbox, refused)
}

// readCommunes returns the distinct commune codes of a units CSV, in file
// order, keeping only those under a unit code when one is given.
func readCommunes(path, under string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("units: %w", err)
	}
	defer func() { _ = f.Close() }()
	r := csv.NewReader(bufio.NewReader(f))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("units %s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	if _, ok := col["commune_code"]; !ok {
		return nil, fmt.Errorf("units %s: no commune_code column", path)
	}
	var out []string
	seen := map[string]bool{}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("units %s: %w", path, err)
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		code := get("commune_code")
		if code == "" || seen[code] {
			continue
		}
		if !broadcast.ValidID(code) {
			return nil, fmt.Errorf("units %s line %d: commune_code %q cannot be part of a device id", path, line, code)
		}
		if under != "" && !slices.Contains([]string{get("province_code"), get("district_code"), code}, under) {
			continue
		}
		seen[code] = true
		out = append(out, code)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("units %s: no commune matches", path)
	}
	return out, nil
}

// readSecrets reads "id secret" lines.
func readSecrets(path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	out := map[string]string{}
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || !broadcast.ValidID(f[0]) {
			return nil, fmt.Errorf("secrets %s line %d: want \"<device id> <secret>\"", path, i+1)
		}
		out[f[0]] = f[1]
	}
	return out, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
