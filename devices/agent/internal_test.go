package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/devices/agent/agenttest"
)

var base = time.Date(2026, 12, 5, 6, 0, 0, 0, time.FixedZone("ICT", 7*3600))

// blockingPlayer plays until cancelled.
type blockingPlayer struct{}

func (blockingPlayer) Play(ctx context.Context, _ string, _ time.Duration) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestRecoverAfterKillMidPlay leaves the state exactly as a SIGKILL during a
// broadcast does (whatever was committed, nothing more), then starts a real
// agent on it: the interrupted airing is reported failed/power, once, after
// the events that were already in the outbox, and never played again.
func TestRecoverAfterKillMidPlay(t *testing.T) {
	broker := agenttest.StartBroker(t)
	audio := agenttest.NewAudioServer(t)
	daemon := agenttest.NewDaemon(t, broker.URL(), DefaultTopicRoot)
	clock := agenttest.NewFakeClock(base)
	const dev = "14755-20"
	audio.Allow(dev, "s")
	cfg := Config{Device: dev, Secret: "s", Broker: broker.URL(), DataDir: t.TempDir()}
	ref := audio.Add([]byte(strings.Repeat("loa xã ", 1000)), 10*time.Minute)

	a, err := New(cfg, Options{Clock: clock, Player: blockingPlayer{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(a.fetcher.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(filepath.Join(cfg.DataDir, "agent.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLoop(a, st)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := json.Marshal(broadcast.Snapshot{V: 1, Device: dev, Rev: 3, Items: []broadcast.Item{{
		Airing: "KILLED", Start: base.Add(time.Minute), NotAfter: base.Add(time.Hour), Audio: ref,
	}}})
	l.handleSnapshot(snap)
	l.tick(clock.Now())
	l.fetchEnded(<-l.fetchDone)
	l.tick(clock.Now())
	clock.Advance(time.Minute)
	l.tick(clock.Now())
	if l.play == nil {
		t.Fatal("not playing at the start time")
	}
	// SIGKILL: the player dies with the process; nothing else is written.
	l.play.cancel()
	<-l.playDone
	if err := st.close(); err != nil {
		t.Fatal(err)
	}

	clock.Advance(2 * time.Minute)
	b, err := New(cfg, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	agenttest.Eventually(t, 10*time.Second, "four events", func() bool { return len(daemon.Events(dev)) >= 4 })
	for range 20 {
		clock.Step(time.Minute) // through the rest of the window
	}
	time.Sleep(100 * time.Millisecond)
	evs := daemon.Events(dev)
	var got []string
	for i, ev := range evs {
		if ev.Seq != uint64(i+1) {
			t.Errorf("seq %d at position %d", ev.Seq, i)
		}
		got = append(got, string(ev.Event)+":"+ev.Reason)
	}
	if strings.Join(got, " ") != "received: ready: started: failed:power" {
		t.Errorf("events %v", got)
	}
	if last := evs[len(evs)-1]; !last.StartedAt.Equal(base.Add(time.Minute)) || last.SHA256 != ref.SHA256 || last.Rev != 3 {
		t.Errorf("failed/power event %+v; want the interrupted start and sha256", last)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "station.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := LoadConfig(write(`device: 14755-03
secret: abc
broker: tcp://127.0.0.1:1883
daemon_url: http://127.0.0.1:8080
data_dir: data
key_file: device.key
player: ["mpv", "--no-video", "--volume={volume}", "{file}"]
volume: 80
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != filepath.Join(dir, "data") || cfg.KeyFile != filepath.Join(dir, "device.key") {
		t.Errorf("relative paths not taken from the file's directory: %+v", cfg)
	}
	if got := cfg.withDefaults().TopicRoot; got != DefaultTopicRoot {
		t.Errorf("topic_root default %q", got)
	}

	for body, want := range map[string]string{
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\nvolum: 3\n":                    "line 5: field volum not found",
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\nvolume: 300\n":                 "volume: 300 is not within 0-100",
		"device: a b\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\n":                            "device:",
		"device: a\nbroker: http://h:1\ndata_dir: d\n":                                        "secret: is required",
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\nplayer: [mpv]\n":               "never names {file}",
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\ntopic_root: loaxa/#\n":         "topic_root",
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\ndevice: c\n":                   "already defined",
		"device: a\nsecret: b\nbroker: tcp://h:1\n":                                           "data_dir: is required",
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\n---\ndevice: c\n":              "more than one YAML document",
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\nplayer: [\"null\", x]\n":       "takes no arguments",
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\nplayer: [null]\n":              "",
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\ndaemon_url: ftp://x\n":         "daemon_url",
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\nvolume: loud\n":                "line 5",
		"device: a\nsecret: b\nbroker: tcp://h:1\ndata_dir: d\nplayer: [\"mpv\", \"{file}\"]": "",
	} {
		_, err := LoadConfig(write(body))
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", body, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: error %v; want one containing %q", body, err, want)
		case want != "" && !strings.Contains(err.Error(), "station.yaml"):
			t.Errorf("error %v does not name the file", err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	pub, err := WriteKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (err %v); want 0600", fi.Mode(), err)
	}
	if _, err := WriteKeyFile(p); err == nil {
		t.Error("WriteKeyFile overwrote an existing key")
	}
	priv, err := LoadKeyFile(p)
	if err != nil || !priv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Fatalf("LoadKeyFile: %v", err)
	}
	back, err := broadcast.ParsePublicKey(PublicKeyString(pub))
	if err != nil || !back.Equal(pub) {
		t.Errorf("the printed public key does not parse back: %v", err)
	}
	// A raw base64 seed works too.
	seedFile := filepath.Join(dir, "seed")
	seed := priv.Seed()
	if err := os.WriteFile(seedFile, []byte(base64.StdEncoding.EncodeToString(seed)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadKeyFile(seedFile); err != nil || !k.Equal(priv) {
		t.Errorf("seed key: %v", err)
	}
	if err := os.WriteFile(seedFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(seedFile); err == nil {
		t.Error("garbage accepted as a key")
	}
}

func TestCommandPlayer(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	file := filepath.Join(t.TempDir(), "a.mp3")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ok := CommandPlayer{Argv: []string{"/bin/sh", "-c", `test -f "$0" && test "$1" = 80`, "{file}", "{volume}"}, Volume: 80}
	if err := ok.Play(ctx, file, time.Second); err != nil {
		t.Errorf("substitution: %v", err)
	}
	bad := CommandPlayer{Argv: []string{"/bin/sh", "-c", `echo no sound card >&2; exit 3`, "{file}"}}
	if err := bad.Play(ctx, file, time.Second); err == nil || !strings.Contains(err.Error(), "no sound card") {
		t.Errorf("failing player: %v", err)
	}
	// Cancelled (preempted): stops at once.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	long := CommandPlayer{Argv: []string{"/bin/sh", "-c", "sleep 30", "{file}"}}
	if err := long.Play(cctx, file, 30*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled player: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("the player outlived its cancel")
	}
	// Hung: killed after the duration and its grace.
	hung := CommandPlayer{Argv: []string{"/bin/sh", "-c", "sleep 30", "{file}"}, Grace: 100 * time.Millisecond}
	if err := hung.Play(ctx, file, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "long after") {
		t.Errorf("hung player: %v", err)
	}
}

// fuzzLoop is a loop with real state on disk and nothing around it: no
// broker (publishes queue up and are dropped), downloads that fail at once,
// a clock that never moves.
func fuzzLoop(t *testing.T) *loop {
	cfg := Config{Device: "14755-01", Secret: "s", Broker: "tcp://127.0.0.1:1", DataDir: t.TempDir()}
	clock := agenttest.NewFakeClock(base)
	a, err := New(cfg, Options{Clock: clock, Player: blockingPlayer{}, noSync: true,
		HTTPClient: &http.Client{Transport: failingTransport{}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(a.fetcher.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(filepath.Join(cfg.DataDir, "agent.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLoop(a, st)
	if err != nil {
		t.Fatal(err)
	}
	l.pub = newPublisher(nil, a.log, 1000)
	t.Cleanup(func() {
		l.shutdown()
		_ = st.close()
	})
	return l
}

type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in a fuzz test")
}

func fuzzSeeds() [][]byte {
	item := broadcast.Item{Airing: "A1", Start: base, NotAfter: base.Add(time.Hour), Priority: 1,
		Audio: broadcast.AudioRef{SHA256: strings.Repeat("ab", 32), Size: 10, DurationMS: 1000, URL: "http://127.0.0.1:1/a"}}
	snap, _ := json.Marshal(broadcast.Snapshot{V: 1, Device: "14755-01", Rev: 2, Items: []broadcast.Item{item}})
	playNow, _ := json.Marshal(broadcast.Command{V: 1, Type: broadcast.CmdPlayNow, Item: &item})
	return [][]byte{
		snap, playNow,
		[]byte(`{"v":1,"type":"receipt","upto_seq":1,"log_hash":"x"}`),
		[]byte(`{"v":1,"type":"stop"}`), []byte(`{"v":1,"type":"ping"}`), []byte(`{"v":1,"type":"x"}`),
		[]byte(`{"v":1,"device":"14755-01","rev":1,"items":[{"airing":"a","start":"2026-01-01T00:00:00Z","not_after":"2026-01-01T00:00:01Z","audio":{"sha256":"` + strings.Repeat("0", 64) + `","size":1,"url":"http://x"}}]}`),
		[]byte(`{`), []byte(`null`), []byte(`{"v":1,"device":"14755-01","rev":18446744073709551615,"items":null}`),
	}
}

func FuzzHandleSnapshot(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		l := fuzzLoop(t)
		l.handleSnapshot(payload)
		l.tick(l.a.clock.Now())
		l.handleSnapshot(payload) // the same again: equal rev, ignored
		l.tick(l.a.clock.Now().Add(2 * time.Hour))
	})
}

func FuzzHandleCommand(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		l := fuzzLoop(t)
		l.handleSnapshot(fuzzSeeds()[0])
		l.tick(l.a.clock.Now())
		l.handle(inMsg{topic: l.a.topics.cmd, payload: payload})
		l.tick(l.a.clock.Now())
		l.handle(inMsg{topic: l.a.topics.cmd, payload: payload})
		l.tick(l.a.clock.Now().Add(2 * time.Hour))
	})
}
