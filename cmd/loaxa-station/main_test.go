package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/devices/agent"
	"github.com/loaxa/loaxa/devices/agent/agenttest"
)

const root = "loaxa/v1"

// syncBuffer is a bytes.Buffer safe for the command's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut syncBuffer
	code := run(context.Background(), args, &out, &errOut, "test")
	return code, out.String(), errOut.String()
}

func TestVersionUsage(t *testing.T) {
	if code, out, _ := runCmd(t, "version"); code != 0 || out != "loaxa-station test\n" {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, errOut := runCmd(t, "dance"); code != 2 || !strings.Contains(errOut, "usage") {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	if code, _, _ := runCmd(t, "--help"); code != 0 {
		t.Errorf("--help: %d", code)
	}
	if code, _, errOut := runCmd(t, "--config", "/nonexistent.yaml"); code != 2 || !strings.Contains(errOut, "nonexistent") {
		t.Errorf("missing config: %d %q", code, errOut)
	}
}

func TestKeygenAndPubkey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "device.key")
	code, out, errOut := runCmd(t, "keygen", "--out", p)
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, errOut)
	}
	if _, err := broadcast.ParsePublicKey(out); err != nil {
		t.Errorf("keygen printed %q: %v", out, err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi.Mode(), err)
	}
	if code, _, _ := runCmd(t, "keygen", "--out", p); code != 1 {
		t.Errorf("keygen over an existing key: exit %d; want 1", code)
	}
	if code, again, _ := runCmd(t, "pubkey", "--key", p); code != 0 || again != out {
		t.Errorf("pubkey: %d %q; want %q", code, again, out)
	}
	if code, _, _ := runCmd(t, "keygen"); code != 2 {
		t.Errorf("keygen without --out: %d", code)
	}
}

func TestBadConfigNamesTheLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "station.yaml")
	if err := os.WriteFile(p, []byte("device: 14755-01\nsecret: s\nbroker: tcp://127.0.0.1:1\ndata_dir: d\nvolme: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd(t, "--config", p)
	if code != 2 || !strings.Contains(errOut, "line 5") || !strings.Contains(errOut, "volme") {
		t.Errorf("exit %d, %q; want 2 and the line and key", code, errOut)
	}
}

type world struct {
	broker *agenttest.Broker
	audio  *agenttest.AudioServer
	daemon *agenttest.Daemon
}

func newWorld(t *testing.T) *world {
	b := agenttest.StartBroker(t)
	return &world{broker: b, audio: agenttest.NewAudioServer(t), daemon: agenttest.NewDaemon(t, b.URL(), root)}
}

func (w *world) config(t *testing.T, dev string) string {
	w.audio.Allow(dev, "secret")
	dir := t.TempDir()
	p := filepath.Join(dir, "station.yaml")
	body := fmt.Sprintf("device: %s\nsecret: secret\nbroker: %s\ndata_dir: data\nplayer: [null]\n", dev, w.broker.URL())
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (w *world) item(t *testing.T, airing string, start time.Time, dur, window time.Duration) broadcast.Item {
	audio := make([]byte, 8<<10)
	_, _ = rand.Read(audio)
	return broadcast.Item{Airing: airing, Start: start, NotAfter: start.Add(window), Audio: w.audio.Add(audio, dur)}
}

func lastStatus(w *world, dev string) (broadcast.DeviceStatus, bool) {
	st := w.daemon.Statuses(dev)
	if len(st) == 0 {
		return broadcast.DeviceStatus{}, false
	}
	return st[len(st)-1], true
}

func TestRunAgentUntilCancelled(t *testing.T) {
	w := newWorld(t)
	const dev = "14755-01"
	cfg := w.config(t, dev)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"--config", cfg, "--log-level", "debug"}, &out, &errOut, "9.9.9") }()
	agenttest.Eventually(t, 10*time.Second, "online", func() bool {
		s, ok := lastStatus(w, dev)
		return ok && s.State == "online"
	})
	if s, _ := lastStatus(w, dev); s.Agent != "loaxa-station/9.9.9" {
		t.Errorf("agent %q; want the build's version", s.Agent)
	}
	w.daemon.Snapshot(broadcast.Snapshot{Device: dev, Rev: 1, Items: []broadcast.Item{w.item(t, "A", time.Now().Add(time.Hour), time.Minute, time.Hour)}})
	agenttest.Eventually(t, 10*time.Second, "ready", func() bool { return len(w.daemon.Events(dev)) == 2 })
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	agenttest.Eventually(t, 5*time.Second, "offline status", func() bool {
		s, _ := lastStatus(w, dev)
		return s.State == "offline"
	})
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "data", "agent.db")); err != nil {
		t.Errorf("data_dir not relative to the config file: %v", err)
	}
}

func TestSimulateFleet(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	units := filepath.Join(dir, "units.csv")
	csv := "province_code,province_name,district_code,district_name,district_type,commune_code,commune_name,commune_type\n" +
		"38,Tỉnh Thanh Hóa,380,Thành phố Thanh Hóa,Thành phố,14755,Phường Hàm Rồng,Phường\n" +
		"38,Tỉnh Thanh Hóa,380,Thành phố Thanh Hóa,Thành phố,14758,Phường Đông Thọ,Phường\n" +
		"38,Tỉnh Thanh Hóa,,,,14761,Phường Nam Ngạn,Phường\n" +
		"40,Tỉnh Nghệ An,412,Huyện X,Huyện,16000,Xã Y,Xã\n"
	secrets := filepath.Join(dir, "secrets.txt")
	var s strings.Builder
	s.WriteString("# issued by the daemon\n")
	var ids []string
	for _, c := range []string{"14755", "14758", "14761"} {
		for n := 1; n <= 2; n++ {
			id := fmt.Sprintf("%s-%02d", c, n)
			ids = append(ids, id)
			w.audio.Allow(id, "s-"+id)
			fmt.Fprintf(&s, "%s s-%s\n", id, id)
		}
	}
	for _, f := range []struct{ path, body string }{{units, csv}, {secrets, s.String()}} {
		if err := os.WriteFile(f.path, []byte(f.body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	args := []string{"simulate", "--units", units, "--under", "38", "--devices-per-station", "2", "--secrets", secrets,
		"--broker", w.broker.URL(), "--data-dir", filepath.Join(dir, "sim"), "--ramp", "100ms", "--progress", "0"}
	go func() { done <- run(ctx, args, &out, &errOut, "test") }()
	agenttest.Eventually(t, 15*time.Second, "every device online", func() bool {
		for _, id := range ids {
			if s, ok := lastStatus(w, id); !ok || s.State != "online" {
				return false
			}
		}
		return true
	})
	w.daemon.Snapshot(broadcast.Snapshot{Device: "14761-02", Rev: 1, Items: []broadcast.Item{w.item(t, "SIM", time.Now().Add(time.Hour), time.Minute, time.Hour)}})
	agenttest.Eventually(t, 10*time.Second, "the device took its snapshot", func() bool { return len(w.daemon.Events("14761-02")) == 2 })
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("simulate exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "simulating 6 devices at 3 stations") || !strings.Contains(out.String(), "stopped: devices=6") {
		t.Errorf("output %q", out.String())
	}

	// A device without a secret stops the fleet before it starts.
	if code, _, errOut := runCmd(t, "simulate", "--units", units, "--devices-per-station", "3", "--secrets", secrets, "--broker", w.broker.URL()); code != 2 || !strings.Contains(errOut, "no secret") {
		t.Errorf("missing secrets: exit %d %q", code, errOut)
	}
}

// TestKilledMidBroadcast runs the real binary and SIGKILLs it while it
// plays: the restarted agent reports the airing failed/power, once, keeps
// every earlier event and never plays it again.
func TestKilledMidBroadcast(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "loaxa-station")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	w := newWorld(t)
	const dev = "14755-07"
	cfg := w.config(t, dev)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--config", cfg, "--log-level", "debug")
		var logs syncBuffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("agent log:\n%s", logs.String())
			}
		})
		return cmd
	}
	has := func(typ broadcast.EventType) func() bool {
		return func() bool {
			for _, ev := range w.daemon.Events(dev) {
				if ev.Event == typ {
					return true
				}
			}
			return false
		}
	}
	first := start()
	w.daemon.Snapshot(broadcast.Snapshot{Device: dev, Rev: 1, Items: []broadcast.Item{w.item(t, "KILL", time.Now().Add(1500*time.Millisecond), time.Minute, 5*time.Minute)}})
	agenttest.Eventually(t, 15*time.Second, "started", has(broadcast.EventStarted))
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	second := start()
	agenttest.Eventually(t, 15*time.Second, "failed/power", has(broadcast.EventFailed))
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
	var got []string
	for i, ev := range w.daemon.Events(dev) {
		if ev.Seq != uint64(i+1) {
			t.Errorf("seq %d at %d", ev.Seq, i)
		}
		got = append(got, string(ev.Event)+":"+ev.Reason)
	}
	if strings.Join(got, " ") != "received: ready: started: failed:power" {
		t.Errorf("events %v", got)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := agent.LoadConfig("station.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Device != "14755-03" || len(cfg.Player) == 0 || cfg.Player[0] != "mpv" {
		t.Errorf("example config: %+v", cfg)
	}
}
