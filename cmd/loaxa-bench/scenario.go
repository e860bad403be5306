package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/cmd/loaxad/daemon"
	"github.com/loaxa/loaxa/configs"
	"github.com/loaxa/loaxa/devices"
	"github.com/loaxa/loaxa/storage"
)

const (
	brokerEmbedded  = "embedded"
	brokerMosquitto = "mosquitto"
)

// Spec is one scenario: a broker and a fleet size.
type Spec struct {
	Broker          string        `json:"broker"`
	Devices         int           `json:"devices"`
	EventsPerDevice int           `json:"events_per_device"`
	Rounds          int           `json:"rounds"` // fan-out rounds
	Units           string        `json:"units"`
	Mosquitto       string        `json:"mosquitto,omitempty"`
	Timeout         time.Duration `json:"timeout"`
	CPUProfiles     string        `json:"cpu_profiles,omitempty"` // a directory, or ""
}

// Result is what a scenario measured. Times are those of the devices
// process's clock (first publish, first and last arrival), which the
// scenario process shares: both are on this machine.
type Result struct {
	Spec Spec   `json:"spec"`
	Err  string `json:"err,omitempty"`

	Airings       int     `json:"airings"`
	Connect       float64 `json:"connect_seconds"` // the fleet's connections and subscriptions
	SnapshotBytes float64 `json:"snapshot_bytes"`  // mean
	SnapshotItems float64 `json:"snapshot_items"`  // mean

	// Fan-out of every device's snapshot, medians of the rounds, each from
	// the first arrival at a device to the last: by the daemon, whose first
	// publish the benchmark cannot see, and by the bare publisher, timed
	// the same way so that the two compare.
	FanoutDaemon time.Duration   `json:"fanout_daemon"`
	FanoutBare   time.Duration   `json:"fanout_bare"`
	DaemonRounds []time.Duration `json:"daemon_rounds"`
	BareRounds   []time.Duration `json:"bare_rounds"`
	// FanoutFromStart is from the call to daemon.Start (opening the store,
	// connecting to the broker, the scheduler's first pass) to the last
	// arrival; BareFromPublish from the bare publisher's first publish.
	FanoutFromStart time.Duration `json:"fanout_from_start"`
	BareFromPublish time.Duration `json:"bare_from_publish"`
	// The daemon's fan-out taken apart: the bare publisher keeping only
	// as many publishes outstanding as the scheduler has workers (each
	// waits for its acknowledgement).
	BareWorkers time.Duration `json:"bare_workers"`
	// The CPU the processes used during the daemon's fan-out (the median
	// round, from daemon.Start) and during its ingestion: on a machine of
	// few CPUs the daemon, the broker and the devices compete for them.
	FanoutCPU cpuShare `json:"fanout_cpu"`
	IngestCPU cpuShare `json:"ingest_cpu"`

	Events       int           `json:"events"`
	EventBytes   float64       `json:"event_bytes"`   // mean signed payload
	IngestDaemon time.Duration `json:"ingest_daemon"` // first publish to last receipt
	// The broker round trip: the same devices, events and receipts, with a
	// bare receiver in the daemon's place; timed as the daemon's ingestion.
	IngestRoundTrip time.Duration `json:"ingest_round_trip"`
	RoundTripBytes  float64       `json:"round_trip_bytes"` // mean signed payload
	RoundTripCPU    cpuShare      `json:"round_trip_cpu"`
	// The broker alone, one way: 64 connections of the daemon's user to
	// one subscriber, first publish to last arrival at the sink.
	IngestBroker time.Duration `json:"ingest_broker"`
	RawEvents    int           `json:"raw_events"`
	RawStorage   time.Duration `json:"raw_storage"` // AppendEvent from 64 goroutines
	RawCommits   storage.Stats `json:"raw_commits"` // the store's counters over that run
	// The store's counters over the daemon's ingestion: how its workers'
	// appends group into commits.
	IngestCommits storage.Stats `json:"ingest_commits"`

	// The daemon's process (with the embedded broker, the broker too).
	RSSIdle        int64 `json:"rss_idle"`         // after the first fan-out, every device connected
	RSSAfterEvents int64 `json:"rss_after_events"` // after the ingestion
	RSSPeak        int64 `json:"rss_peak"`         // sampled from daemon start to the raw storage run
	// Where the idle RSS goes: anonymous memory (Go's heap and stacks)
	// and file pages (bbolt's memory map of the store).
	Idle       memory `json:"idle"`
	BrokerRSS  int64  `json:"broker_rss"`  // Mosquitto's process; 0 with the embedded broker
	DevicesRSS int64  `json:"devices_rss"` // the devices process

	LoadBefore string   `json:"load_before"`
	LoadAfter  string   `json:"load_after"`
	Notes      []string `json:"notes,omitempty"`
}

// cpuShare is the CPU time each process used during a phase of Wall.
type cpuShare struct {
	Wall    time.Duration `json:"wall"`
	Daemon  time.Duration `json:"daemon"` // with the embedded broker, the broker's too
	Broker  time.Duration `json:"broker"` // Mosquitto's
	Devices time.Duration `json:"devices"`
}

// cpuMeter reads the CPU time of the daemon's process and Mosquitto's.
type cpuMeter struct{ mosquitto *mosquitto }

func (m cpuMeter) read() (daemon, broker time.Duration) {
	daemon = processCPU()
	if m.mosquitto != nil {
		broker, _ = readProcCPU(m.mosquitto.pid())
	}
	return daemon, broker
}

// since is the share from a reading made at start.
func (m cpuMeter) since(start time.Time, daemon0, broker0 time.Duration, devices time.Duration) cpuShare {
	d, b := m.read()
	return cpuShare{Wall: time.Since(start), Daemon: d - daemon0, Broker: b - broker0, Devices: devices}
}

// scenarioServer is the scenario process: it runs one scenario when asked.
type scenarioServer struct{ log io.Writer }

func (s *scenarioServer) handle(ctx context.Context, op string, raw json.RawMessage) (any, error) {
	if op != "run" {
		return nil, fmt.Errorf("unknown request %q", op)
	}
	var spec Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, err
	}
	res, err := runScenario(ctx, spec, s.log)
	if err != nil {
		// The figures measured before the failure are still worth showing.
		res.Err = err.Error()
	}
	return res, nil
}

func (s *scenarioServer) close() {}

// runScenario runs one broker and fleet size in this process, which then
// hosts the daemon: prepare the store, start the broker, connect the fleet
// (devices process), time the broker round trip of the devices' events,
// then the daemon's fan-out against the bare publisher's, the daemon's event
// ingestion against the round trip, the broker's one-way delivery rate and
// storage's raw group commit, and read the RSS on the way.
func runScenario(ctx context.Context, spec Spec, logw io.Writer) (res Result, err error) {
	res = Result{Spec: spec, LoadBefore: loadAverage()}
	say := func(format string, a ...any) {
		fmt.Fprintf(logw, "[%s %d] %s\n", spec.Broker, spec.Devices, fmt.Sprintf(format, a...))
	}
	tmp, err := os.MkdirTemp("", "loaxa-bench-")
	if err != nil {
		return res, err
	}
	// Torn down in reverse: the daemon first (as in a deploy, it finishes
	// the events in hand), then the devices, then the broker they all talk
	// through; the data last.
	closers := []func(){func() { _ = os.RemoveAll(tmp) }}
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	logs := newQuietLog(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	defer func() { res.Notes = append(res.Notes, logs.summary()...) }()
	log := slog.New(logs)

	clock := newBenchClock()
	cfg := configs.Default()
	cfg.DataDir = filepath.Join(tmp, "data")
	// The public URL only goes into the snapshots' audio URLs (the
	// devices download nothing): a deployment's, for realistic sizes.
	cfg.HTTP.Listen, cfg.HTTP.PublicURL = "127.0.0.1:0", "https://loaxa.example.gov.vn"
	cfg.MQTT.Embedded.Enabled = false
	cfg.MQTT.Username, cfg.MQTT.Password = "loaxad", broadcast.NewSecret()
	// The fleet reports whole plays of the airings in its snapshots, which
	// lie ahead of the clock: with the default allowance every finished
	// event would be logged as a claim of the future and count for
	// nothing, a cheaper path than a broadcast's. A month's allowance keeps
	// the work what it is when the plays are real.
	cfg.Policy.ClockSkew = 31 * 24 * time.Hour
	policy := daemon.Policy(cfg)
	runKey := make([]byte, 32)
	_, _ = rand.Read(runKey)

	say("preparing the store")
	t := time.Now()
	fx, err := prepareStore(ctx, cfg.DataDir, spec.Units, spec.Devices, runKey, policy, clock.Now())
	if err != nil {
		return res, fmt.Errorf("prepare the store: %w", err)
	}
	res.Airings = fx.airings
	say("store ready in %s: %d stations, %d devices, %d airings", since(t), fx.stations, len(fx.devices), fx.airings)

	var mosq *mosquitto
	switch spec.Broker {
	case brokerEmbedded:
		// The embedded broker is the daemon's own devices.Broker with the
		// options daemon.Start gives it. The benchmark starts it, not
		// daemon.Start, for two reasons: the bare publisher must log in as
		// the daemon's user (daemon.Start makes a random password it keeps
		// to itself), and the devices must be connected before the daemon
		// starts, so that its first publication is the fan-out measured.
		b, err := devices.NewBroker(devices.BrokerOptions{
			Listen: "127.0.0.1:0", TopicRoot: cfg.MQTT.TopicRoot, Devices: newRegistry(fx.devices),
			RootUser: cfg.MQTT.Username, RootPassword: cfg.MQTT.Password, Logger: log,
		})
		if err != nil {
			return res, err
		}
		if err := b.Start(); err != nil {
			return res, err
		}
		closers = append(closers, func() { _ = b.Close() })
		cfg.MQTT.URL = "tcp://" + b.Addr()
	case brokerMosquitto:
		mosq, err = startMosquitto(spec.Mosquitto, filepath.Join(tmp, "mosquitto"), fx.devices, cfg.MQTT.Username, cfg.MQTT.Password, cfg.MQTT.TopicRoot)
		if err != nil {
			return res, err
		}
		closers = append(closers, mosq.stop)
		cfg.MQTT.URL = "tcp://" + mosq.addr
	default:
		return res, fmt.Errorf("unknown broker %q", spec.Broker)
	}
	if err := cfg.Validate(); err != nil {
		return res, fmt.Errorf("the daemon's configuration: %w", err)
	}
	ids := make([]string, len(fx.devices))
	for i, d := range fx.devices {
		ids[i] = d.ID
	}
	// The round trip's events cannot be the ones the devices send the
	// daemon later: those name the rev of the daemon's snapshot. They are
	// signed the same way, for the same airings and seqs, with a rev of the
	// same size: the scheduler's starts at the time in microseconds.
	trip, err := signEvents(ids, fx.items, runKey, uint64(time.Now().UnixMicro()), spec.EventsPerDevice, clock.Now())
	if err != nil {
		return res, fmt.Errorf("sign the round trip's events: %w", err)
	}
	// The registry (embedded broker) holds the devices now; the list is no
	// longer the scenario's to keep.
	fx.devices, fx.items = nil, nil
	// What the preparation allocated is not the daemon's: hand it back to
	// the OS before the daemon starts and its RSS is read.
	debug.FreeOSMemory()

	fl, err := startChild(ctx, roleDevices, logw)
	if err != nil {
		return res, err
	}
	closers = append(closers, func() {
		if err := fl.close(2 * time.Minute); err != nil {
			say("devices process: %v", err)
		}
	})
	var cr connectResult
	if err := fl.call("connect", connectArgs{Broker: cfg.MQTT.URL, TopicRoot: cfg.MQTT.TopicRoot, RunKey: runKey, Devices: ids}, &cr); err != nil {
		return res, err
	}
	res.Connect = cr.Seconds
	say("%d devices connected and subscribed in %.1f s", len(ids), cr.Seconds)
	root := rootArgs{User: cfg.MQTT.Username, Password: cfg.MQTT.Password, Timeout: spec.Timeout}
	cpu := cpuMeter{mosquitto: mosq}

	// The broker round trip, before the daemon ever connects. The daemon's
	// session is persistent and subscribed to every device's events: were
	// it there, stopped between two rounds, the broker would queue these
	// events for it, and it would log them when it started. Now the broker
	// has no session of the daemon's (the embedded broker and Mosquitto,
	// which keeps nothing on disk, are new for each scenario), and the
	// events are not retained: the daemon's first session starts empty.
	if err := fl.call("trip-events", tripEvents{Events: trip}, nil); err != nil {
		return res, fmt.Errorf("broker round trip: %w", err)
	}
	settle()
	started := time.Now()
	brokerCPU0, mosqCPU0 := cpu.read()
	var sp span
	if err := fl.call("roundtrip", root, &sp); err != nil {
		return res, fmt.Errorf("broker round trip: %w", err)
	}
	res.RoundTripCPU = cpu.since(started, brokerCPU0, mosqCPU0, sp.CPU)
	res.IngestRoundTrip = nanos(sp.Last - sp.Start)
	for _, ps := range trip {
		for _, p := range ps {
			res.RoundTripBytes += float64(len(p))
		}
	}
	res.RoundTripBytes /= float64(len(ids) * spec.EventsPerDevice)
	trip = nil
	say("broker round trip: %d events with receipts in %s", len(ids)*spec.EventsPerDevice, ms(res.IngestRoundTrip))
	// As after the preparation: what the round trip allocated here (the
	// events, and the embedded broker's state for the receiver) is not
	// the daemon's.
	debug.FreeOSMemory()

	// The fan-out is the daemon's start: the scheduler's first pass
	// (RefreshAll, as after every restart) marks every station dirty, reads
	// every station and device, and publishes their snapshots with its 128
	// workers, each waiting for the broker's acknowledgement of
	// Hub.PublishSnapshot before its next. An approved programme
	// goes the same way (Touch, then the same workers). Each round restarts
	// the daemon, then has the bare publisher send the same bytes.
	rss := sampleRSS(100 * time.Millisecond)
	defer func() {
		// Also when a phase failed: what was measured is reported.
		res.RSSPeak = max(res.RSSPeak, rss.stop())
		res.LoadAfter = loadAverage()
	}()
	var d *daemon.Daemon
	closers = append(closers, func() {
		if d == nil {
			return
		}
		if err := d.Close(); err != nil {
			say("daemon close: %v", err)
		}
	})
	var fromStart, fromPublish []time.Duration
	var shares []cpuShare
	for round := range spec.Rounds {
		if d != nil {
			// A restart: the next start publishes every snapshot again.
			err := d.Close()
			d = nil
			if err != nil {
				return res, fmt.Errorf("daemon restart: %w", err)
			}
		}
		if err := fl.call("arm", nil, nil); err != nil {
			return res, err
		}
		started := time.Now()
		daemonCPU, brokerCPU := cpu.read()
		stopProfile := spec.profile("fanout")
		if d, err = daemon.Start(ctx, daemon.Options{Config: cfg, Logger: log, Clock: clock}); err != nil {
			return res, fmt.Errorf("start the daemon: %w", err)
		}
		var sp span
		if err := fl.call("await", waitArgs{Timeout: spec.Timeout}, &sp); err != nil {
			return res, fmt.Errorf("daemon fan-out: %w", err)
		}
		stopProfile()
		shares = append(shares, cpu.since(started, daemonCPU, brokerCPU, sp.CPU))
		res.DaemonRounds = append(res.DaemonRounds, nanos(sp.Last-sp.First))
		fromStart = append(fromStart, nanos(sp.Last-started.UnixNano()))
		// Every round's snapshots are checked as a device would, and the
		// last are kept: the events name their airings and rev.
		var ss snapshotStats
		if err := fl.call("snapshots", nil, &ss); err != nil {
			return res, err
		}
		res.SnapshotBytes, res.SnapshotItems = ss.MeanBytes, ss.MeanItems
		settle()
		if round == 0 {
			res.RSSIdle, _ = readRSS("self")
			res.Idle = readMemory()
			spec.heapProfile("idle")
		}
		if err := fl.call("bare", root, &sp); err != nil {
			return res, fmt.Errorf("bare fan-out: %w", err)
		}
		res.BareRounds = append(res.BareRounds, nanos(sp.Last-sp.First))
		fromPublish = append(fromPublish, nanos(sp.Last-sp.Start))
		say("fan-out round %d: daemon %s, bare %s", round+1, ms(res.DaemonRounds[round]), ms(res.BareRounds[round]))
	}
	res.FanoutDaemon, res.FanoutBare = median(res.DaemonRounds), median(res.BareRounds)
	res.FanoutCPU = shares[slices.Index(res.DaemonRounds, res.FanoutDaemon)]
	res.FanoutFromStart, res.BareFromPublish = median(fromStart), median(fromPublish)

	settle()
	workers := root
	workers.Window = schedulerWorkers
	if err := fl.call("bare", workers, &sp); err != nil {
		return res, fmt.Errorf("bare fan-out, %d outstanding: %w", schedulerWorkers, err)
	}
	res.BareWorkers = nanos(sp.Last - sp.First)
	say("the fan-out apart: bare with %d outstanding %s", schedulerWorkers, ms(res.BareWorkers))

	var sr signResult
	if err := fl.call("sign", signArgs{PerDevice: spec.EventsPerDevice}, &sr); err != nil {
		return res, err
	}
	res.Events, res.EventBytes = sr.Events, sr.MeanBytes
	settle()
	started = time.Now()
	daemonCPU, brokerCPU := cpu.read()
	stopProfile := spec.profile("ingest")
	ist0 := d.Store().Stats()
	if err := fl.call("events", waitArgs{Timeout: spec.Timeout}, &sp); err != nil {
		return res, fmt.Errorf("event ingestion: %w", err)
	}
	stopProfile()
	res.IngestCommits = commitsSince(ist0, d.Store().Stats())
	if n := res.IngestCommits.EventsAppended; n != uint64(res.Events) {
		// Events the broker had queued for the daemon (the round trip's,
		// say) would be logged before these, which would then be
		// duplicates: the rate would not be the ingestion's.
		res.Notes = append(res.Notes, fmt.Sprintf("the daemon appended %d events during its ingestion of %d", n, res.Events))
	}
	if n := res.IngestCommits.Unmatched; n > 0 {
		// Logged for no airing, they skip the airing's update: a cheaper
		// event than the ingestion measures.
		res.Notes = append(res.Notes, fmt.Sprintf("%d of the daemon's events named no airing of their station", n))
	}
	res.IngestCPU = cpu.since(started, daemonCPU, brokerCPU, sp.CPU)
	res.IngestDaemon = nanos(sp.Last - sp.Start)
	res.RSSAfterEvents, _ = readRSS("self")
	spec.heapProfile("events")
	say("daemon ingestion: %d events with receipts in %s", res.Events, ms(res.IngestDaemon))
	settle()
	if err := fl.call("sink", root, &sp); err != nil {
		return res, fmt.Errorf("broker delivery rate: %w", err)
	}
	res.IngestBroker = nanos(sp.Last - sp.Start)
	// The sampler may have missed the readings above between two ticks.
	res.RSSPeak = max(rss.stop(), res.RSSIdle, res.RSSAfterEvents)
	say("broker alone, 64 connections one way: %d events in %s", res.Events, ms(res.IngestBroker))

	var fs fleetStats
	if err := fl.call("stats", nil, &fs); err != nil {
		return res, err
	}
	res.DevicesRSS = fs.RSS
	if fs.Lost > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d device connections were lost and re-made during the run", fs.Lost))
	}
	if fs.Refused > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("devices received %d commands that were not receipts or did not decode", fs.Refused))
	}
	if fs.Stray > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("devices ignored %d receipts that came outside their round (the broker round trip's during the daemon's ingestion, or the reverse)", fs.Stray))
	}
	if mosq != nil {
		res.BrokerRSS, _ = readRSS(strconv.Itoa(mosq.pid()))
	}

	settle()
	st0 := d.Store().Stats()
	n, took, err := rawAppend(ctx, d.Store(), ids, runKey, spec.EventsPerDevice, clock.Now(), policy)
	if err != nil {
		return res, fmt.Errorf("raw storage: %w", err)
	}
	res.RawEvents, res.RawStorage = n, took
	res.RawCommits = commitsSince(st0, d.Store().Stats())
	if u := res.RawCommits.Unmatched; u > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d of storage's raw appends named no airing of their station", u))
	}
	say("storage raw group commit: %d events in %s", n, ms(took))
	return res, nil
}

// commitsSince is the group commit's work between two readings.
func commitsSince(st0, st storage.Stats) storage.Stats {
	return storage.Stats{
		EventsAppended: st.EventsAppended - st0.EventsAppended, Commits: st.Commits - st0.Commits,
		Unmatched:  st.Unmatched - st0.Unmatched,
		CommitTime: st.CommitTime - st0.CommitTime, ApplyTime: st.ApplyTime - st0.ApplyTime,
	}
}

// registry is the embedded broker's device registry: the device records
// written to the daemon's store, held in memory because the broker must
// admit the devices before the daemon, which owns the store, starts.
type registry map[string]broadcast.Device

func newRegistry(devs []broadcast.Device) registry {
	r := make(registry, len(devs))
	for _, d := range devs {
		r[d.ID] = d
	}
	return r
}

func (r registry) Device(id string) (broadcast.Device, error) {
	if d, ok := r[id]; ok {
		return d, nil
	}
	return broadcast.Device{}, broadcast.Errorf(broadcast.ENotFound, "device %s is not registered", id)
}

// schedulerWorkers is how many stations the scheduler publishes at once
// (scheduler.publishers).
const schedulerWorkers = 128

// rawWorkers is the concurrency of storage's BenchmarkAppendEvent.
const rawWorkers = 64

// rawAppend measures the as-run log's own rate in the daemon's store: each
// device's next events (signed, for the airings of its snapshot, as the
// devices sent theirs), appended by 64 goroutines calling AppendEvent
// directly, each going round its devices in seq order as
// BenchmarkAppendEvent does. No MQTT, validation or receipt: the ceiling
// the daemon's ingestion can approach.
func rawAppend(ctx context.Context, s *storage.Store, ids []string, runKey []byte, per int, now time.Time, policy broadcast.Policy) (int, time.Duration, error) {
	recs := make([][]broadcast.EventRecord, len(ids))
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	fail := func(err error) { failed.CompareAndSwap(nil, &err) }
	var next atomic.Int64
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(ids); i = int(next.Add(1)) - 1 {
				id := ids[i]
				dev, err := s.Device(id)
				if err != nil {
					fail(err)
					return
				}
				items, err := snapshotItems(s, dev.Station, now, policy)
				if err != nil {
					fail(err)
					return
				}
				key := deviceKey(runKey, id)
				for seq := uint64(per) + 1; seq <= uint64(2*per); seq++ {
					p, err := broadcast.SignEvent(deviceEvent(id, 1, items, seq, now), key)
					if err != nil {
						fail(fmt.Errorf("device %s seq %d: %w", id, seq, err))
						return
					}
					// As the hub does: the record's event is the
					// payload's, decoded.
					ev, _, err := broadcast.DecodeEvent(p)
					if err != nil {
						fail(fmt.Errorf("device %s seq %d: %w", id, seq, err))
						return
					}
					recs[i] = append(recs[i], broadcast.EventRecord{Device: id, Station: dev.Station, ReceivedAt: now, Payload: p, Event: ev})
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return 0, 0, *err
	}

	start := time.Now()
	for w := range rawWorkers {
		wg.Go(func() {
			for k := range per {
				for i := w; i < len(recs); i += rawWorkers {
					r := recs[i][k]
					res, err := s.AppendEvent(ctx, r)
					switch {
					case err != nil:
						fail(fmt.Errorf("device %s seq %d: %w", r.Device, r.Event.Seq, err))
						return
					case res.Duplicate:
						fail(fmt.Errorf("device %s seq %d was already logged", r.Device, r.Event.Seq))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := failed.Load(); err != nil {
		return 0, 0, *err
	}
	return len(recs) * per, took, nil
}

// memory is a breakdown of this process's memory.
type memory struct {
	Anon       int64 `json:"anon"`        // RssAnon
	File       int64 `json:"file"`        // RssFile: here, mostly the store's mmap
	HeapInuse  int64 `json:"heap_inuse"`  // Go heap spans in use
	StackInuse int64 `json:"stack_inuse"` // goroutine stacks
	Goroutines int   `json:"goroutines"`
}

func readMemory() memory {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := memory{HeapInuse: int64(ms.HeapInuse), StackInuse: int64(ms.StackInuse), Goroutines: runtime.NumGoroutine()}
	m.Anon, _ = readStatusKB("self", "RssAnon")
	m.File, _ = readStatusKB("self", "RssFile")
	return m
}

// rssSampler keeps the highest RSS of this process seen while it runs.
type rssSampler struct {
	peak atomic.Int64
	done chan struct{}
	quit chan struct{}
}

func sampleRSS(every time.Duration) *rssSampler {
	s := &rssSampler{done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if v, err := readRSS("self"); err == nil && v > s.peak.Load() {
				s.peak.Store(v)
			}
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak; it may be called again.
func (s *rssSampler) stop() int64 {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	<-s.done
	return s.peak.Load()
}

// profile starts a CPU profile of this process (the daemon's) for a phase,
// if asked, and returns what stops it. A fan-out's profile is overwritten
// by the next round's: the last round's is kept.
func (spec Spec) profile(phase string) (stop func()) {
	if spec.CPUProfiles == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(spec.CPUProfiles, fmt.Sprintf("%s-%d-%s.pprof", spec.Broker, spec.Devices, phase)))
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// heapProfile writes a heap profile of this process (the daemon's) beside
// the CPU profiles, if asked.
func (spec Spec) heapProfile(phase string) {
	if spec.CPUProfiles == "" {
		return
	}
	f, err := os.Create(filepath.Join(spec.CPUProfiles, fmt.Sprintf("%s-%d-%s-heap.pprof", spec.Broker, spec.Devices, phase)))
	if err != nil {
		return
	}
	defer f.Close()
	_ = pprof.Lookup("heap").WriteTo(f, 0)
}

// settle waits, at most 10 s, until this process is idle: the daemon
// finishes work after its last publish (it marks the airings it sent), and
// that work must neither be counted in the next phase's figures nor be cut
// short by a restart.
func settle() {
	const window, idle = 200 * time.Millisecond, 20 * time.Millisecond
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		before := processCPU()
		time.Sleep(window)
		if processCPU()-before < idle {
			return
		}
	}
}

func nanos(ns int64) time.Duration { return time.Duration(ns) }

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// median of a few durations (the upper one of an even count).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
