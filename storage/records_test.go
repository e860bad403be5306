package storage

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/audit/audittest"
	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// recordsStore is a store whose airing a1 was aired by both devices of
// 38001, whose airing a2 got nothing, and which holds one event that
// claimed a play still to come.
func recordsStore(t *testing.T) (*Store, []string) {
	t.Helper()
	s := mustOpen(t)
	ctx := context.Background()
	devs, a := seedAiring(t, s, 2)
	a2 := airing("a2", "38001", "p1", t0.Add(48*time.Hour))
	a2.Audio = a.Audio
	must(t, s.PutAirings(ctx, []*broadcast.Airing{a2}, nil))
	for i, dev := range devs {
		_, err := s.AppendEvent(ctx, played(t, dev, a, 1, a.End().Add(time.Duration(i+1)*time.Second)))
		must(t, err)
	}
	// A finished event for a2, two days ahead of its receipt.
	app, err := s.AppendEvent(ctx, played(t, devs[0], a2, 2, a.End().Add(time.Minute)))
	must(t, err)
	if app.Entry.Unmatched != broadcast.UnmatchedFuture || app.Airing != nil {
		t.Fatalf("a play two days ahead: %+v", app.Entry)
	}
	return s, devs
}

// played is a device's finished event for a whole play of a at its start,
// received at received, with the payload saying so (the verifier reads the
// payload, not the parsed event the store is handed).
func played(t *testing.T, dev string, a *broadcast.Airing, seq uint64, received time.Time) EventRecord {
	t.Helper()
	ev := broadcast.Event{V: 1, ID: "e" + strconv.FormatUint(seq, 10), Device: dev, Seq: seq, Airing: a.ID, Rev: 1, Event: broadcast.EventFinished,
		At: a.End(), StartedAt: a.Start, PlayedMS: a.Audio.DurationMS, SHA256: a.Audio.SHA256, ClockSynced: true}
	payload, err := broadcast.SignEvent(ev, nil)
	must(t, err)
	return EventRecord{Device: dev, Station: a.Station, ReceivedAt: received, Payload: payload, Event: ev}
}

func verifyRecords(t *testing.T, s *Store) audit.RecordsResult {
	t.Helper()
	res, err := audit.VerifyRecords(context.Background(), s, broadcast.DefaultPolicy())
	must(t, err)
	return res
}

// named reports whether a problem names record (or, for "asrun/N", as-run
// entry N) with words containing want.
func named(res audit.RecordsResult, record, want string) bool {
	return slices.ContainsFunc(res.Problems, func(p audit.Problem) bool {
		return (p.Record == record || (p.Log == "asrun" && "asrun/"+strconv.FormatUint(p.Entry, 10) == record)) && strings.Contains(p.Problem, want)
	})
}

func TestVerifyRecords(t *testing.T) {
	s, _ := recordsStore(t)
	res := verifyRecords(t, s)
	// 6 units, 3 stations, 2 devices, 1 programme, 2 airings.
	if len(res.Problems) != 0 || res.Records != 6+3+2+1+2 || res.Airings != 2 {
		t.Fatalf("an untouched store: %+v", res)
	}
}

// Each way of changing the file behind loaxa's back, done here through the
// bbolt file or through store methods that a planner may call but that no
// event or entry accounts for, is named.
func TestVerifyRecordsNamesTampering(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		tamper func(t *testing.T, s *Store, devs []string)
		record string
		want   string
	}{
		"a programme's title": {func(t *testing.T, s *Store, _ []string) {
			rawUpdate(t, s, bktProgrammes, "p1", func(v []byte) []byte {
				return []byte(strings.Replace(string(v), "Chuyển đổi số", "Chuyển đổi sổ", 1))
			})
		}, "programme/p1", "changed outside loaxa"},
		"a device's key": {func(t *testing.T, s *Store, devs []string) {
			rawUpdate(t, s, bktDevices, devs[0], func(v []byte) []byte {
				var d deviceRec
				must(t, json.Unmarshal(v, &d))
				d.PublicKey = make([]byte, 32)
				out, _ := json.Marshal(d)
				return out
			})
		}, "device/d-38001-0", "changed outside loaxa"},
		"a unit moved": {func(t *testing.T, s *Store, _ []string) {
			rawUpdate(t, s, bktUnits, "38101", func(v []byte) []byte {
				return []byte(strings.Replace(string(v), `"parent":"381"`, `"parent":"380"`, 1))
			})
		}, "unit/38101", "changed outside loaxa"},
		"a device removed": {func(t *testing.T, s *Store, devs []string) {
			must(t, s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bktDevices).Delete([]byte(devs[1])) }))
		}, "device/d-38001-1", "no longer holds it"},
		"a record no entry covers": {func(t *testing.T, s *Store, _ []string) {
			must(t, s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bktStations).Put([]byte("99999"), []byte(`{"id":"99999"}`))
			}))
		}, "station/99999", "no operations-log entry"},
		"an airing moved in the file": {func(t *testing.T, s *Store, _ []string) {
			rawAiring(t, s, "a2", func(a *broadcast.Airing) { a.NotAfter = a.NotAfter.Add(time.Hour) })
		}, "airing/a2", "changed outside loaxa"},
		"an airing marked aired without evidence": {func(t *testing.T, s *Store, _ []string) {
			_, err := s.UpdateAiring(ctx, "a2", func(a *broadcast.Airing) error {
				a.Status = broadcast.StatusAired
				return nil
			}, nil)
			must(t, err)
		}, "airing/a2", "recorded as aired"},
		"a device's play hidden": {func(t *testing.T, s *Store, devs []string) {
			_, err := s.UpdateAiring(ctx, "a1", func(a *broadcast.Airing) error {
				a.Devices[devs[1]].Status = broadcast.StatusFailed
				return nil
			}, nil)
			must(t, err)
		}, "airing/a1", "show an aired play, but it is recorded as failed"},
		"a device's evidence dropped": {func(t *testing.T, s *Store, devs []string) {
			_, err := s.UpdateAiring(ctx, "a1", func(a *broadcast.Airing) error {
				delete(a.Devices, devs[1])
				return nil
			}, nil)
			must(t, err)
		}, "airing/a1", "cites 1 as-run entries, but the log holds 2"},
		"a device aired with another's evidence": {func(t *testing.T, s *Store, devs []string) {
			_, err := s.UpdateAiring(ctx, "a1", func(a *broadcast.Airing) error {
				a.Devices["d-38001-9"] = a.Devices[devs[1]]
				delete(a.Devices, devs[1])
				return nil
			}, nil)
			must(t, err)
		}, "airing/a1", "which is not its finished event"},
		"a summary changed": {func(t *testing.T, s *Store, _ []string) {
			must(t, s.db.Update(func(tx *bolt.Tx) error {
				a, err := getAiring(tx, "a2")
				if err != nil {
					return err
				}
				sum := a.Summary()
				sum.Status = broadcast.StatusAired
				return tx.Bucket(bktAirSM).Put(summaryKey(a), encodeSummary(sum))
			}))
		}, "airing/a2", "its summary"},
		"an airing marked cancelled in the file": {func(t *testing.T, s *Store, _ []string) {
			rawAiring(t, s, "a2", func(a *broadcast.Airing) { a.Status = broadcast.StatusCancelled })
			must(t, s.db.Update(func(tx *bolt.Tx) error {
				a, err := getAiring(tx, "a2")
				if err != nil {
					return err
				}
				return putSummary(tx.Bucket(bktAirSM), a)
			}))
		}, "airing/a2", "no cancellation of it was recorded"},
		"a summary added with no airing": {func(t *testing.T, s *Store, _ []string) {
			must(t, s.db.Update(func(tx *bolt.Tx) error {
				fake := airing("ghost", "38001", "p1", t0.Add(time.Hour))
				fake.Status = broadcast.StatusAired
				return putSummary(tx.Bucket(bktAirSM), fake)
			}))
		}, "airing/ghost", "stands for it where the airing is not"},
		"a device dropped from its station's index": {func(t *testing.T, s *Store, devs []string) {
			must(t, s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bktStationDevs).Delete(key("38001", devs[1])) }))
		}, "device/d-38001-1", "does not list it as its record says"},
		"an entry cited twice": {func(t *testing.T, s *Store, devs []string) {
			_, err := s.UpdateAiring(ctx, "a1", func(a *broadcast.Airing) error {
				d := a.Devices[devs[0]]
				d.Events = append(d.Events, d.Events[0])
				return nil
			}, nil)
			must(t, err)
		}, "airing/a1", "twice"},
		"a future mark removed": {func(t *testing.T, s *Store, _ []string) {
			rawEntry(t, s, 3, func(e *broadcast.AsRunEntry) { e.Unmatched = "" })
		}, "asrun/3", "should be marked"},
	} {
		t.Run(name, func(t *testing.T) {
			s, devs := recordsStore(t)
			tc.tamper(t, s, devs)
			if res := verifyRecords(t, s); !named(res, tc.record, tc.want) {
				t.Errorf("not named (%s, %q): %+v", tc.record, tc.want, res.Problems)
			}
		})
	}
}

// What a real daemon does is never named: a device disabled while an
// airing is on, after its station's other device aired it, and a device
// registered after it aired.
func TestVerifyRecordsDeviceChanges(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	devs, a := seedAiring(t, s, 2)
	// The second device breaks down and is disabled during the airing;
	// the first reports its play after that: 1 of 1 enabled device.
	must(t, s.DisableDevice(ctx, devs[1], a.Start.Add(time.Minute), nil))
	app, err := s.AppendEvent(ctx, played(t, devs[0], a, 1, a.End().Add(time.Second)))
	must(t, err)
	if app.Airing.Status != broadcast.StatusAired {
		t.Fatalf("aired by the one enabled device: %s", app.Airing.Status)
	}
	// A third device is registered afterwards.
	must(t, s.AddDevice(ctx, broadcast.Device{ID: "d-38001-new", Station: "38001", CreatedAt: a.End().Add(time.Hour)}, nil))
	if res := verifyRecords(t, s); len(res.Problems) > 0 {
		t.Fatalf("a real daemon's changes of devices: %+v", res.Problems)
	}
}

// An airing cancelled before cancellation times were kept, whose device
// had aired it (then the rules let a play count however it was
// cancelled), is not judged again: when it was cancelled is not known.
func TestVerifyRecordsLegacyCancelled(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenDir(t, dir)
	ctx := context.Background()
	devs, a := seedAiring(t, s, 1)
	_, err := s.AppendEvent(ctx, played(t, devs[0], a, 1, a.End().Add(time.Second)))
	must(t, err)
	// As schema 3 left it: cancelled, no time, the device aired; no
	// record hashes in the log.
	rawAiring(t, s, "a1", func(a *broadcast.Airing) { a.Status = broadcast.StatusCancelled })
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		a, err := getAiring(tx, "a1")
		if err != nil {
			return err
		}
		if err := putSummary(tx.Bucket(bktAirSM), a); err != nil {
			return err
		}
		return tx.Bucket(bktMeta).Put([]byte("schema"), []byte("3"))
	}))
	must(t, s.Close())
	s = mustOpenDir(t, dir)
	if res := verifyRecords(t, s); len(res.Problems) > 0 {
		t.Fatalf("an airing cancelled under schema 3: %+v", res.Problems)
	}
}

// A file written before records were covered is covered at the upgrade,
// as found; before it, verify names every record.
func TestRecordBaselineMigration(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenDir(t, dir)
	seedAiring(t, s, 2)
	// Schema 3 wrote no record hashes: drop them from the log.
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bktOps); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bktOps); err != nil {
			return err
		}
		return tx.Bucket(bktMeta).Put([]byte("schema"), []byte("3"))
	}))
	if res := verifyRecords(t, s); !named(res, "programme/p1", "no operations-log entry") {
		t.Fatalf("uncovered records not named: %+v", res.Problems)
	}
	must(t, s.Close())
	s = mustOpenDir(t, dir)
	res := verifyRecords(t, s)
	if len(res.Problems) != 0 || res.Records == 0 {
		t.Fatalf("after the upgrade: %+v", res)
	}
	var actions []string
	must(t, s.Ops(0, func(o broadcast.OpEntry) error { actions = append(actions, o.Action); return nil }))
	if !slices.Equal(actions, []string{broadcast.ActionRecordsBaseline}) {
		t.Errorf("the upgrade logged %v", actions)
	}
	verifyOps(t, s, 1)
}

func rawUpdate(t *testing.T, s *Store, bucket []byte, key string, fn func([]byte) []byte) {
	t.Helper()
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		v := b.Get([]byte(key))
		if v == nil {
			t.Fatalf("no %s in %s", key, bucket)
		}
		return b.Put([]byte(key), fn(slices.Clone(v)))
	}))
}

func rawAiring(t *testing.T, s *Store, id string, fn func(*broadcast.Airing)) {
	t.Helper()
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		k := airingKey(tx, id)
		a, err := decodeAiring(id, tx.Bucket(bktAirDue).Get(k))
		if err != nil {
			return err
		}
		fn(a)
		return tx.Bucket(bktAirDue).Put(k, encodeAiring(a))
	}))
}

func rawEntry(t *testing.T, s *Store, seq uint64, fn func(*broadcast.AsRunEntry)) {
	t.Helper()
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		e, err := decodeEntry(tx.Bucket(bktAsRun).Get(u64(seq)))
		if err != nil {
			return err
		}
		fn(&e)
		return tx.Bucket(bktAsRun).Put(u64(seq), encodeEntry(&e))
	}))
}

// BenchmarkVerifyRecords is the second half of what GET /audit/verify
// does, on a store built as a broadcast builds it: a million as-run
// entries of 1,000 signing devices at 100 stations (received, ready,
// started and finished of 250 airings each), logged through AppendEvent.
// It reports the records pass alone and, beside the log pass
// (audit.VerifyLogs) of the same store, the whole verification's rate over
// the rate at which every core checks bare ed25519 signatures.
func BenchmarkVerifyRecords(b *testing.B) {
	const (
		stations   = 100
		perStation = 10
		airings    = 250 // per station
	)
	s := mustOpen(b)
	ctx := context.Background()
	seedStations(b, s, stations-1)
	var st []string
	for i := 1; i < stations; i++ {
		st = append(st, fmt.Sprintf("380%02d", i))
	}
	st = append(st, "38101")
	keys := map[string]ed25519.PrivateKey{}
	var devs []broadcast.Device
	for _, id := range st {
		for j := range perStation {
			pub, priv, err := ed25519.GenerateKey(nil)
			must(b, err)
			d := broadcast.Device{ID: fmt.Sprintf("%s-%02d", id, j), Station: id, PublicKey: pub}
			keys[d.ID], devs = priv, append(devs, d)
		}
	}
	must(b, s.AddDevices(ctx, devs, nil))
	p := seedProgramme(b, s, "p1")
	var plan []*broadcast.Airing
	for _, id := range st {
		for k := range airings {
			a := airing(fmt.Sprintf("a-%s-%03d", id, k), id, "p1", t0.Add(time.Duration(k)*3*time.Hour))
			a.Audio = p.Audio
			plan = append(plan, a)
		}
	}
	must(b, s.PutAirings(ctx, plan, nil))
	// Every device reports on every airing of its station, signed, from
	// as many goroutines as a hub has workers.
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Go(func() {
			seq := uint64(0)
			for k := range airings {
				a := plan[slices.Index(st, d.Station)*airings+k]
				for _, typ := range []broadcast.EventType{broadcast.EventReceived, broadcast.EventReady, broadcast.EventStarted, broadcast.EventFinished} {
					seq++
					ev := broadcast.Event{V: 1, ID: fmt.Sprintf("e%d", seq), Device: d.ID, Seq: seq, Airing: a.ID, Rev: 1, Event: typ, At: a.Start, ClockSynced: true}
					if typ == broadcast.EventFinished {
						ev.At, ev.StartedAt, ev.PlayedMS, ev.SHA256 = a.End(), a.Start, a.Audio.DurationMS, a.Audio.SHA256
					}
					payload, err := broadcast.SignEvent(ev, keys[d.ID])
					if err != nil {
						panic(err)
					}
					if _, err := s.AppendEvent(ctx, EventRecord{Device: d.ID, Station: d.Station, ReceivedAt: a.End().Add(time.Minute), Payload: payload, Event: ev}); err != nil {
						panic(err)
					}
				}
			}
		})
	}
	wg.Wait()
	_, env, err := broadcast.DecodeEvent(mustEntry(b, s, 1).Payload)
	must(b, err)
	var logs, records, whole time.Duration
	var ref float64
	for b.Loop() {
		b.StopTimer()
		before, _ := audittest.AllCoresVerifyRate(env.Body, time.Second)
		b.StartTimer()
		start := time.Now()
		lr, err := audit.VerifyLogs(ctx, s, 0)
		mid := time.Now()
		rr, err2 := audit.VerifyRecords(ctx, s, broadcast.DefaultPolicy())
		end := time.Now()
		all, err3 := audit.VerifyStore(ctx, s, broadcast.DefaultPolicy(), 0)
		last := time.Now()
		b.StopTimer()
		after, _ := audittest.AllCoresVerifyRate(env.Body, time.Second)
		b.StartTimer()
		if err != nil || err2 != nil || err3 != nil || !lr.OK || len(rr.Problems) > 0 || !all.OK || lr.Entries != stations*perStation*airings*4 {
			b.Fatalf("%v %v %v %+v %+v %+v", err, err2, err3, lr.Problems, rr.Problems, all.Problems)
		}
		logs, records, whole, ref = logs+mid.Sub(start), records+end.Sub(mid), whole+last.Sub(end), ref+(before+after)/2
	}
	n := float64(b.N * stations * perStation * airings * 4)
	ref /= float64(b.N)
	b.ReportMetric(n/logs.Seconds(), "entries/s-logs")
	b.ReportMetric(records.Seconds()/float64(b.N), "s-records")
	b.ReportMetric(n/logs.Seconds()/ref, "x-allcores-logs")
	b.ReportMetric(n/(logs+records).Seconds()/ref, "x-allcores-one-after-other")
	b.ReportMetric(n/whole.Seconds()/ref, "x-allcores-whole")
}

// Verification reads while the daemon writes: plans, cancellations and
// events committed meanwhile are not taken for tampering.
func TestVerifyRecordsWhileWriting(t *testing.T) {
	s, devs := recordsStore(t)
	prog, err := s.Programme("p1")
	must(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	var written atomic.Int64
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			written.Store(int64(i))
			a := airing(fmt.Sprintf("w%d", i), "38001", "p1", t0.Add(time.Duration(i+3)*time.Hour))
			a.Audio = prog.Audio
			if err := s.PutAirings(ctx, []*broadcast.Airing{a}, nil); err != nil {
				return
			}
			if _, err := s.AppendEvent(ctx, played(t, devs[i%2], a, uint64(100+i/2), a.End().Add(time.Second))); err != nil {
				return
			}
			_, _ = s.UpdateAiring(ctx, a.ID, func(a *broadcast.Airing) error { a.Cancel(t0, "test"); return nil }, nil)
		}
	}()
	// Until the writer has done 50 rounds, however fast either side runs.
	for rounds := 0; rounds < 5 || written.Load() < 50; rounds++ {
		if res := verifyRecords(t, s); len(res.Problems) > 0 {
			t.Errorf("while writing: %+v", res.Problems)
			break
		}
	}
	stop()
	<-done
	if res := verifyRecords(t, s); len(res.Problems) > 0 || res.Airings < 50 {
		t.Errorf("after: %+v", res)
	}
}
