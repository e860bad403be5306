// Package scheduler plans airings and keeps devices' schedules in step with
// them: it turns an approved programme into concrete airings, publishes each
// device's schedule snapshot when it changes, and judges airings whose time
// has passed without evidence.
//
// Airings are concrete instants in storage, not cron entries: the dispatch
// loop re-reads what is due after every wake-up, so nothing is lost while the
// daemon is down.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is what the scheduler needs of storage.
type Store interface {
	Station(id string) (broadcast.Station, error)
	Stations(path string) ([]broadcast.Station, error)
	Devices(station string) ([]broadcast.Device, error)
	StationMonthAirings(station string, month broadcast.Month) ([]*broadcast.Airing, error)
	StationAirings(station string, from, to time.Time) ([]*broadcast.Airing, error)
	AiringsBetween(from, to time.Time, fn func(*broadcast.Airing) error) error
	PutAirings(ctx context.Context, airings []*broadcast.Airing, op *broadcast.OpEntry) error
	UpdateAiring(ctx context.Context, id string, fn func(*broadcast.Airing) error, op *broadcast.OpEntry) (*broadcast.Airing, error)
	UpdateAirings(ctx context.Context, ids []string, fn func(*broadcast.Airing) error, op *broadcast.OpEntry) ([]*broadcast.Airing, error)
}

// Publisher delivers snapshots and immediate commands to devices.
type Publisher interface {
	PublishSnapshot(ctx context.Context, snap broadcast.Snapshot) error
	PlayNow(ctx context.Context, device string, item broadcast.Item) error
}

// Clock is the scheduler's only source of time, so that a month runs in a
// test in milliseconds.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Scheduler.
type Options struct {
	Store     Store
	Publisher Publisher
	Policy    broadcast.Policy
	Clock     Clock
	Logger    *slog.Logger
	// AudioURL makes the URL a device downloads an audio file from.
	AudioURL func(sha256 string) string
	// MaxSleep bounds how long the loop sleeps, so that a missed wake-up (or
	// a clock that jumped) costs at most this much delay.
	MaxSleep time.Duration
	// PlanMargin keeps new airings this far from now, so that devices have
	// time to fetch the audio before the first one.
	PlanMargin time.Duration
	Registerer prometheus.Registerer
}

// Scheduler plans and dispatches.
type Scheduler struct {
	opts Options
	log  *slog.Logger
	wake chan struct{}
	// rev is the last snapshot rev handed out; it starts at the process's
	// start time in microseconds and counts up by one per snapshot, for
	// every device alike (a device only compares its own revs). A new
	// process thus outbids the old one unless the wall clock went back by
	// more than the time between their starts, less a microsecond per
	// snapshot the old one sent. A counter in storage would add nothing to
	// that: restored from a backup, or after a crash that lost its last
	// commits, it goes backwards, and the clock had to cover it anyway. And
	// it cost a group commit per snapshot, which each publisher waited for
	// before its publish.
	rev atomic.Uint64
	// steps counts the loop's finished passes, for Settled.
	steps atomic.Uint64

	// The loop's own state; only Run's goroutine touches it.
	started     time.Time
	horizon     time.Time // airings starting before it are in devices' snapshots
	missCursor  time.Time // airings starting before it have been judged
	lastSurplus time.Time // when make-ups were last checked for surplus

	zones sync.Map // time zone name → *time.Location

	mu    sync.Mutex
	dirty map[string]bool // stations whose devices need a new snapshot

	planned   prometheus.Counter
	published prometheus.Counter
	missed    prometheus.Counter
	failures  prometheus.Counter
	makeups   prometheus.Counter
	atRisk    prometheus.Counter
}

// New checks the options and returns a Scheduler; Run starts its loop.
func New(opts Options) (*Scheduler, error) {
	if opts.Store == nil || opts.Publisher == nil || opts.AudioURL == nil {
		return nil, errors.New("scheduler: Store, Publisher and AudioURL are required")
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxSleep <= 0 {
		opts.MaxSleep = 10 * time.Second
	}
	if opts.PlanMargin <= 0 {
		opts.PlanMargin = 10 * time.Minute
	}
	s := &Scheduler{
		opts:  opts,
		log:   opts.Logger,
		wake:  make(chan struct{}, 1),
		dirty: map[string]bool{},
		planned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaxa_scheduler_airings_planned_total", Help: "Airings planned for approved programmes.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaxa_scheduler_snapshots_published_total", Help: "Schedule snapshots handed to the broker.",
		}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaxa_scheduler_airings_missed_total", Help: "Airings judged missed: no valid finished event by not_after + grace.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaxa_scheduler_publish_failures_total", Help: "Snapshot publications that failed and will be retried.",
		}),
		makeups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaxa_scheduler_makeups_planned_total", Help: "Make-up airings planned to replace missed or failed ones.",
		}),
		atRisk: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaxa_scheduler_station_months_at_risk_total", Help: "Times a station-month was found unable to reach its required airings with what is left of the month.",
		}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.planned, s.published, s.missed, s.failures, s.makeups, s.atRisk} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("scheduler: register metrics: %w", err)
			}
		}
	}
	s.rev.Store(uint64(time.Now().UnixMicro()))
	return s, nil
}

// Shortfall is a station where fewer airings fit than the month requires.
type Shortfall struct {
	Station string `json:"station"`
	Planned int    `json:"planned"`
}

// PlanResult says what approving a programme planned, and plainly where the
// month cannot be met.
type PlanResult struct {
	Stations  int         `json:"stations"`
	Required  int         `json:"required_per_station"`
	Planned   int         `json:"airings_planned"`
	Displaced int         `json:"airings_displaced,omitempty"` // lower-priority airings moved out of the way
	Shortfall []Shortfall `json:"short_stations"`
}

// planBatch bounds one planning transaction: large enough that a national
// programme (40,188 airings) costs four commits, small enough that a
// transaction's dirty pages stay in the tens of megabytes. Measured here:
// 2,000 per commit planned the nation in 1.7 s, 10,000 in 0.8 s.
const planBatch = 10000

// PlanProgramme plans the programme's airings at every station below its
// unit. Re-running it plans nothing new for stations already planned.
func (s *Scheduler) PlanProgramme(ctx context.Context, p broadcast.Programme, actor string) (PlanResult, error) {
	stations, err := s.opts.Store.Stations(p.UnitPath)
	if err != nil {
		return PlanResult{}, fmt.Errorf("plan programme %s: list stations: %w", p.ID, err)
	}
	now := s.opts.Clock.Now()
	res := PlanResult{Stations: len(stations), Required: s.opts.Policy.Required()}
	var batch []*broadcast.Airing
	var touched []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := s.opts.Store.PutAirings(ctx, batch, nil); err != nil {
			return fmt.Errorf("plan programme %s: store airings: %w", p.ID, err)
		}
		res.Planned += len(batch)
		s.planned.Add(float64(len(batch)))
		batch = batch[:0]
		return nil
	}
	for _, st := range stations {
		loc := s.location(st)
		existing, err := s.opts.Store.StationMonthAirings(st.ID, p.Month)
		if err != nil {
			return res, fmt.Errorf("plan programme %s: station %s: %w", p.ID, st.ID, err)
		}
		plan := broadcast.PlanStation(broadcast.PlanRequest{
			Programme: p, Station: st, Location: loc, Existing: existing,
			Earliest: now.Add(s.opts.PlanMargin), Policy: s.opts.Policy, Now: now,
		})
		if displaced := broadcast.Displaced(plan, existing); len(displaced) > 0 {
			// The new airings must be stored before the displaced ones move
			// around them, so that a crash in between leaves an overlap the
			// next approval pass repairs, never a lost airing.
			batch = append(batch, plan...)
			if err := flush(); err != nil {
				return res, err
			}
			res.Displaced += s.reslot(ctx, st, loc, now, displaced, append(existing, plan...), actor)
			touched = append(touched, st.ID)
			continue
		}
		have := len(plan)
		for _, a := range existing {
			if a.Programme == p.ID && a.Status != broadcast.StatusCancelled {
				have++
			}
		}
		if have < res.Required {
			res.Shortfall = append(res.Shortfall, Shortfall{Station: st.ID, Planned: have})
			s.atRisk.Inc()
			s.log.Warn("station-month at risk: the month has no room for its airings", "station", st.ID, "month", p.Month, "programme", p.ID, "planned", have, "required", res.Required)
		}
		if len(plan) > 0 {
			touched = append(touched, st.ID)
		}
		batch = append(batch, plan...)
		if len(batch) >= planBatch {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	s.log.Info("programme planned", "programme", p.ID, "month", p.Month, "stations", res.Stations, "airings", res.Planned, "short", len(res.Shortfall), "actor", actor)
	s.Touch(touched...)
	return res, nil
}

// reslot moves airings a higher-priority programme took the slots of. One
// that finds no room left in its month is cancelled, and its station-month
// is at risk: the log and the metric say so, and make-up planning will try
// again as the month goes on.
func (s *Scheduler) reslot(ctx context.Context, st broadcast.Station, loc *time.Location, now time.Time, displaced, taken []*broadcast.Airing, actor string) int {
	moved := 0
	for _, d := range displaced {
		start, ok := broadcast.Reslot(d, taken, loc, now.Add(s.opts.PlanMargin), s.opts.Policy)
		op := &broadcast.OpEntry{At: now, Actor: actor, Action: "airing.displace", Subject: d.ID, Unit: st.Path,
			Detail: fmt.Appendf(nil, `{"from":%q,"to":%q}`, d.Start.Format(time.RFC3339), start.Format(time.RFC3339))}
		a, err := s.opts.Store.UpdateAiring(ctx, d.ID, func(a *broadcast.Airing) error {
			if ok {
				a.Start, a.NotAfter = start, start.Add(s.opts.Policy.StartTolerance)
			} else {
				a.Cancel(now, "displaced by a higher priority; no room left in the month")
			}
			a.UpdatedAt = now
			return nil
		}, op)
		if err != nil {
			s.log.Error("move a displaced airing", "airing", d.ID, "err", err)
			continue
		}
		taken = append(taken, a)
		if !ok {
			s.atRisk.Inc()
			s.log.Warn("station-month at risk: a displaced airing found no room", "station", st.ID, "airing", d.ID, "month", d.Month)
			continue
		}
		moved++
	}
	return moved
}

func (s *Scheduler) location(st broadcast.Station) *time.Location {
	name := st.Timezone
	if name == "" {
		name = broadcast.DefaultTimezone
	}
	// time.LoadLocation reads and parses the zone on every call; a national
	// pass asks for the same one 10,047 times.
	if loc, ok := s.zones.Load(name); ok {
		return loc.(*time.Location)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		s.log.Warn("unknown station time zone; using Vietnam's", "station", st.ID, "timezone", name)
		loc = time.FixedZone("ICT", 7*3600)
	}
	s.zones.Store(name, loc)
	return loc
}

// RefreshAll re-publishes every station's snapshots: the daily safety net
// behind the event-driven updates, should a broker have lost retained
// messages unnoticed.
func (s *Scheduler) RefreshAll() error {
	all, err := s.opts.Store.Stations("")
	if err != nil {
		return fmt.Errorf("refresh snapshots: %w", err)
	}
	ids := make([]string, len(all))
	for i, st := range all {
		ids[i] = st.ID
	}
	s.Touch(ids...)
	return nil
}

// Touch marks stations whose schedule changed, so that the loop publishes
// their devices' snapshots at once.
func (s *Scheduler) Touch(stations ...string) {
	if len(stations) == 0 {
		return
	}
	s.mu.Lock()
	for _, st := range stations {
		s.dirty[st] = true
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Settled waits until a pass of the loop that started after the call has
// finished, or ctx ends: whatever the loop was doing when Settled was
// called (a verdict and the make-up it calls for are one pass) is then
// done. It wakes the loop for that pass. For tests and tools that move a
// fake clock and need the loop's answer before moving it again.
func (s *Scheduler) Settled(ctx context.Context) error {
	// A pass in progress may have started before the call: two passes
	// end, at most, before one has started after it.
	want := s.steps.Load() + 2
	for s.steps.Load() < want {
		select {
		case s.wake <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// Run is the dispatch loop. It returns when ctx is done.
func (s *Scheduler) Run(ctx context.Context) error {
	if err := s.begin(); err != nil {
		return err
	}
	for {
		s.step(ctx)
		s.steps.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-s.opts.Clock.After(s.opts.MaxSleep):
		}
	}
}

// begin readies the loop's state after a start or restart.
func (s *Scheduler) begin() error {
	s.started = s.opts.Clock.Now()
	// The broker keeps no retained message across its restarts (and an
	// external one may have lost them), so every device gets its snapshot
	// again when the daemon starts.
	if err := s.RefreshAll(); err != nil {
		return err
	}
	s.horizon = s.started.Add(s.opts.Policy.Lead)
	// Two months back covers every airing whose month is still open, so
	// that a restart judges (and repairs) what happened while it was down.
	s.missCursor = s.started.AddDate(0, -2, 0)
	return nil
}

// step is one pass of the loop: whatever is due at the clock's now.
func (s *Scheduler) step(ctx context.Context) {
	now := s.opts.Clock.Now()
	// Airings that came inside the lead window since the last pass must
	// reach their devices' snapshots.
	if next := now.Add(s.opts.Policy.Lead); next.After(s.horizon) {
		var entering []string
		err := s.opts.Store.AiringsBetween(s.horizon, next, func(a *broadcast.Airing) error {
			entering = append(entering, a.Station)
			return nil
		})
		if err != nil {
			s.log.Error("scan airings entering the lead window", "err", err)
		} else {
			s.horizon = next
			s.Touch(entering...)
		}
	}
	s.publishDirty(ctx, now)
	s.missCursor = s.judgeMissed(ctx, now, s.missCursor)
	if now.Sub(s.lastSurplus) >= surplusEvery {
		s.cancelSurplus(ctx, now)
		s.lastSurplus = now
	}
}

// publishers is how many stations publish at once. Each waits for the
// broker's acknowledgement of a snapshot before the next, so their number
// bounds the publishes outstanding: measured at 10,047 devices, a bare
// publisher with 128 outstanding is as fast as with 1,000.
const publishers = 128

// bulkAbove is how many dirty stations make a pass read every station,
// device and upcoming airing in three scans rather than three lookups per
// station: a restart's RefreshAll, a national programme.
const bulkAbove = 256

// passInfo is what a pass knows of its stations beforehand; nil maps mean
// each station is looked up as it is published.
type passInfo struct {
	stations map[string]broadcast.Station
	devices  map[string][]broadcast.Device
	// airings holds every station's window (see window), in start order.
	airings map[string][]*broadcast.Airing
}

// window is the span of airings a snapshot is made from. Looking back by
// the start tolerance keeps an airing that should be playing right now in
// the snapshot.
func (s *Scheduler) window(now time.Time) (from, to time.Time) {
	return now.Add(-s.opts.Policy.StartTolerance - time.Hour), now.Add(s.opts.Policy.Lead)
}

func (s *Scheduler) prefetch(n int, now time.Time) passInfo {
	if n <= bulkAbove {
		return passInfo{}
	}
	p := s.prefetchRegistry()
	if p.stations == nil {
		return p
	}
	// One walk of the time index instead of a seek and a random read per
	// airing of each station: at 10,047 stations the per-station reads were
	// more than half of the publishers' CPU, and the fan-out through
	// Mosquitto now takes 5-7 % less time (medians of 9 rounds, twice).
	from, to := s.window(now)
	airings := make(map[string][]*broadcast.Airing, len(p.stations))
	err := s.opts.Store.AiringsBetween(from, to, func(a *broadcast.Airing) error {
		airings[a.Station] = append(airings[a.Station], a)
		return nil
	})
	if err != nil {
		s.log.Warn("read every upcoming airing for a large pass; reading them station by station", "err", err)
		return p
	}
	p.airings = airings
	return p
}

func (s *Scheduler) prefetchRegistry() passInfo {
	stations, err := s.opts.Store.Stations("")
	if err != nil {
		s.log.Warn("read every station for a large pass; looking them up one by one", "err", err)
		return passInfo{}
	}
	devs, err := s.opts.Store.Devices("")
	if err != nil {
		s.log.Warn("read every device for a large pass; looking them up one by one", "err", err)
		return passInfo{}
	}
	p := passInfo{stations: make(map[string]broadcast.Station, len(stations)), devices: make(map[string][]broadcast.Device, len(stations))}
	for _, st := range stations {
		p.stations[st.ID] = st
	}
	for _, d := range devs {
		p.devices[d.Station] = append(p.devices[d.Station], d)
	}
	return p
}

func (s *Scheduler) publishDirty(ctx context.Context, now time.Time) {
	s.mu.Lock()
	stations := make([]string, 0, len(s.dirty))
	for st := range s.dirty {
		stations = append(stations, st)
	}
	s.dirty = map[string]bool{}
	s.mu.Unlock()
	sort.Strings(stations)
	pass := s.prefetch(len(stations), now)

	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sent []string // planned airings now in some device's snapshot
	for range min(publishers, len(stations)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for st := range work {
				ids, err := s.publishStation(ctx, st, now, pass)
				if err != nil {
					s.failures.Inc()
					s.log.Warn("publish station schedule; will retry", "station", st, "err", err)
					s.mu.Lock()
					s.dirty[st] = true
					s.mu.Unlock()
					continue
				}
				mu.Lock()
				sent = append(sent, ids...)
				mu.Unlock()
			}
		}()
	}
	for _, st := range stations {
		if ctx.Err() != nil {
			break
		}
		work <- st
	}
	close(work)
	wg.Wait()
	s.markSent(ctx, sent, now)
}

// markSent moves planned airings that reached their devices to sent, in
// one transaction per batch rather than one fsync per airing.
func (s *Scheduler) markSent(ctx context.Context, ids []string, now time.Time) {
	for i := 0; i < len(ids); i += planBatch {
		_, err := s.opts.Store.UpdateAirings(ctx, ids[i:min(i+planBatch, len(ids))], func(a *broadcast.Airing) error {
			if a.Status == broadcast.StatusPlanned {
				a.Status, a.UpdatedAt = broadcast.StatusSent, now
			}
			return nil
		}, nil)
		if err != nil {
			// Harmless to leave planned: the next publication retries.
			s.log.Warn("mark airings sent", "err", err)
		}
	}
}

// publishStation sends every enabled device of a station its snapshot and
// returns the planned airings in it, which are now sent.
func (s *Scheduler) publishStation(ctx context.Context, station string, now time.Time, pass passInfo) ([]string, error) {
	devs, ok := pass.devices[station]
	if !ok && pass.devices == nil {
		var err error
		if devs, err = s.opts.Store.Devices(station); err != nil {
			return nil, fmt.Errorf("devices of station %s: %w", station, err)
		}
	}
	if len(devs) == 0 {
		return nil, nil
	}
	items, airings, err := s.items(station, now, pass)
	if err != nil {
		return nil, err
	}
	published := 0
	for _, d := range devs {
		if d.Disabled {
			continue
		}
		snap := broadcast.Snapshot{V: broadcast.ProtocolVersion, Device: d.ID, Station: station, Rev: s.rev.Add(1), IssuedAt: now, Items: items}
		if err := s.opts.Publisher.PublishSnapshot(ctx, snap); err != nil {
			return nil, fmt.Errorf("publish snapshot of %s: %w", d.ID, err)
		}
		s.published.Inc()
		published++
	}
	if published == 0 {
		return nil, nil
	}
	var planned []string
	for _, a := range airings {
		if a.Status == broadcast.StatusPlanned {
			planned = append(planned, a.ID)
		}
	}
	return planned, nil
}

// items is a station's upcoming schedule: every airing not cancelled whose
// not_after is still ahead, up to the lead time.
func (s *Scheduler) items(station string, now time.Time, pass passInfo) ([]broadcast.Item, []*broadcast.Airing, error) {
	loc := time.UTC
	if st, ok := pass.stations[station]; ok {
		loc = s.location(st)
	} else if st, err := s.opts.Store.Station(station); err == nil {
		loc = s.location(st)
	}
	airings, ok := pass.airings[station]
	if !ok && pass.airings == nil {
		var err error
		from, to := s.window(now)
		if airings, err = s.opts.Store.StationAirings(station, from, to); err != nil {
			return nil, nil, fmt.Errorf("airings of station %s: %w", station, err)
		}
	}
	items := []broadcast.Item{}
	var kept []*broadcast.Airing
	for _, a := range airings {
		if a.Status == broadcast.StatusCancelled || !a.NotAfter.After(now) {
			continue
		}
		it := broadcast.ItemOf(a, s.opts.AudioURL(a.Audio.SHA256))
		it.Start, it.NotAfter = it.Start.In(loc), it.NotAfter.In(loc)
		items = append(items, it)
		kept = append(kept, a)
	}
	return items, kept, nil
}

// judgeMissed marks airings missed that have no aired verdict by not_after +
// grace. After a restart it waits a grace period first: devices that played
// offline are sending their outboxes, and their evidence must be heard before
// anything is judged.
func (s *Scheduler) judgeMissed(ctx context.Context, now, cursor time.Time) time.Time {
	g := s.opts.Policy.Grace
	if now.Sub(s.started) < g {
		return cursor
	}
	// An airing's not_after is its start + tolerance, so every airing that
	// starts before this bound is past not_after + grace.
	bound := now.Add(-g - s.opts.Policy.StartTolerance)
	if !bound.After(cursor) {
		return cursor
	}
	var late []string
	var lost []*broadcast.Airing // missed or failed: their station-month may need a make-up
	err := s.opts.Store.AiringsBetween(cursor, bound, func(a *broadcast.Airing) error {
		switch {
		case a.Kind == broadcast.KindEmergency:
		case !a.Status.Final() && a.NotAfter.Add(g).Before(now):
			late = append(late, a.ID)
		case a.Status == broadcast.StatusFailed || a.Status == broadcast.StatusMissed:
			lost = append(lost, a)
		}
		return nil
	})
	if err != nil {
		s.log.Error("scan airings past their time", "err", err)
		return cursor
	}
	for _, id := range late {
		a, err := s.opts.Store.UpdateAiring(ctx, id, func(a *broadcast.Airing) error {
			if !a.Status.Final() {
				a.Status, a.Reason, a.UpdatedAt = broadcast.StatusMissed, broadcast.ReasonNoFinish, now
				// Each device that got no further than started missed it too;
				// reports name them as the exceptions.
				for _, d := range a.Devices {
					if !d.Status.Final() {
						d.Status, d.Reason = broadcast.StatusMissed, broadcast.ReasonNoFinish
					}
				}
			}
			return nil
		}, nil)
		if err != nil {
			s.log.Error("mark airing missed", "airing", id, "err", err)
			return cursor
		}
		if a.Status == broadcast.StatusMissed {
			s.missed.Inc()
			s.log.Warn("airing missed", "airing", a.ID, "station", a.Station, "start", a.Start)
			lost = append(lost, a)
		}
	}
	s.makeUp(ctx, now, lost)
	return bound
}
