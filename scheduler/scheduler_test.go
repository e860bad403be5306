package scheduler

import (
	"context"
	"maps"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/storage"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var ict = time.FixedZone("ICT", 7*3600)

// fakeClock is set by the test; After fires only when the test moves the
// clock past it (the tests here drive the loop by step, so nothing waits).
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *fakeClock) After(time.Duration) <-chan time.Time {
	return make(chan time.Time)
}

// devicesOutside records what would go over MQTT: the broker and the
// devices are the outside world of the scheduler.
type devicesOutside struct {
	mu        sync.Mutex
	snapshots map[string]broadcast.Snapshot
	playNow   map[string]broadcast.Item
}

func (p *devicesOutside) PublishSnapshot(_ context.Context, s broadcast.Snapshot) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.snapshots[s.Device]; ok && old.Rev >= s.Rev {
		panic("snapshot rev did not increase")
	}
	p.snapshots[s.Device] = s
	return nil
}

func (p *devicesOutside) PlayNow(_ context.Context, device string, it broadcast.Item) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.playNow[device] = it
	return nil
}

type harness struct {
	store *storage.Store
	clock *fakeClock
	out   *devicesOutside
	s     *Scheduler
	p     broadcast.Policy
}

func newHarness(tb testing.TB, csvPath string) *harness {
	tb.Helper()
	p := broadcast.DefaultPolicy()
	st, err := storage.Open(tb.TempDir(), storage.Options{Policy: p})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	f, err := os.Open(csvPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	units, stations, err := broadcast.ParseUnitsCSV(f)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.ImportUnits(context.Background(), units, stations, nil); err != nil {
		tb.Fatal(err)
	}
	h := &harness{store: st, clock: &fakeClock{}, out: &devicesOutside{snapshots: map[string]broadcast.Snapshot{}, playNow: map[string]broadcast.Item{}}, p: p}
	h.s, err = New(Options{Store: st, Publisher: h.out, Policy: p, Clock: h.clock, AudioURL: func(sha string) string { return "http://loa.example/audio/" + sha }})
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func (h *harness) programme(tb testing.TB, unit string, month broadcast.Month) broadcast.Programme {
	u, err := h.store.Unit(unit)
	if err != nil {
		tb.Fatal(err)
	}
	return broadcast.Programme{ID: broadcast.NewID(h.clock.Now()), Unit: unit, UnitPath: u.Path, Month: month, Title: "Chuyển đổi số",
		Status: broadcast.ProgrammeApproved, Audio: broadcast.Audio{SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Size: 1, DurationMS: 900_000}}
}

func (h *harness) judge(tb testing.TB, station string, month broadcast.Month) audit.StationMonth {
	st, _ := h.store.Station(station)
	airings, err := h.store.StationMonthSummaries(station, month)
	if err != nil {
		tb.Fatal(err)
	}
	_, end := month.Bounds(ict)
	return audit.Judge(st, month, end, airings, 1, h.clock.Now(), h.p)
}

const thanhHoa = "../configs/data/thanh-hoa-units-2025-03.csv"

func TestMakeUpsKeepTheMonth(t *testing.T) {
	h := newHarness(t, thanhHoa)
	ctx := context.Background()
	if err := h.store.AddDevice(ctx, broadcast.Device{ID: "14755-01", Station: "14755"}, nil); err != nil {
		t.Fatal(err)
	}
	h.clock.Set(time.Date(2026, 12, 1, 0, 0, 0, 0, ict))
	prog := h.programme(t, "14755", "2026-12")
	res, err := h.s.PlanProgramme(ctx, prog, "test")
	if err != nil || res.Planned != 4 || len(res.Shortfall) != 0 {
		t.Fatalf("plan: %+v %v", res, err)
	}
	if err := h.s.begin(); err != nil {
		t.Fatal(err)
	}
	h.s.step(ctx)
	if snap := h.out.snapshots["14755-01"]; len(snap.Items) == 0 {
		t.Fatalf("no snapshot with the first week's airings: %+v", snap)
	}
	airings, _ := h.store.StationMonthAirings("14755", "2026-12")
	first := airings[0]

	// Nothing arrives for the premiere: past not_after + grace it is
	// missed, and a make-up replaces it in the days left.
	h.clock.Set(first.NotAfter.Add(h.p.Grace + time.Minute))
	h.s.step(ctx)
	after, _ := h.store.StationMonthAirings("14755", "2026-12")
	var makeups []*broadcast.Airing
	for _, a := range after {
		if a.ID == first.ID && a.Status != broadcast.StatusMissed {
			t.Fatalf("premiere is %s, want missed", a.Status)
		}
		if a.Kind == broadcast.KindMakeup {
			makeups = append(makeups, a)
		}
	}
	if len(makeups) != 1 || makeups[0].Replaces != first.ID || !makeups[0].Start.After(h.clock.Now()) {
		t.Fatalf("make-ups %+v, want one replacing %s after now", makeups, first.ID)
	}
	for _, a := range after {
		if a.ID != makeups[0].ID && a.Overlaps(makeups[0]) {
			t.Fatalf("make-up overlaps %s", a.ID)
		}
	}
	if row := h.judge(t, "14755", "2026-12"); row.Status != audit.InProgress || row.Pending != 4 {
		t.Fatalf("after a make-up the month is %+v, want in progress with 4 to come", row)
	}
	h.s.step(ctx)
	h.s.missCursor = time.Time{} // a restart rescans: still no second make-up
	h.s.step(ctx)
	again, _ := h.store.StationMonthAirings("14755", "2026-12")
	if len(again) != len(after) {
		t.Fatalf("stepping again planned %d more airings", len(again)-len(after))
	}
	if got := testutil.ToFloat64(h.s.makeups); got != 1 {
		t.Fatalf("makeups metric %v, want 1", got)
	}
}

func TestAtRiskWhenNoRoomIsLeft(t *testing.T) {
	h := newHarness(t, thanhHoa)
	ctx := context.Background()
	// Approved on the 31st at noon: only the 17:00 slot is left.
	h.clock.Set(time.Date(2026, 12, 31, 12, 0, 0, 0, ict))
	res, err := h.s.PlanProgramme(ctx, h.programme(t, "14755", "2026-12"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Planned != 1 || len(res.Shortfall) != 1 || res.Shortfall[0].Planned != 1 {
		t.Fatalf("late approval: %+v, want 1 airing and the station named short", res)
	}
	if row := h.judge(t, "14755", "2026-12"); row.Status != audit.AtRisk {
		t.Fatalf("month %+v, want at_risk at once", row)
	}
	if testutil.ToFloat64(h.s.atRisk) != 1 {
		t.Fatal("at-risk metric not counted")
	}
	if err := h.s.begin(); err != nil {
		t.Fatal(err)
	}
	h.clock.Set(time.Date(2026, 12, 31, 17, 50, 0, 0, ict))
	h.s.step(ctx)
	if testutil.ToFloat64(h.s.makeups) != 0 || testutil.ToFloat64(h.s.atRisk) != 2 {
		t.Fatalf("no room for a make-up on the last evening: makeups %v, at risk %v", testutil.ToFloat64(h.s.makeups), testutil.ToFloat64(h.s.atRisk))
	}
	h.clock.Set(time.Date(2027, 1, 1, 0, 0, 0, 0, ict))
	if row := h.judge(t, "14755", "2026-12"); row.Status != audit.NonCompliant {
		t.Fatalf("after the month: %+v, want non_compliant", row)
	}
}

func TestEmergencyPlaysEverywhereBelow(t *testing.T) {
	h := newHarness(t, thanhHoa)
	ctx := context.Background()
	for _, d := range []broadcast.Device{{ID: "14755-01", Station: "14755"}, {ID: "14755-02", Station: "14755"}, {ID: "14758-01", Station: "14758"}, {ID: "14809-01", Station: "14809"}} {
		if err := h.store.AddDevice(ctx, d, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.store.DisableDevice(ctx, "14755-02", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	h.clock.Set(time.Date(2026, 12, 5, 9, 0, 0, 0, ict))
	p := h.programme(t, "380", "2026-12")
	p.Priority = broadcast.PriorityEmergency
	res, err := h.s.Emergency(ctx, p, "test")
	if err != nil {
		t.Fatal(err)
	}
	stations, _ := h.store.Stations("38/380")
	if res.Stations != len(stations) || res.Devices != 2 || res.Sent != 2 {
		t.Fatalf("emergency %+v: want %d stations and the 2 enabled devices below 380", res, len(stations))
	}
	it, ok := h.out.playNow["14755-01"]
	if !ok || it.Kind != broadcast.KindEmergency || it.Priority != broadcast.PriorityEmergency || !it.Start.Equal(h.clock.Now()) {
		t.Fatalf("play_now %+v", it)
	}
	if _, ok := h.out.playNow["14809-01"]; ok {
		t.Fatal("a device outside the unit got the emergency")
	}
	a, err := h.store.Airing(it.Airing)
	if err != nil || a.Kind != broadcast.KindEmergency {
		t.Fatalf("the emergency airing is not stored: %v", err)
	}
}

// BenchmarkPlanNational plans one programme for every commune of Vietnam
// (10,047 stations × 4 airings), committed.
func BenchmarkPlanNational(b *testing.B) {
	h := newHarness(b, "../configs/data/vietnam-units-2025-03.csv")
	ctx := context.Background()
	h.clock.Set(time.Date(2026, 11, 20, 9, 0, 0, 0, ict))
	b.ResetTimer()
	for b.Loop() {
		p := broadcast.Programme{ID: broadcast.NewID(time.Now()), UnitPath: "", Month: "2026-12", Title: "Chuyển đổi số",
			Status: broadcast.ProgrammeApproved, Audio: broadcast.Audio{SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", DurationMS: 600_000}}
		res, err := h.s.PlanProgramme(ctx, p, "bench")
		if err != nil || res.Planned == 0 {
			b.Fatal(res, err)
		}
		b.ReportMetric(float64(res.Planned), "airings/op")
	}
}

// A priority programme takes the slots a normal one held; the normal
// airings move to other slots of the month, none is dropped, none overlaps.
func TestPriorityDisplacesAndReplans(t *testing.T) {
	h := newHarness(t, thanhHoa)
	ctx := context.Background()
	h.clock.Set(time.Date(2026, 11, 20, 9, 0, 0, 0, ict))
	normal := h.programme(t, "14755", "2026-12")
	if _, err := h.s.PlanProgramme(ctx, normal, "test"); err != nil {
		t.Fatal(err)
	}
	before, _ := h.store.StationMonthAirings("14755", "2026-12")
	urgent := h.programme(t, "14755", "2026-12")
	urgent.Priority = broadcast.PriorityHigh
	res, err := h.s.PlanProgramme(ctx, urgent, "test")
	if err != nil {
		t.Fatal(err)
	}
	if res.Planned != 4 || res.Displaced == 0 {
		t.Fatalf("plan %+v: want 4 priority airings that displaced normal ones", res)
	}
	after, _ := h.store.StationMonthAirings("14755", "2026-12")
	count := map[string]int{}
	for i, a := range after {
		if a.Status == broadcast.StatusCancelled {
			t.Errorf("airing %s was dropped: %s", a.ID, a.Reason)
		}
		count[a.Programme]++
		for _, b := range after[i+1:] {
			if a.Overlaps(b) {
				t.Errorf("%s (%d) overlaps %s (%d) at %v", a.ID, a.Priority, b.ID, b.Priority, a.Start)
			}
		}
	}
	if count[normal.ID] != 4 || count[urgent.ID] != 4 {
		t.Fatalf("airings per programme %v, want 4 each", count)
	}
	// The priority programme has the slots the normal one had first.
	moved := 0
	for _, b := range before {
		for _, a := range after {
			if a.ID == b.ID && !a.Start.Equal(b.Start) {
				moved++
			}
		}
	}
	if moved != res.Displaced {
		t.Fatalf("%d normal airings moved, the plan says %d", moved, res.Displaced)
	}
}

// BenchmarkDispatchStep measures the loop's cost per due airing: publishing
// the snapshots of every station of Thanh Hoa (one device each) and marking
// their airings sent.
func BenchmarkDispatchStep(b *testing.B) {
	h := newHarness(b, thanhHoa)
	ctx := context.Background()
	stations, _ := h.store.Stations("")
	var devs []broadcast.Device
	for _, st := range stations {
		devs = append(devs, broadcast.Device{ID: st.ID + "-01", Station: st.ID})
	}
	if err := h.store.AddDevices(ctx, devs, nil); err != nil {
		b.Fatal(err)
	}
	h.clock.Set(time.Date(2026, 11, 28, 9, 0, 0, 0, ict))
	if _, err := h.s.PlanProgramme(ctx, h.programme(b, "38", "2026-12"), "bench"); err != nil {
		b.Fatal(err)
	}
	if err := h.s.begin(); err != nil {
		b.Fatal(err)
	}
	due := 0
	for _, st := range stations {
		items, _, _ := h.s.items(st.ID, h.clock.Now(), passInfo{})
		due += len(items)
	}
	b.ResetTimer()
	for b.Loop() {
		_ = h.s.RefreshAll()
		h.s.step(ctx)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(max(due, 1)), "ns/due-airing")
	b.ReportMetric(float64(due), "due-airings")
}

// Evidence from a device that was offline arrives after the make-up was
// planned: the month is met without it, and the make-up is cancelled.
func TestSurplusMakeUpCancelled(t *testing.T) {
	h := newHarness(t, thanhHoa)
	ctx := context.Background()
	if err := h.store.AddDevice(ctx, broadcast.Device{ID: "14755-01", Station: "14755"}, nil); err != nil {
		t.Fatal(err)
	}
	h.clock.Set(time.Date(2026, 12, 1, 0, 0, 0, 0, ict))
	if _, err := h.s.PlanProgramme(ctx, h.programme(t, "14755", "2026-12"), "test"); err != nil {
		t.Fatal(err)
	}
	if err := h.s.begin(); err != nil {
		t.Fatal(err)
	}
	h.s.step(ctx)
	airings, _ := h.store.StationMonthAirings("14755", "2026-12")
	first := airings[0]
	h.clock.Set(first.NotAfter.Add(h.p.Grace + time.Minute))
	h.s.step(ctx)
	var makeup *broadcast.Airing
	all, _ := h.store.StationMonthAirings("14755", "2026-12")
	for _, a := range all {
		if a.Kind == broadcast.KindMakeup {
			makeup = a
		}
	}
	if makeup == nil {
		t.Fatal("no make-up planned")
	}
	// The device's outbox arrives: the premiere did air, and so do the others.
	for _, a := range all {
		if a.Kind != broadcast.KindMakeup {
			if _, err := h.store.UpdateAiring(ctx, a.ID, func(a *broadcast.Airing) error { a.Status = broadcast.StatusAired; return nil }, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.clock.Set(h.clock.Now().Add(surplusEvery))
	h.s.step(ctx)
	got, err := h.store.Airing(makeup.ID)
	if err != nil || got.Status != broadcast.StatusCancelled {
		t.Fatalf("make-up is %s, want cancelled now that the month is met", got.Status)
	}
	// Both of the system's changes name the station's unit, so that the
	// district's auditor reads them in the operations log.
	units := map[string]string{}
	if err := h.store.Ops(0, func(o broadcast.OpEntry) error { units[o.Action] = o.Unit; return nil }); err != nil {
		t.Fatal(err)
	}
	st, _ := h.store.Station("14755")
	if units["airing.makeup"] != st.Path || units["airing.cancel"] != st.Path {
		t.Errorf("the operations log files the make-up under %q and its cancellation under %q, want %q", units["airing.makeup"], units["airing.cancel"], st.Path)
	}
}

// TestLargePassReadsInBulk: a pass over more than bulkAbove stations (a
// restart's RefreshAll) reads every station and device at once; what each
// device gets must be what a pass over its station alone sends it, and
// disabled devices get nothing either way.
func TestLargePassReadsInBulk(t *testing.T) {
	h := newHarness(t, thanhHoa)
	ctx := context.Background()
	stations, err := h.store.Stations("")
	if err != nil || len(stations) <= bulkAbove {
		t.Fatalf("%d stations (%v), want more than %d", len(stations), err, bulkAbove)
	}
	var devs []broadcast.Device
	for i, st := range stations {
		devs = append(devs, broadcast.Device{ID: st.ID + "-01", Station: st.ID, Disabled: i%50 == 7})
	}
	if err := h.store.AddDevices(ctx, devs, nil); err != nil {
		t.Fatal(err)
	}
	h.clock.Set(time.Date(2026, 11, 28, 9, 0, 0, 0, ict))
	if _, err := h.s.PlanProgramme(ctx, h.programme(t, "38", "2026-12"), "test"); err != nil {
		t.Fatal(err)
	}
	if err := h.s.begin(); err != nil {
		t.Fatal(err)
	}
	h.s.step(ctx)
	bulk := maps.Clone(h.out.snapshots)
	for _, d := range devs {
		if _, got := bulk[d.ID]; got == d.Disabled {
			t.Fatalf("device %s (disabled %v): snapshot sent %v", d.ID, d.Disabled, got)
		}
	}
	for _, d := range devs[:20] {
		h.s.Touch(d.Station)
		h.s.step(ctx)
		one, big := h.out.snapshots[d.ID], bulk[d.ID]
		if d.Disabled {
			continue
		}
		if one.Rev <= big.Rev || one.Station != big.Station || !reflect.DeepEqual(one.Items, big.Items) || len(one.Items) == 0 {
			t.Fatalf("device %s: alone %+v, in bulk %+v", d.ID, one, big)
		}
	}
}
