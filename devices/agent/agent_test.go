package agent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/devices/agent"
	"github.com/loaxa/loaxa/devices/agent/agenttest"
)

const root = "loaxa/v1"

// base is the fake clock's start: a December morning at a commune, UTC+7.
var base = time.Date(2026, 12, 5, 6, 0, 0, 0, time.FixedZone("ICT", 7*3600))

type env struct {
	t      *testing.T
	broker *agenttest.Broker
	audio  *agenttest.AudioServer
	daemon *agenttest.Daemon
	clock  *agenttest.FakeClock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	t.Parallel()
	e := &env{t: t, broker: agenttest.StartBroker(t), audio: agenttest.NewAudioServer(t), clock: agenttest.NewFakeClock(base)}
	e.daemon = agenttest.NewDaemon(t, e.broker.URL(), root)
	return e
}

func (e *env) config(device string) agent.Config {
	e.audio.Allow(device, "secret-"+device)
	return agent.Config{
		Device: device, Secret: "secret-" + device, Broker: e.broker.URL(),
		TopicRoot: root, DataDir: e.t.TempDir(),
	}
}

// running is an agent in its own goroutine.
type running struct {
	*agent.Agent
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func (e *env) start(cfg agent.Config) *running {
	e.t.Helper()
	a, err := agent.New(cfg, agent.Options{
		Logger:         testLogger(e.t, cfg.Device),
		Clock:          e.clock,
		ResendInterval: time.Minute,
		RetryInterval:  10 * time.Second,
		ReconnectMax:   time.Second,
	})
	if err != nil {
		e.t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	agenttest.Eventually(e.t, 10*time.Second, cfg.Device+" connected", func() bool { return a.Stats().Connected })
	return r
}

// stop cancels Run and waits for its clean return; idempotent.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})
}

// testLogger logs into the test's output, shown when it fails.
func testLogger(t *testing.T, device string) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("device", device)
}

// item is an airing whose audio the audio server serves.
func (e *env) item(airing string, start time.Duration, window time.Duration, audio broadcast.AudioRef) broadcast.Item {
	s := e.clock.Now().Add(start)
	return broadcast.Item{
		Airing: airing, Programme: "PROG", Title: "Chuyển đổi số " + airing, Kind: broadcast.KindPremiere,
		Start: s, NotAfter: s.Add(window), Audio: audio,
	}
}

func (e *env) snapshot(device string, rev uint64, items ...broadcast.Item) {
	e.daemon.Snapshot(broadcast.Snapshot{Device: device, Station: strings.Split(device, "-")[0], Rev: rev, IssuedAt: e.clock.Now(), Items: items})
}

func randomAudio(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// waitEvents waits until the device's log holds n events.
func (e *env) waitEvents(device string, n int) []broadcast.Event {
	e.t.Helper()
	agenttest.Eventually(e.t, 10*time.Second, fmt.Sprintf("%d events from %s", n, device), func() bool {
		return len(e.daemon.Events(device)) >= n
	})
	return e.daemon.Events(device)
}

// advanceUntil moves the fake clock in steps until cond holds.
func (e *env) advanceUntil(step time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("fake time %v: still waiting for %s", e.clock.Now().Sub(base), what)
		}
		e.clock.Step(step)
		time.Sleep(time.Millisecond)
	}
}

// find returns the device's events for airing of the given type.
func find(evs []broadcast.Event, airing string, typ broadcast.EventType) []broadcast.Event {
	var out []broadcast.Event
	for _, ev := range evs {
		if ev.Airing == airing && ev.Event == typ {
			out = append(out, ev)
		}
	}
	return out
}

func (e *env) has(device, airing string, typ broadcast.EventType) func() bool {
	return func() bool { return len(find(e.daemon.Events(device), airing, typ)) > 0 }
}

// checkLog checks what the daemon's as-run log relies on: seqs 1..n with no
// gap, and no airing/event pair twice (except failures with distinct reasons).
func checkLog(t *testing.T, evs []broadcast.Event) {
	t.Helper()
	seen := map[string]bool{}
	for i, ev := range evs {
		if ev.Seq != uint64(i+1) {
			t.Errorf("event %d has seq %d; want %d (seqs must rise by one): %+v", i, ev.Seq, i+1, evs)
			return
		}
		k := ev.Airing + "/" + string(ev.Event) + "/" + ev.Reason
		if seen[k] {
			t.Errorf("duplicate %s event for %s (seq %d)", ev.Event, ev.Airing, ev.Seq)
		}
		seen[k] = true
	}
}

func types(evs []broadcast.Event, airing string) string {
	var s []string
	for _, ev := range evs {
		if ev.Airing == airing {
			t := string(ev.Event)
			if ev.Reason != "" {
				t += ":" + ev.Reason
			}
			s = append(s, t)
		}
	}
	return strings.Join(s, " ")
}

func TestFullSequenceSigned(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-01"
	cfg := e.config(dev)
	cfg.KeyFile = filepath.Join(t.TempDir(), "device.key")
	pub, err := agent.WriteKeyFile(cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	e.daemon.SetKey(dev, pub)
	audio := e.audio.Add(randomAudio(t, 64<<10), 30*time.Second)
	e.start(cfg)
	e.snapshot(dev, 1, e.item("AIR1", 10*time.Minute, 15*time.Minute, audio))

	evs := e.waitEvents(dev, 2)
	if got := types(evs, "AIR1"); got != "received ready" {
		t.Fatalf("before the start: %s; want received ready", got)
	}
	e.advanceUntil(30*time.Second, "started", e.has(dev, "AIR1", broadcast.EventStarted))
	e.advanceUntil(5*time.Second, "finished", e.has(dev, "AIR1", broadcast.EventFinished))
	evs = e.daemon.Events(dev)
	checkLog(t, evs)
	if got := types(evs, "AIR1"); got != "received ready started finished" {
		t.Fatalf("events: %s", got)
	}
	started, fin := evs[2], evs[3]
	if want := base.Add(10 * time.Minute); started.At.Before(want) || started.At.After(want.Add(30*time.Second)) {
		t.Errorf("started at %v; the airing starts at %v", started.At, want)
	}
	if !fin.StartedAt.Equal(started.At) || fin.SHA256 != audio.SHA256 || !fin.ClockSynced {
		t.Errorf("finished = %+v; want started_at %v, sha256 %s, clock_synced", fin, started.At, audio.SHA256)
	}
	if fin.PlayedMS < 30000 || fin.PlayedMS > 40000 {
		t.Errorf("played_ms = %d; the audio lasts 30000", fin.PlayedMS)
	}
	for _, ev := range evs {
		if ev.Rev != 1 || ev.Device != dev || ev.V != 1 || !broadcast.ValidID(ev.ID) {
			t.Errorf("event %+v: want rev 1, device %s, v 1, an id", ev, dev)
		}
	}
	// The daemon's helper verified every signature; check one by hand too.
	d := e.daemon.Deliveries(dev)[0]
	ev, env, err := broadcast.DecodeEvent(d.Payload)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(env.Sig)
	if err != nil || !ed25519.Verify(pub, env.Body, sig) || ev.Seq != 1 {
		t.Errorf("event 1 does not verify with the device's key: %s", d.Payload)
	}

	st := e.daemon.Statuses(dev)
	if len(st) == 0 || st[0].State != "online" || st[0].Agent != "loaxa-station/"+agent.Version {
		t.Errorf("statuses %+v; want online from loaxa-station/%s", st, agent.Version)
	}
}

func TestOutboxResentUntilReceipt(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-02"
	audio := e.audio.Add(randomAudio(t, 4<<10), time.Second)
	r := e.start(e.config(dev))
	e.snapshot(dev, 1, e.item("AIR1", 100*time.Hour, time.Hour, audio))
	e.waitEvents(dev, 2)
	if n := len(e.daemon.Deliveries(dev)); n != 2 {
		t.Fatalf("%d deliveries before any reconnect; want 2", n)
	}

	// A dropped link: the agent resends its whole outbox on reconnect.
	if !e.broker.DropClient("dev-" + dev) {
		t.Fatal("agent not connected to the broker")
	}
	agenttest.Eventually(t, 10*time.Second, "outbox resent on reconnect", func() bool { return len(e.daemon.Deliveries(dev)) >= 4 })

	// A broker restart loses every session and retained message; the
	// periodic resend brings the events through even if the daemon was
	// subscribed too late for the reconnect's resend.
	daemonConnects, agentConnects := e.daemon.Connects(), r.Stats().Connects
	e.broker.Restart()
	for i := 0; !(e.daemon.Connects() > daemonConnects && r.Stats().Connects > agentConnects); i++ {
		if i == 1000 {
			t.Fatalf("daemon %d>%d agent %d>%d", e.daemon.Connects(), daemonConnects, r.Stats().Connects, agentConnects)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.advanceUntil(20*time.Second, "periodic resend", func() bool { return len(e.daemon.Deliveries(dev)) >= 6 })
	checkLog(t, e.daemon.Events(dev))

	e.daemon.Receipt(dev, 2)
	agenttest.Eventually(t, 5*time.Second, "receipt applied", func() bool { return r.Stats().Outbox == 0 })
	if h := r.Stats().LogHash; h != "hash-2" {
		t.Errorf("log hash %q; want hash-2", h)
	}
	before := len(e.daemon.Deliveries(dev))
	connects := r.Stats().Connects
	e.broker.DropClient("dev-" + dev)
	agenttest.Eventually(t, 10*time.Second, "reconnected", func() bool { return r.Stats().Connects > connects })
	e.clock.Advance(5 * time.Minute)
	time.Sleep(300 * time.Millisecond)
	if n := len(e.daemon.Deliveries(dev)); n != before {
		t.Errorf("%d deliveries after the receipt; want still %d", n, before)
	}
	if st := e.daemon.Statuses(dev); st[len(st)-1].Outbox != 0 {
		t.Errorf("status outbox %d after the receipt", st[len(st)-1].Outbox)
	}
}

func TestStaleSnapshotIgnored(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-03"
	audio := e.audio.Add(randomAudio(t, 1<<10), time.Second)
	r := e.start(e.config(dev))
	e.snapshot(dev, 5, e.item("NEW", time.Hour, time.Hour, audio))
	e.waitEvents(dev, 2)
	e.snapshot(dev, 4, e.item("OLDER", time.Hour, time.Hour, audio))
	e.snapshot(dev, 5, e.item("EQUAL", time.Hour, time.Hour, audio))
	agenttest.Eventually(t, 5*time.Second, "stale snapshots counted", func() bool { return r.Stats().StaleSnapshots >= 2 })
	evs := e.daemon.Events(dev)
	if got := types(evs, "NEW"); got != "received ready" || len(evs) != 2 {
		t.Errorf("events %+v; want NEW's received and ready only", evs)
	}
	if r.Stats().Rev != 5 {
		t.Errorf("rev %d; want 5", r.Stats().Rev)
	}
}

func TestCancelledItems(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-04"
	audio := e.audio.Add(randomAudio(t, 2<<10), 10*time.Minute)
	missing := e.audio.Add(randomAudio(t, 2<<10), time.Minute)
	e.audio.FailNext(missing.SHA256, 1000)
	e.start(e.config(dev))
	a := e.item("KEEP", time.Minute, 30*time.Minute, audio)
	b := e.item("DROP", 2*time.Hour, time.Hour, audio)
	c := e.item("NOTREADY", 3*time.Hour, time.Hour, missing)
	e.snapshot(dev, 1, a, b, c)
	agenttest.Eventually(t, 10*time.Second, "ready", func() bool {
		return e.has(dev, "KEEP", broadcast.EventReady)() && e.has(dev, "DROP", broadcast.EventReady)() && e.has(dev, "NOTREADY", broadcast.EventReceived)()
	})
	e.snapshot(dev, 2, a)
	agenttest.Eventually(t, 5*time.Second, "DROP cancelled", e.has(dev, "DROP", broadcast.EventSkipped))

	// An item cancelled while it plays is stopped and reported.
	e.advanceUntil(20*time.Second, "KEEP started", e.has(dev, "KEEP", broadcast.EventStarted))
	e.clock.Advance(time.Minute)
	e.snapshot(dev, 3)
	agenttest.Eventually(t, 5*time.Second, "KEEP cancelled", e.has(dev, "KEEP", broadcast.EventSkipped))
	e.clock.Advance(4 * time.Hour)
	time.Sleep(100 * time.Millisecond)

	evs := e.daemon.Events(dev)
	checkLog(t, evs)
	if got := types(evs, "DROP"); got != "received ready skipped:cancelled" {
		t.Errorf("DROP: %s", got)
	}
	if got := types(evs, "KEEP"); got != "received ready started skipped:cancelled" {
		t.Errorf("KEEP: %s", got)
	}
	if got := types(evs, "NOTREADY"); got != "received" {
		t.Errorf("NOTREADY, cancelled before it was ready: %s; want received only", got)
	}
	if sk := find(evs, "KEEP", broadcast.EventSkipped)[0]; sk.PlayedMS < 60000 || sk.Rev != 3 {
		t.Errorf("KEEP skipped %+v; want played_ms ≥ 60000 and rev 3", sk)
	}
}

func TestExpiredItem(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-05"
	audio := e.audio.Add(randomAudio(t, 1<<10), time.Minute)
	e.start(e.config(dev))
	e.snapshot(dev, 1, e.item("LATE", -20*time.Minute, 15*time.Minute, audio))
	evs := e.waitEvents(dev, 2)
	checkLog(t, evs)
	if got := types(evs, "LATE"); got != "received failed:expired" {
		t.Errorf("LATE: %s", got)
	}
	if n := len(e.audio.Requests()); n != 0 {
		t.Errorf("%d downloads for an expired item", n)
	}
}

func TestPriorityPreemption(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-06"
	long := e.audio.Add(randomAudio(t, 2<<10), 10*time.Minute)
	short := e.audio.Add(randomAudio(t, 2<<10), time.Minute)
	e.start(e.config(dev))
	low := e.item("LOW", time.Minute, 20*time.Minute, long)
	high := e.item("HIGH", 3*time.Minute, 10*time.Minute, short)
	high.Priority = broadcast.PriorityHigh
	// WAIT wants the air while HIGH plays, and its window closes before HIGH
	// ends: it was kept off the air, i.e. preempted.
	wait := e.item("WAIT", 3*time.Minute+20*time.Second, 20*time.Second, short)
	e.snapshot(dev, 1, low, high, wait)
	agenttest.Eventually(t, 10*time.Second, "all ready", func() bool { return len(e.daemon.Events(dev)) >= 6 })
	e.advanceUntil(10*time.Second, "HIGH finished", e.has(dev, "HIGH", broadcast.EventFinished))
	e.advanceUntil(10*time.Second, "WAIT closed", e.has(dev, "WAIT", broadcast.EventSkipped))
	e.clock.Advance(30 * time.Minute)
	time.Sleep(100 * time.Millisecond)

	evs := e.daemon.Events(dev)
	checkLog(t, evs)
	if got := types(evs, "LOW"); got != "received ready started skipped:preempted" {
		t.Errorf("LOW: %s", got)
	}
	if got := types(evs, "HIGH"); got != "received ready started finished" {
		t.Errorf("HIGH: %s", got)
	}
	if got := types(evs, "WAIT"); got != "received ready skipped:preempted" {
		t.Errorf("WAIT: %s", got)
	}
	lowSkip := find(evs, "LOW", broadcast.EventSkipped)[0]
	highStart := find(evs, "HIGH", broadcast.EventStarted)[0]
	if lowSkip.Seq > highStart.Seq {
		t.Errorf("HIGH started (seq %d) before LOW was stopped (seq %d)", highStart.Seq, lowSkip.Seq)
	}
}

func TestPlayNowAndStop(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-07"
	long := e.audio.Add(randomAudio(t, 2<<10), 30*time.Minute)
	alert := e.audio.Add(randomAudio(t, 3<<10), 2*time.Minute)
	r := e.start(e.config(dev))
	normal := e.item("NORMAL", time.Minute, time.Hour, long)
	normal.Priority = broadcast.PriorityEmergency // even an emergency item yields to play_now
	later := e.item("LATER", 10*time.Minute, time.Hour, long)
	e.snapshot(dev, 1, normal, later)
	e.advanceUntil(20*time.Second, "NORMAL started", e.has(dev, "NORMAL", broadcast.EventStarted))

	now := e.clock.Now()
	emergency := broadcast.Item{Airing: "ALERT", Title: "Cảnh báo bão", Kind: broadcast.KindEmergency, Priority: broadcast.PriorityEmergency,
		Start: now, NotAfter: now.Add(10 * time.Minute), Audio: alert}
	e.daemon.Command(dev, broadcast.Command{Type: broadcast.CmdPlayNow, Item: &emergency})
	e.daemon.Command(dev, broadcast.Command{Type: broadcast.CmdPlayNow, Item: &emergency}) // redelivered
	stale := emergency
	stale.Airing, stale.Start, stale.NotAfter = "STALE", now.Add(-2*time.Hour), now.Add(-time.Hour)
	e.daemon.Command(dev, broadcast.Command{Type: broadcast.CmdPlayNow, Item: &stale})
	agenttest.Eventually(t, 10*time.Second, "ALERT started", e.has(dev, "ALERT", broadcast.EventStarted))
	e.advanceUntil(10*time.Second, "ALERT finished", e.has(dev, "ALERT", broadcast.EventFinished))

	e.advanceUntil(30*time.Second, "LATER started", e.has(dev, "LATER", broadcast.EventStarted))
	e.daemon.Command(dev, broadcast.Command{Type: broadcast.CmdStop})
	agenttest.Eventually(t, 5*time.Second, "LATER stopped", e.has(dev, "LATER", broadcast.EventSkipped))
	e.daemon.Command(dev, broadcast.Command{Type: broadcast.CmdPing})
	e.daemon.Command(dev, broadcast.Command{Type: "reboot"})
	agenttest.Eventually(t, 5*time.Second, "unknown command counted", func() bool { return r.Stats().UnknownCommands == 1 })

	evs := e.daemon.Events(dev)
	checkLog(t, evs)
	for airing, want := range map[string]string{
		"NORMAL": "received ready started skipped:preempted",
		"ALERT":  "received ready started finished",
		"STALE":  "received failed:expired",
		"LATER":  "received ready started skipped:preempted",
	} {
		if got := types(evs, airing); got != want {
			t.Errorf("%s: %s; want %s", airing, got, want)
		}
	}
	if st := e.daemon.Statuses(dev); len(st) < 3 {
		t.Errorf("%d statuses; want at least connect, playing and the ping's", len(st))
	}
}

func TestRestartNeitherLosesNorDuplicates(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-08"
	audio := e.audio.Add(randomAudio(t, 8<<10), 5*time.Minute)
	cfg := e.config(dev)
	r1 := e.start(cfg)
	e.snapshot(dev, 1,
		e.item("FIRST", 10*time.Minute, 30*time.Minute, audio),
		e.item("SECOND", time.Hour, 30*time.Minute, audio))
	e.waitEvents(dev, 4)
	r1.stop(t)

	// Restart with events unconfirmed: the outbox comes back, the marks
	// keep received and ready from being sent again.
	r2 := e.start(cfg)
	e.advanceUntil(time.Minute, "FIRST finished", e.has(dev, "FIRST", broadcast.EventFinished))
	e.advanceUntil(time.Minute, "SECOND started", e.has(dev, "SECOND", broadcast.EventStarted))
	// Stopped mid-broadcast: SECOND cannot finish properly.
	r2.stop(t)
	e.start(cfg)
	e.advanceUntil(time.Minute, "past SECOND's window", func() bool { return e.clock.Now().After(base.Add(2 * time.Hour)) })
	agenttest.Eventually(t, 5*time.Second, "SECOND reported", e.has(dev, "SECOND", broadcast.EventFailed))
	time.Sleep(100 * time.Millisecond)

	evs := e.daemon.Events(dev)
	checkLog(t, evs)
	if got := types(evs, "FIRST"); got != "received ready started finished" {
		t.Errorf("FIRST: %s", got)
	}
	if got := types(evs, "SECOND"); got != "received ready started failed:power" {
		t.Errorf("SECOND: %s", got)
	}
}

func TestHostileInput(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-09"
	audio := e.audio.Add(randomAudio(t, 1<<10), time.Minute)
	r := e.start(e.config(dev))
	sched, cmd := root+"/dev/"+dev+"/schedule", root+"/dev/"+dev+"/cmd"
	good := e.item("GOOD", time.Hour, time.Hour, audio)
	dup := broadcast.Snapshot{V: 1, Device: dev, Rev: 9, Items: []broadcast.Item{good, good}}
	badURL := good
	badURL.Audio.URL = "file:///etc/passwd"
	for _, p := range []struct {
		topic   string
		payload string
	}{
		{sched, `{not json`},
		{sched, `{"v":2,"device":"` + dev + `","rev":3,"items":[]}`},
		{sched, `{"v":1,"device":"99999-01","rev":3,"items":[]}`},
		{sched, mustJSON(t, dup)},
		{sched, mustJSON(t, broadcast.Snapshot{V: 1, Device: dev, Rev: 9, Items: []broadcast.Item{badURL}})},
		{sched, `{"v":1,"device":"` + dev + `","rev":3,"items":[` + strings.Repeat(`{"airing":"x"},`, 80000) + `{}]}`},
		{cmd, `[]`},
		{cmd, `{"v":0,"type":"ping"}`},
		{cmd, `{"v":1,"type":"play_now"}`},
		{cmd, `{"v":1,"type":"receipt","upto_seq":999}`},
		{cmd, `{"v":1,"type":"dance"}`},
	} {
		e.daemon.Publish(p.topic, []byte(p.payload), false)
	}
	want := map[string]int64{
		broadcast.RejectMalformed: 2, broadcast.RejectVersion: 2, broadcast.RejectDevice: 1,
		broadcast.RejectSchema: 3, broadcast.RejectTooLarge: 1, broadcast.RejectSeq: 1,
	}
	agenttest.Eventually(t, 10*time.Second, "rejections counted", func() bool {
		got := r.Stats().Rejected
		for k, n := range want {
			if got[k] != n {
				return false
			}
		}
		return r.Stats().UnknownCommands == 1
	})
	// Still alive and well.
	e.snapshot(dev, 10, good)
	agenttest.Eventually(t, 5*time.Second, "good snapshot taken", e.has(dev, "GOOD", broadcast.EventReady))
	if got := r.Stats().Rejected; len(got) != len(want) {
		t.Errorf("rejections %v; want %v", got, want)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDownloadResumedWithRange(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-10"
	content := randomAudio(t, 256<<10)
	audio := e.audio.Add(content, time.Minute)
	e.audio.CutNext(audio.SHA256, 100_000)
	cfg := e.config(dev)
	e.start(cfg)
	e.snapshot(dev, 1, e.item("BIG", time.Hour, time.Hour, audio))
	agenttest.Eventually(t, 10*time.Second, "first attempt cut", func() bool { return len(e.audio.Requests()) >= 1 })
	e.advanceUntil(5*time.Second, "ready after resume", e.has(dev, "BIG", broadcast.EventReady))
	reqs := e.audio.Requests()
	if len(reqs) != 2 || reqs[0].Range != "" || reqs[1].Range != "bytes=100000-" {
		t.Errorf("requests %+v; want a whole GET then Range bytes=100000-", reqs)
	}
	if reqs[0].User != dev {
		t.Errorf("downloaded as %q; want the device id", reqs[0].User)
	}
	got, err := os.ReadFile(filepath.Join(cfg.DataDir, "audio", audio.SHA256))
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("cached file differs from the audio (err %v)", err)
	}
}

func TestChecksumMismatchThenRecovered(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-11"
	content := randomAudio(t, 16<<10)
	audio := e.audio.Add(content, time.Minute)
	e.audio.AddAs(audio.SHA256, randomAudio(t, 16<<10), time.Minute) // the wrong bytes under the right name
	e.start(e.config(dev))
	e.snapshot(dev, 1, e.item("SUM", 10*time.Minute, time.Hour, audio))
	agenttest.Eventually(t, 10*time.Second, "checksum_mismatch", e.has(dev, "SUM", broadcast.EventFailed))
	e.audio.AddAs(audio.SHA256, content, time.Minute) // the daemon fixes its file
	e.advanceUntil(10*time.Second, "SUM finished", e.has(dev, "SUM", broadcast.EventFinished))
	evs := e.daemon.Events(dev)
	checkLog(t, evs)
	if got := types(evs, "SUM"); got != "received failed:checksum_mismatch ready started finished" {
		t.Errorf("SUM: %s", got)
	}
}

func TestDownloadFailedAtStart(t *testing.T) {
	e := newEnv(t)
	const dev = "14755-12"
	audio := e.audio.Add(randomAudio(t, 1<<10), time.Minute)
	e.audio.FailNext(audio.SHA256, 1_000_000)
	e.start(e.config(dev))
	e.snapshot(dev, 1, e.item("GONE", 5*time.Minute, 10*time.Minute, audio))
	e.advanceUntil(10*time.Second, "past the window", func() bool { return e.clock.Now().After(base.Add(20 * time.Minute)) })
	time.Sleep(100 * time.Millisecond)
	evs := e.daemon.Events(dev)
	checkLog(t, evs)
	if got := types(evs, "GONE"); got != "received failed:download_failed" {
		t.Errorf("GONE: %s", got)
	}
	fail := find(evs, "GONE", broadcast.EventFailed)[0]
	if fail.At.Before(base.Add(5 * time.Minute)) {
		t.Errorf("download_failed at %v, before the start time", fail.At)
	}
}
