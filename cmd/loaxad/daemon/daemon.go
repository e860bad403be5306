// Package daemon wires loaxad together: storage, the broker, the devices'
// hub, the scheduler and the HTTP API. It holds no logic of its own, so that
// tests can run the real daemon in-process with Start and a config.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/loaxa/loaxa/api"
	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/configs"
	"github.com/loaxa/loaxa/devices"
	"github.com/loaxa/loaxa/scheduler"
	"github.com/loaxa/loaxa/storage"
	"github.com/loaxa/loaxa/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Options configure a daemon.
type Options struct {
	Config configs.Config
	Logger *slog.Logger
	// Clock replaces the scheduler's clock in tests; nil is the real one.
	Clock scheduler.Clock
	// ConfigFile is only reported in logs.
	ConfigFile string
}

// Daemon is a running loaxad.
type Daemon struct {
	opts Options
	log  *slog.Logger

	store   *storage.Store
	broker  *devices.Broker
	hub     *devices.Hub
	sched   *scheduler.Scheduler
	chores  *scheduler.Housekeeping
	http    *http.Server
	httpLn  net.Listener
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closers []func() error // run in reverse by Close
	metrics *prometheus.Registry

	AdminTokenFile string
}

// Run starts the daemon and serves until ctx is done.
func Run(ctx context.Context, opts Options) error {
	d, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return d.Close()
}

// Policy turns the configuration's policy section into the domain's.
func Policy(c configs.Config) broadcast.Policy {
	p := c.Policy
	return broadcast.Policy{
		MinReplays:     p.MinReplays,
		Hours:          broadcast.DayWindow{Start: p.BroadcastHours.Start, End: p.BroadcastHours.End},
		Slots:          p.SlotMinutes(),
		StartTolerance: p.StartTolerance,
		MinPlayedRatio: p.MinPlayedRatio,
		MinDeviceRatio: p.MinDeviceRatio,
		Freeze:         p.Freeze,
		Lead:           p.Lead,
		Grace:          p.Grace,
		ClockSkew:      p.ClockSkew,
		SelfApproval:   p.SelfApproval,
	}
}

// Start brings the daemon up, in dependency order: storage, broker, hub,
// scheduler, HTTP. On any failure it closes what it had started.
func Start(ctx context.Context, opts Options) (_ *Daemon, err error) {
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}))
	}
	d := &Daemon{opts: opts, log: log}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	policy := Policy(cfg)
	loc := cfg.Location()
	now := time.Now
	if opts.Clock != nil {
		now = opts.Clock.Now
	}
	ctx, d.cancel = context.WithCancel(ctx)

	d.limitMemory(cfg.MemoryLimitMiB)

	reg := prometheus.NewRegistry()
	d.metrics = reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Storage first: everything else reads it.
	d.store, err = storage.Open(cfg.DataDir, storage.Options{Policy: policy, Now: now, Logger: log.With("component", "storage")})
	if err != nil {
		return nil, fmt.Errorf("open storage: %w", err)
	}
	d.closers = append(d.closers, d.store.Close)
	// Storage holds the data directory's lock now: no other loaxad is
	// spooling into it, so what is there was left by a crash.
	if err := d.removeStaleSpools(cfg.DataDir); err != nil {
		return nil, err
	}
	if rep, err := d.store.Check(); err != nil {
		log.Warn("storage check failed", "err", err)
	} else if len(rep.MissingBlobs) > 0 || len(rep.OrphanBlobs) > 0 {
		log.Warn("storage check found problems; run loaxad fsck", "missing_blobs", len(rep.MissingBlobs), "orphan_blobs", len(rep.OrphanBlobs))
	}
	if d.AdminTokenFile, err = api.Bootstrap(ctx, d.store, cfg.DataDir, now); err != nil {
		return nil, err
	}
	if d.AdminTokenFile != "" {
		log.Info("created the first admin token; read it from the file, it is shown nowhere else", "file", d.AdminTokenFile)
	}
	if cfg.UnitsCSV != "" {
		if err := d.importUnits(ctx, cfg.UnitsCSV); err != nil {
			return nil, err
		}
	}

	// The broker: embedded unless an external one is named. The daemon
	// reaches the embedded one over loopback through paho, exactly as it
	// reaches Mosquitto, so both paths are the same code.
	brokerURL, user, pass := cfg.MQTT.URL, cfg.MQTT.Username, cfg.MQTT.Password
	if brokerURL == "" {
		user, pass = "loaxad", randomHex(24)
		d.broker, err = devices.NewBroker(devices.BrokerOptions{
			Listen: cfg.MQTT.Embedded.Listen, TopicRoot: cfg.MQTT.TopicRoot, Devices: d.store,
			RootUser: user, RootPassword: pass, Logger: log, Registerer: reg,
		})
		if err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		if err := d.broker.Start(); err != nil {
			return nil, fmt.Errorf("embedded broker on %s: %w", cfg.MQTT.Embedded.Listen, err)
		}
		d.closers = append(d.closers, d.broker.Close)
		brokerURL = "tcp://" + d.broker.Addr()
	}
	d.hub, err = devices.NewHub(devices.HubOptions{
		BrokerURL: brokerURL, Username: user, Password: pass, ClientID: cfg.MQTT.ClientID,
		TopicRoot: cfg.MQTT.TopicRoot, Events: d.store, Devices: d.store,
		Logger: log, Registerer: reg, SeqGapTimeout: cfg.Devices.SeqGapTimeout, Now: now,
		// A device that comes online gets its schedule again: the broker may
		// have lost the retained copy (the embedded one keeps none across
		// restarts).
		OnOnline: func(device string) {
			if dev, err := d.store.Device(device); err == nil {
				d.sched.Touch(dev.Station)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("devices hub: %w", err)
	}

	// Listen before the scheduler starts: with port 0 (tests), the address
	// that devices download audio from is only known now. Connections wait
	// in the backlog until Serve.
	d.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http listen on %s: %w", cfg.HTTP.Listen, err)
	}
	d.closers = append(d.closers, func() error { d.httpLn.Close(); return nil })
	publicURL := strings.TrimSuffix(cfg.HTTP.PublicURL, "/")
	if publicURL == "" {
		publicURL = "http://" + d.httpLn.Addr().String()
	}
	d.sched, err = scheduler.New(scheduler.Options{
		Store: d.store, Publisher: d.hub, Policy: policy, Clock: opts.Clock,
		Logger: log.With("component", "scheduler"), Registerer: reg,
		AudioURL: func(sha string) string { return publicURL + "/audio/" + sha },
	})
	if err != nil {
		return nil, err
	}
	// The hub starts after the scheduler exists: its OnOnline calls it.
	d.goRun("devices hub", d.hub.Run, ctx)
	// Devices reconnecting after a restart re-send their outboxes at once;
	// what reaches the broker before the hub has subscribed waits for the
	// devices' next periodic re-send. Waiting here for the subscription
	// (bounded: an external broker may be down, and the hub keeps trying)
	// keeps that window to the moment between the broker's start and now.
	for deadline := time.Now().Add(5 * time.Second); !d.hub.Connected() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	d.goRun("scheduler", d.sched.Run, ctx)

	d.chores = scheduler.NewHousekeeping(loc, log.With("component", "housekeeping"))
	if err := d.chores.Add(ctx, "storage check", "17 3 * * *", func(context.Context) error {
		rep, err := d.store.Check()
		if err == nil && (len(rep.MissingBlobs) > 0 || len(rep.OrphanBlobs) > 0) {
			log.Warn("storage check found problems", "missing_blobs", rep.MissingBlobs, "orphan_blobs", len(rep.OrphanBlobs))
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := d.chores.Add(ctx, "snapshot refresh", "41 4 * * *", func(context.Context) error {
		return d.sched.RefreshAll()
	}); err != nil {
		return nil, err
	}
	d.chores.Start()
	d.closers = append(d.closers, func() error { d.chores.Stop(); return nil })

	// An external Mosquitto learns of devices from files the daemon keeps.
	var changed func()
	if cfg.MQTT.MosquittoDir != "" {
		ms, err := newMosquittoSync(cfg.MQTT, d.store, log.With("component", "mosquitto"), reg)
		if err != nil {
			return nil, err
		}
		ms.sync(ctx)
		changed = func() { ms.sync(context.WithoutCancel(ctx)) }
	}
	// The console exists only after the API it calls; a token revoked
	// meanwhile has no session to end.
	var console *web.Server
	srv, err := api.New(api.Options{
		TokenMaxAge:  cfg.Tokens.MaxAge,
		AuthFailures: cfg.HTTP.AuthFailures,
		TokenRevoked: func(id string) {
			if console != nil {
				console.EndSessions(id)
			}
		},
		// The daemon's MQTT user (on the embedded broker and on Mosquitto)
		// and its client id: a device with one of these names would clash
		// with the daemon's own access.
		ReservedDeviceIDs: []string{"loaxad", cfg.MQTT.Username, cfg.MQTT.ClientID, "inline"},
		Store:             d.store, Planner: d.sched, Policy: policy, Location: loc,
		Logger: log.With("component", "api"), Gatherer: reg, Registerer: reg,
		MetricsPublic: cfg.HTTP.MetricsPublic, TempDir: cfg.DataDir, Now: now, Retention: cfg.Retention,
		DeviceDisabled: func(id string) {
			// The broker checks credentials only at connect time.
			if d.broker != nil {
				d.broker.Disconnect(id)
			}
		},
		DevicesChanged: changed,
		Ready: func() error {
			if !d.hub.Connected() {
				return errors.New("not connected to the MQTT broker")
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	// Device statuses live in the hub's memory, not in storage; the web
	// console is a client of the API and gets the same handler the network
	// does, under the paths the API does not use.
	api.ServeDeviceStates(srv, d.hub.Statuses, func(s devices.DeviceState) string { return s.Station })
	console, err = web.New(web.Options{API: srv.Handler(), Logger: log.With("component", "web"), Now: now, Location: loc,
		PublicURL: publicURL, Broker: stationBroker(publicURL, brokerURL), TopicRoot: cfg.MQTT.TopicRoot, TempDir: cfg.DataDir})
	if err != nil {
		return nil, err
	}
	if n, err := srv.ExpireTokens(ctx); err != nil {
		log.Error("expiring tokens", "err", err)
	} else if n > 0 {
		log.Info("tokens expired while the daemon was stopped", "tokens", n)
	}
	if err := d.chores.Add(ctx, "token expiry", "7 * * * *", func(ctx context.Context) error {
		_, err := srv.ExpireTokens(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	slow := &api.SlowClients{
		ReadTimeout: cfg.HTTP.ReadTimeout, WriteTimeout: cfg.HTTP.WriteTimeout, UploadTimeout: cfg.HTTP.UploadTimeout,
		MinBodyRate: int64(cfg.HTTP.MinBodyRate), Logger: log.With("component", "http"), Registerer: reg,
		Uploads: []string{"POST /api/v1/programmes", "POST /api/v1/emergency", "POST /api/v1/units/import",
			"POST /programmes", "POST /emergency"},
	}
	handler, err := slow.Wrap(web.Mount(srv.Handler(), console.Handler()))
	if err != nil {
		return nil, err
	}
	d.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := d.http.Serve(d.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("loaxad started", "http", d.httpLn.Addr().String(), "data_dir", cfg.DataDir, "config", opts.ConfigFile)
	return d, nil
}

// spoolPatterns are the temporary files of uploads in the data directory
// (the API's spool of an upload, the console's emergency audio awaiting its
// second confirmation). Storage removes its own (blobs/tmp-*).
var spoolPatterns = []string{api.UploadTempPattern, web.EmergencyTempPattern}

// removeStaleSpools removes what a daemon killed during an upload left: a
// SIGKILL runs no deferred cleanup, and a 300 MB upload cut short would
// otherwise stay on the disk for ever.
func (d *Daemon) removeStaleSpools(dir string) error {
	var removed []string
	var size int64
	for _, pat := range spoolPatterns {
		left, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return fmt.Errorf("stale uploads in %s: %w", dir, err)
		}
		for _, f := range left {
			if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() {
				size += fi.Size()
			}
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove stale upload: %w", err)
			}
			removed = append(removed, f)
		}
	}
	if len(removed) > 0 {
		d.log.Info("removed uploads cut short by a crash", "files", removed, "bytes", size)
	}
	return nil
}

// stationBroker is the broker stations are told to use in the config the
// console writes: the one the daemon uses, but reached at http.public_url's
// host when the daemon reaches it over loopback (the embedded broker on
// 127.0.0.1:1883 is tcp://<public host>:1883 to a station). Only the
// configuration is used, never a request's Host.
func stationBroker(publicURL, brokerURL string) string {
	pub, err1 := url.Parse(publicURL)
	b, err2 := url.Parse(brokerURL)
	if err1 != nil || err2 != nil || b.Host == "" {
		return brokerURL
	}
	host := b.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || host == "" || (ip != nil && (ip.IsLoopback() || ip.IsUnspecified())) {
		if pub.Hostname() != "" {
			host = pub.Hostname()
		}
	}
	b.Host = net.JoinHostPort(host, b.Port())
	if b.Port() == "" {
		b.Host = host
		if strings.Contains(host, ":") {
			b.Host = "[" + host + "]"
		}
	}
	return b.String()
}

// limitMemory sets the process's soft memory limit. Without one, the Go
// heap grows to twice what is live before each collection, and the goroutine
// stacks of the embedded broker's connections count in what is live: with
// 10,047 devices and a backlog of 40,000 events the daemon peaked at 1.4 GiB,
// about half of it in use. An operator's GOMEMLIMIT wins; Close puts the
// previous limit back, for tests that run daemons in one process.
func (d *Daemon) limitMemory(mib int) {
	if mib <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	prev := debug.SetMemoryLimit(int64(mib) << 20)
	d.closers = append(d.closers, func() error { debug.SetMemoryLimit(prev); return nil })
	d.log.Info("soft memory limit set", "mib", mib)
}

func (d *Daemon) goRun(name string, run func(context.Context) error, ctx context.Context) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := run(ctx); err != nil {
			d.log.Error(name+" stopped", "err", err)
		}
	}()
}

func (d *Daemon) importUnits(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("units_csv: %w", err)
	}
	defer f.Close()
	units, stations, err := broadcast.ParseUnitsCSV(f)
	if err != nil {
		return fmt.Errorf("units_csv %s: %w", path, err)
	}
	op := &broadcast.OpEntry{Actor: "system", Action: "units.import", Subject: filepath.Base(path)}
	res, err := d.store.ImportUnits(ctx, units, stations, op)
	if err != nil {
		return fmt.Errorf("units_csv %s: %w", path, err)
	}
	d.log.Info("units imported", "file", path, "units_created", res.UnitsCreated, "stations_created", res.StationsCreated, "stations", res.StationsTotal)
	return nil
}

// HTTPAddr is where the API listens (useful with port 0).
func (d *Daemon) HTTPAddr() string { return d.httpLn.Addr().String() }

// BrokerAddr is the embedded broker's address, "" with an external broker.
func (d *Daemon) BrokerAddr() string {
	if d.broker == nil {
		return ""
	}
	return d.broker.Addr()
}

// Store is the daemon's storage, for tests that inspect it.
func (d *Daemon) Store() *storage.Store { return d.store }

// Close shuts down in reverse order of Start: HTTP first, so that no request
// arrives at a half-stopped daemon; then the loops; then the broker; storage
// last, after every writer has stopped.
func (d *Daemon) Close() error {
	if d.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := d.http.Shutdown(ctx); err != nil {
			d.log.Warn("http shutdown", "err", err)
		}
		cancel()
	}
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		if err := d.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	d.closers = nil
	d.log.Info("loaxad stopped")
	return errors.Join(errs...)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
