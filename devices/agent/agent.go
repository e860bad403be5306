package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Version is the agent's version when the build does not set one; the
// status reports agent "loaxa-station/<version>".
const Version = "0.1.0"

// Options are the agent's collaborators; zero values take defaults.
type Options struct {
	Logger *slog.Logger // default: discard
	Clock  Clock        // default: SystemClock
	// Player default: the one Config.Player names.
	Player Player
	// HTTPClient fetches audio; default: one with connect and header timeouts.
	HTTPClient *http.Client

	// ResendInterval is how often events still waiting for a receipt are
	// published again while connected (default 1 min).
	ResendInterval time.Duration
	// RetryInterval is the wait after a failed download; it doubles with each
	// failure up to 32 times itself (default 30 s).
	RetryInterval time.Duration
	// ReconnectMax bounds paho's reconnect back-off (default 1 min).
	ReconnectMax time.Duration
	// Version is the build's, reported as agent "loaxa-station/<Version>"
	// in the status (default: the package's Version).
	Version string

	// noSync skips bbolt's fsync: for fuzzing only, never for a device.
	noSync bool
}

// Stats are the agent's counters and a little of its state, for tests, the
// simulator's summary and logs.
type Stats struct {
	// Rejected counts refused payloads by reason: broadcast.Reject* and
	// "overflow" (the inbox was full).
	Rejected map[string]int64
	// StaleSnapshots counts snapshots ignored for an older or equal rev (each
	// reconnect redelivers the retained one, so this is normal).
	StaleSnapshots int64
	// UnknownCommands counts commands of a type this agent does not know.
	UnknownCommands int64
	Rev             uint64 // of the current snapshot
	Outbox          int    // events waiting for a receipt
	NextSeq         uint64
	LogHash         string // from the last receipt
	Playing         string // airing, or ""
	Connected       bool   // connected and subscribed
	Connects        int64  // connections made (first and re-)
	CacheBytes      int64
}

// Agent is one device: it keeps the device's schedule, fetches and plays its
// audio, and reports every step as a signed event until the daemon confirms
// it. Run it once.
type Agent struct {
	cfg     Config
	opts    Options
	log     *slog.Logger
	clock   Clock
	player  Player
	key     ed25519.PrivateKey
	topics  topics
	fetcher *fetcher
	started atomic.Bool

	statsMu sync.Mutex
	stats   Stats
}

type topics struct {
	schedule, cmd, events, status string
}

// New checks the config and prepares an agent; Run opens its state and
// connects.
func New(cfg Config, opts Options) (*Agent, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.Player == nil {
		opts.Player = newPlayer(cfg, opts.Clock)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = defaultHTTPClient()
	}
	if opts.ResendInterval <= 0 {
		opts.ResendInterval = time.Minute
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 30 * time.Second
	}
	if opts.ReconnectMax <= 0 {
		opts.ReconnectMax = time.Minute
	}
	if opts.Version == "" {
		opts.Version = Version
	}
	a := &Agent{
		cfg: cfg, opts: opts, log: opts.Logger, clock: opts.Clock, player: opts.Player,
		stats: Stats{Rejected: map[string]int64{}},
	}
	if cfg.KeyFile != "" {
		key, err := LoadKeyFile(cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		a.key = key
	}
	base := cfg.TopicRoot + "/dev/" + cfg.Device + "/"
	a.topics = topics{schedule: base + "schedule", cmd: base + "cmd", events: base + "events", status: base + "status"}
	a.fetcher = &fetcher{client: opts.HTTPClient, dir: filepath.Join(cfg.DataDir, "audio"),
		user: cfg.Device, pass: cfg.Secret, now: opts.Clock.Now}
	return a, nil
}

// Stats returns a copy of the counters.
func (a *Agent) Stats() Stats {
	a.statsMu.Lock()
	defer a.statsMu.Unlock()
	s := a.stats
	s.Rejected = maps.Clone(a.stats.Rejected)
	return s
}

// reject counts and logs a refused payload. It is called from paho's
// goroutines too, hence the lock.
func (a *Agent) reject(reason, msg string) {
	a.statsMu.Lock()
	a.stats.Rejected[reason]++
	a.statsMu.Unlock()
	a.log.Warn("payload refused", "reason", reason, "detail", msg)
}

func (a *Agent) count(f func(*Stats)) {
	a.statsMu.Lock()
	f(&a.stats)
	a.statsMu.Unlock()
}

// Run opens the agent's state in data_dir, connects to the broker and runs
// the device until ctx is done. Then it stops any playback (reporting it as
// failed/power), publishes a retained offline status, disconnects cleanly and
// closes its state. It returns an error only if it could not start.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	if err := os.MkdirAll(a.fetcher.dir, 0o755); err != nil {
		return fmt.Errorf("create audio cache: %w", err)
	}
	st, err := openStore(filepath.Join(a.cfg.DataDir, "agent.db"), a.opts.noSync)
	if err != nil {
		return err
	}
	l, err := newLoop(a, st)
	if err != nil {
		_ = st.close()
		return err
	}
	if err := l.recover(); err != nil {
		_ = st.close()
		return err
	}
	a.log.Info("agent starting", "device", a.cfg.Device, "broker", a.cfg.Broker, "daemon", a.cfg.DaemonURL,
		"rev", l.snap.Rev, "next_seq", l.nextSeq, "outbox", l.outboxN, "signed", a.key != nil)

	q := newInbox(256)
	client := a.newClient(q)
	l.client = client
	l.pub = newPublisher(client, a.log, 10000)
	go l.pub.run()
	// Connect does not block with ConnectRetry: paho keeps trying in the
	// background, and the device plays its schedule offline meanwhile.
	client.Connect()

	l.run(ctx, q)

	// Teardown in reverse: the loop has stopped playback and downloads and
	// queued the offline status; let the publisher send it, then say goodbye
	// to the broker (a clean DISCONNECT, so the will is not needed), and close
	// the state last, since nothing can change it any more.
	l.pub.close(3 * time.Second)
	client.Disconnect(500)
	if err := st.close(); err != nil {
		return fmt.Errorf("close state: %w", err)
	}
	a.log.Info("agent stopped", "device", a.cfg.Device)
	return nil
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
