package storage

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// summaryOf is what a station-month's summaries must say: each airing's
// own Summary, read back from its record.
func summaryOf(t *testing.T, s *Store, ids ...string) []broadcast.AiringSummary {
	t.Helper()
	var out []broadcast.AiringSummary
	for _, id := range ids {
		a, err := s.Airing(id)
		must(t, err)
		out = append(out, a.Summary())
	}
	return out
}

func checkSummaries(t *testing.T, s *Store, station string, month broadcast.Month, ids ...string) {
	t.Helper()
	got, err := s.StationMonthSummaries(station, month)
	must(t, err)
	want := summaryOf(t, s, ids...)
	for i := range want { // times decode in UTC; the instant is what counts
		want[i].Start, want[i].NotAfter = want[i].Start.UTC(), want[i].NotAfter.UTC()
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("summaries of %s in %s:\n got %+v\nwant %+v", station, month, got, want)
	}
}

// Every way an airing changes (an event, a status update, a move to
// another month) leaves its station-months' summaries equal to what the
// airing says, in the same transaction.
func TestSummariesFollowTheAiring(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	devs, a := seedAiring(t, s, 2)
	b := airing("a2", "38001", "p1", t0.Add(48*time.Hour))
	must(t, s.PutAirings(ctx, []*broadcast.Airing{b}, nil))
	checkSummaries(t, s, "38001", "2026-03", "a1", "a2")

	for i, typ := range []broadcast.EventType{broadcast.EventReceived, broadcast.EventStarted} {
		_, err := s.AppendEvent(ctx, event(t, devs[0], "38001", "a1", uint64(i+1), typ))
		must(t, err)
	}
	fin := event(t, devs[1], "38001", "a1", 1, broadcast.EventFinished)
	fin.Event.StartedAt, fin.Event.PlayedMS, fin.Event.SHA256 = a.Start, a.Audio.DurationMS, a.Audio.SHA256
	fin.ReceivedAt = a.Start.Add(a.Audio.Duration() + time.Second)
	_, err := s.AppendEvent(ctx, fin)
	must(t, err)
	checkSummaries(t, s, "38001", "2026-03", "a1", "a2")
	sums, err := s.StationMonthSummaries("38001", "2026-03")
	must(t, err)
	if got := sums[0].Entries; !reflect.DeepEqual(got, []uint64{1, 2, 3}) {
		t.Errorf("entries behind a1: %v, want 1 2 3", got)
	}

	_, err = s.UpdateAirings(ctx, []string{"a2"}, func(a *broadcast.Airing) error {
		a.Status, a.Reason = broadcast.StatusMissed, broadcast.ReasonNoFinish
		a.Devices = map[string]*broadcast.DeviceAiring{devs[0]: {Status: broadcast.StatusFailed, Reason: "power"}}
		return nil
	}, nil)
	must(t, err)
	checkSummaries(t, s, "38001", "2026-03", "a1", "a2")
	if sums, _ := s.StationMonthSummaries("38001", "2026-03"); len(sums) != 2 || !reflect.DeepEqual(sums[1].Causes, []broadcast.Cause{{Reason: "power", Devices: 1}}) {
		t.Errorf("a2's causes: %+v", sums)
	}

	// Moved into April: March forgets it, April has it.
	_, err = s.UpdateAiring(ctx, "a2", func(a *broadcast.Airing) error {
		a.Start, a.Month = time.Date(2026, 4, 3, 6, 0, 0, 0, t0.Location()), "2026-04"
		return nil
	}, nil)
	must(t, err)
	checkSummaries(t, s, "38001", "2026-03", "a1")
	checkSummaries(t, s, "38001", "2026-04", "a2")
}

// StationMonths reads stations × months in one pass, the empty ones too,
// with the enabled devices, whatever order the months come in.
func TestStationMonths(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	seedStations(t, s, 3)
	addDevices(t, s, "38002", 2)
	var plan []*broadcast.Airing
	for _, st := range []string{"38001", "38002", "38003"} {
		for _, day := range []int{3, 40, 70} { // March, April, May
			plan = append(plan, airing(st+"-"+time.Duration(day).String(), st, "p", t0.Add(time.Duration(day)*24*time.Hour)))
		}
	}
	must(t, s.PutAirings(ctx, plan, nil))
	type row struct {
		station string
		month   broadcast.Month
		n, devs int
	}
	for _, months := range [][]broadcast.Month{{"2026-02", "2026-03", "2026-05"}, {"2026-05", "2026-03"}} {
		var got []row
		must(t, s.StationMonths([]string{"38002", "38101", "38001"}, months, func(st string, m broadcast.Month, sums []broadcast.AiringSummary, devs int) error {
			for _, x := range sums {
				if x.Start.Format("2006-01") != string(m) {
					t.Errorf("%s in %s: summary of %s", st, m, x.Start)
				}
			}
			got = append(got, row{st, m, len(sums), devs})
			return nil
		}))
		var want []row
		for _, st := range []string{"38002", "38101", "38001"} {
			for _, m := range months {
				n := 1
				if st == "38101" || m == "2026-02" {
					n = 0
				}
				want = append(want, row{st, m, n, map[string]int{"38002": 2}[st]})
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("months %v:\n got %v\nwant %v", months, got, want)
		}
	}
}

// A schema 2 file has no summaries; opening it writes them.
func TestSchema2GainsSummaries(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenDir(t, dir)
	_, _ = seedAiring(t, s, 1)
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		sm := tx.Bucket(bktAirSM)
		var keys [][]byte
		must(t, sm.ForEach(func(k, _ []byte) error { keys = append(keys, append([]byte(nil), k...)); return nil }))
		for _, k := range keys {
			must(t, sm.Put(k, nil))
		}
		return tx.Bucket(bktMeta).Put([]byte("schema"), []byte("2"))
	}))
	if _, err := s.StationMonthSummaries("38001", "2026-03"); err == nil {
		t.Fatal("an empty summary decoded")
	}
	must(t, s.Close())
	s = mustOpenDir(t, dir)
	checkSummaries(t, s, "38001", "2026-03", "a1")
}

func TestSummaryCodec(t *testing.T) {
	for _, sum := range []broadcast.AiringSummary{
		{ID: "a"},
		{ID: "a1", Kind: broadcast.KindPremiere, Start: t0.UTC(), NotAfter: t0.Add(time.Hour).UTC(), Status: broadcast.StatusAired, Aired: 3, Entries: []uint64{7, 9, 1 << 40}},
		{ID: "a2", Kind: "new-kind", Start: t0.UTC(), Status: "odd", Reason: "not a symbol", Causes: []broadcast.Cause{{Reason: "power", Devices: 2}, {Reason: "mine", Devices: 1}}},
	} {
		got, err := decodeSummary(encodeSummary(sum))
		if err != nil || !reflect.DeepEqual(got, sum) {
			t.Errorf("round trip of %+v: %+v, %v", sum, got, err)
		}
	}
}

// FuzzDecodeSummary: whatever the bytes, a summary or an error, and what
// decodes encodes back to the same bytes.
func FuzzDecodeSummary(f *testing.F) {
	f.Add(encodeSummary(broadcast.AiringSummary{ID: "a1", Kind: broadcast.KindReplay, Start: t0, NotAfter: t0.Add(time.Hour), Status: broadcast.StatusMissed,
		Reason: "no_finish", Aired: 1, Entries: []uint64{3, 5}, Causes: []broadcast.Cause{{Reason: "power", Devices: 1}}}))
	f.Add([]byte{summaryVersion, 1, 'a', 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		sum, err := decodeSummary(b)
		if err != nil {
			return
		}
		again, err := decodeSummary(encodeSummary(sum))
		if err != nil || !reflect.DeepEqual(again, sum) {
			t.Fatalf("%+v re-encoded decodes to %+v, %v", sum, again, err)
		}
	})
}
