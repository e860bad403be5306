package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		_ = os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

// appendFixture is a store with stations × devicesPer devices and enough
// airings that every device reports a handful of events per airing, as
// when a broadcast ends: received, ready, started, finished.
type appendFixture struct {
	s        *Store
	devices  []string // device i belongs to station i / devicesPer
	stations []string
	payload  []byte
}

func newAppendFixture(b *testing.B, stations, devicesPer, events int) *appendFixture {
	b.Helper()
	s := mustOpen(b)
	ctx := context.Background()
	f := &appendFixture{s: s}
	var sts []broadcast.Station
	for i := range stations {
		id := fmt.Sprintf("%05d", i)
		sts = append(sts, broadcast.Station{ID: id, Unit: id, Path: "38/380/" + id})
		f.stations = append(f.stations, id)
	}
	_, err := s.ImportUnits(ctx, nil, sts, nil)
	must(b, err)
	var devs []broadcast.Device
	for _, st := range f.stations {
		for j := range devicesPer {
			id := fmt.Sprintf("d%s-%02d", st, j)
			devs = append(devs, broadcast.Device{ID: id, Station: st})
			f.devices = append(f.devices, id)
		}
	}
	must(b, s.AddDevices(ctx, devs, nil))
	// Airings for twice a device's share of the events: RunParallel hands
	// out iterations to whichever goroutine asks, and a worker that runs a
	// few percent ahead of the others used to run out of airings (an
	// unknown_airing failure under CPU contention).
	perDevice := 2*events/len(f.devices) + 4
	nAirings := perDevice/4 + 1
	var batch []*broadcast.Airing
	for _, st := range f.stations {
		for k := range nAirings {
			a := airing(fmt.Sprintf("a%s-%04d", st, k), st, "p1", t0.Add(time.Duration(k)*time.Hour))
			a.Audio = broadcast.Audio{SHA256: fmt.Sprintf("%064x", 1), DurationMS: 600_000}
			batch = append(batch, a)
		}
		if len(batch) > 20_000 {
			must(b, s.PutAirings(ctx, batch, nil))
			batch = batch[:0]
		}
	}
	must(b, s.PutAirings(ctx, batch, nil))
	// A typical signed payload (~400 bytes); its content is not read by
	// the store, so one serves every event.
	ev := broadcast.Event{V: 1, ID: broadcast.NewID(t0), Device: f.devices[0], Seq: 1, Airing: "a00000-0000", Rev: 7, Event: broadcast.EventFinished,
		At: t0, StartedAt: t0, PlayedMS: 600_000, SHA256: fmt.Sprintf("%064x", 1), ClockSynced: true}
	f.payload, err = broadcast.SignEvent(ev, make([]byte, 64))
	must(b, err)
	return f
}

var cycle = [...]broadcast.EventType{broadcast.EventReceived, broadcast.EventReady, broadcast.EventStarted, broadcast.EventFinished}

// record is the seq-th event (from 1) of device i.
func (f *appendFixture) record(i int, seq uint64, devicesPer int) EventRecord {
	dev := f.devices[i]
	st := f.stations[i/devicesPer]
	k := (seq - 1) / 4
	ev := broadcast.Event{V: 1, ID: "e", Device: dev, Seq: seq, Airing: fmt.Sprintf("a%s-%04d", st, k), Event: cycle[(seq-1)%4], At: t0}
	received := t0
	if ev.Event == broadcast.EventFinished {
		ev.StartedAt, ev.PlayedMS, ev.SHA256 = t0.Add(time.Duration(k)*time.Hour), 600_000, fmt.Sprintf("%064x", 1)
		// After the play: a claim of a play still to come counts for nothing.
		received = ev.StartedAt.Add(11 * time.Minute)
	}
	return EventRecord{Device: dev, Station: st, ReceivedAt: received, Payload: f.payload, Event: ev}
}

// benchStart is what reportRate measures from.
type benchStart struct {
	Stats
	pages int64 // bbolt pages written
}

func startBench(s *Store) benchStart {
	st := s.db.Stats()
	return benchStart{s.Stats(), st.TxStats.GetWrite()}
}

// reportRate reports durable events/s and, per group commit, events,
// time, time applying them and pages written (the cost of its I/O; seq
// state checkpoints included, seqstate.go).
func reportRate(b *testing.B, s *Store, start benchStart) {
	st := s.Stats()
	if n := st.Unmatched - start.Unmatched; n > 0 {
		// Logged for no airing, they skip the airing's update: cheaper,
		// so they would flatter the rate.
		b.Fatalf("%d events named no airing of their station: the fixture ran out of airings", n)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if c := st.Commits - start.Commits; c > 0 {
		db := s.db.Stats()
		b.ReportMetric(float64(db.TxStats.GetWrite()-start.pages)/float64(c), "pages/commit")
		b.ReportMetric(float64(st.EventsAppended-start.EventsAppended)/float64(c), "events/commit")
		b.ReportMetric(float64(st.CommitTime-start.CommitTime)/float64(c)/1e3, "µs/commit")
		b.ReportMetric(float64(st.ApplyTime-start.ApplyTime)/float64(c)/1e3, "µs-apply/commit")
	}
}

// BenchmarkAppendEvent: 64 devices' events in flight at once (32 per CPU on
// this 2-core machine), each call returning once its event is durable.
func BenchmarkAppendEvent(b *testing.B) { benchmarkAppendEvent(b, false) }

// BenchmarkAppendEventShuffled is BenchmarkAppendEvent with each worker
// driving its devices in an order of its own. In BenchmarkAppendEvent the
// workers go round their devices in step, so the 64 events in flight come
// from ~64 consecutive device ids (8 stations): per-device and per-station
// records that sort by id then share pages, which they do not when a
// broadcast ends everywhere at once and devices report in no particular
// order. Here they do not either.
func BenchmarkAppendEventShuffled(b *testing.B) { benchmarkAppendEvent(b, true) }

func benchmarkAppendEvent(b *testing.B, shuffle bool) {
	const stations, devicesPer = 256, 8
	f := newAppendFixture(b, stations, devicesPer, b.N)
	var worker atomic.Int64
	start := startBench(f.s)
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Worker w drives devices w, w+W, w+2W… round robin, so a device's
		// events arrive in seq order from a single goroutine.
		w := int(worker.Add(1)) - 1
		var mine []int
		for i := w; i < len(f.devices); i += 64 {
			mine = append(mine, i)
		}
		if shuffle {
			rand.New(rand.NewPCG(uint64(w), 1)).Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
		}
		seqs := make([]uint64, len(mine))
		for n := 0; pb.Next(); n++ {
			j := n % len(mine)
			seqs[j]++
			if _, err := f.s.AppendEvent(context.Background(), f.record(mine[j], seqs[j], devicesPer)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRate(b, f.s, start)
	if os.Getenv("LOAXA_BENCH_PAGES") != "" {
		st := f.s.db.Stats().TxStats
		b.Logf("bbolt: %d pages written, %d allocated, spill %s, write+sync %s, in %d commits (incl. setup)", st.GetWrite(), st.GetPageCount(), st.GetSpillTime(), st.GetWriteTime(), f.s.Stats().Commits)
	}
}

// BenchmarkAppendEventSerial: one caller, so every event is its own commit.
func BenchmarkAppendEventSerial(b *testing.B) {
	const stations, devicesPer = 16, 4
	f := newAppendFixture(b, stations, devicesPer, b.N)
	seqs := make([]uint64, len(f.devices))
	start := startBench(f.s)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		i := n % len(f.devices)
		seqs[i]++
		if _, err := f.s.AppendEvent(context.Background(), f.record(i, seqs[i], devicesPer)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, f.s, start)
}

// The month fixture is the national case: 10,047 stations × 12 months × 8
// airings (964,512), built once per test binary and removed by TestMain.
var (
	fixtureOnce  sync.Once
	fixtureDir   string
	fixtureErr   error
	fixtureStore *Store
	fixtureIDs   []string
)

func monthFixture(b *testing.B) (*Store, []string) {
	fixtureOnce.Do(func() {
		fixtureDir, fixtureErr = os.MkdirTemp("", "loaxa-bench-")
		if fixtureErr != nil {
			return
		}
		fixtureStore, fixtureErr = Open(fixtureDir, Options{})
		if fixtureErr != nil {
			return
		}
		start := time.Now()
		for i := range 10047 {
			fixtureIDs = append(fixtureIDs, fmt.Sprintf("%05d", i*3+1))
		}
		loc := time.FixedZone("ICT", 7*3600)
		var batch []*broadcast.Airing
		flush := func() {
			if fixtureErr == nil && len(batch) > 0 {
				fixtureErr = fixtureStore.PutAirings(context.Background(), batch, nil)
			}
			batch = batch[:0]
		}
		// Station by station, as a planner writes a province's plan: most
		// index keys then arrive in order.
		for i, st := range fixtureIDs {
			for m := 1; m <= 12; m++ {
				for k := range 8 {
					start := time.Date(2026, time.Month(m), 1+3*k, 6+k%2*11, 0, 0, 0, loc)
					a := airing(fmt.Sprintf("%s-%02d-%d", st, m, k), st, fmt.Sprintf("p%02d", m), start)
					batch = append(batch, a)
				}
			}
			if i%1000 == 999 {
				flush()
			}
		}
		flush()
		b.Logf("month fixture: %d airings in %s", 10047*12*8, time.Since(start))
	})
	if fixtureErr != nil {
		b.Fatal(fixtureErr)
	}
	return fixtureStore, fixtureIDs
}

// BenchmarkStationMonthAirings reads one station-month (8 airings) from the
// national store: a prefix scan of the station|month|start index.
func BenchmarkStationMonthAirings(b *testing.B) {
	s, stations := monthFixture(b)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		st := stations[(n*7919)%len(stations)]
		as, err := s.StationMonthAirings(st, broadcast.Month(fmt.Sprintf("2026-%02d", n%12+1)))
		if err != nil || len(as) != 8 {
			b.Fatalf("%s: %d airings, %v", st, len(as), err)
		}
	}
}
