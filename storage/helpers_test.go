package storage

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// t0 is the tests' "now": a Monday morning in Thanh Hoa.
var t0 = time.Date(2026, 3, 2, 6, 0, 0, 0, time.FixedZone("ICT", 7*3600))

// mustOpen opens a store on a fresh temporary directory and closes it when
// the test ends.
func mustOpen(tb testing.TB) *Store {
	tb.Helper()
	return mustOpenDir(tb, tb.TempDir())
}

func mustOpenDir(tb testing.TB, dir string) *Store {
	tb.Helper()
	s, err := Open(dir, Options{Policy: broadcast.DefaultPolicy(), Now: func() time.Time { return t0 }})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// seedStations creates a province 38, district 380 with communes
// 38001..3800n, and a district 381 with commune 38101.
func seedStations(tb testing.TB, s *Store, n int) []broadcast.Station {
	tb.Helper()
	units := []broadcast.Unit{
		{Code: "38", Name: "Thanh Hóa", Level: broadcast.LevelProvince, Path: "38"},
		{Code: "380", Name: "TP Thanh Hóa", Level: broadcast.LevelDistrict, Parent: "38", Path: "38/380"},
		{Code: "381", Name: "Bỉm Sơn", Level: broadcast.LevelDistrict, Parent: "38", Path: "38/381"},
		{Code: "38101", Name: "Xã B", Level: broadcast.LevelCommune, Parent: "381", Path: "38/381/38101"},
	}
	stations := []broadcast.Station{{ID: "38101", Unit: "38101", Name: "Xã B", Path: "38/381/38101", Timezone: broadcast.DefaultTimezone}}
	for i := 1; i <= n; i++ {
		code := fmt.Sprintf("380%02d", i)
		units = append(units, broadcast.Unit{Code: code, Name: "Xã " + code, Level: broadcast.LevelCommune, Parent: "380", Path: "38/380/" + code})
		stations = append(stations, broadcast.Station{ID: code, Unit: code, Name: "Xã " + code, Path: "38/380/" + code, Timezone: broadcast.DefaultTimezone})
	}
	_, err := s.ImportUnits(context.Background(), units, stations, nil)
	must(tb, err)
	return stations
}

func addDevices(tb testing.TB, s *Store, station string, n int) []string {
	tb.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("d-%s-%d", station, i)
		must(tb, s.AddDevice(context.Background(), broadcast.Device{ID: id, Station: station, SecretHash: "$7$x"}, nil))
		ids = append(ids, id)
	}
	return ids
}

// seedProgramme stores a blob and a programme of unit 380 naming it.
func seedProgramme(tb testing.TB, s *Store, id string) broadcast.Programme {
	tb.Helper()
	sha, size, err := s.PutBlob(bytes.NewReader([]byte("audio of " + id)))
	must(tb, err)
	p := broadcast.Programme{
		ID: id, Unit: "380", UnitPath: "38/380", Month: "2026-03", Title: "Chuyển đổi số " + id,
		Audio:  broadcast.Audio{SHA256: sha, Size: size, Format: "mp3", Type: "audio/mpeg", DurationMS: 600_000},
		Status: broadcast.ProgrammeDraft, UploadedBy: "tok1",
	}
	must(tb, s.CreateProgramme(context.Background(), p, nil))
	return p
}

func airing(id, station, prog string, start time.Time) *broadcast.Airing {
	return &broadcast.Airing{
		ID: id, Programme: prog, Station: station, Month: broadcast.MonthOf(start, start.Location()),
		Kind: broadcast.KindReplay, Title: "t", Start: start, NotAfter: start.Add(time.Hour),
		Audio:  broadcast.Audio{SHA256: "aa", DurationMS: 600_000},
		Status: broadcast.StatusSent,
	}
}

// event builds a record as the devices package would, with an unsigned
// payload.
func event(tb testing.TB, device, station, airingID string, seq uint64, typ broadcast.EventType) EventRecord {
	tb.Helper()
	ev := broadcast.Event{V: 1, ID: fmt.Sprintf("e%d", seq), Device: device, Seq: seq, Airing: airingID, Rev: 1, Event: typ, At: t0, ClockSynced: true}
	payload, err := broadcast.SignEvent(ev, nil)
	must(tb, err)
	return EventRecord{Device: device, Station: station, ReceivedAt: t0.Add(time.Duration(seq) * time.Second), Payload: payload, Event: ev}
}

// verifyChain walks the as-run log, recomputing every hash and checking that
// each entry links to the one before.
func verifyChain(tb testing.TB, s *Store) uint64 {
	tb.Helper()
	var prev broadcast.Hash
	var n uint64
	must(tb, s.AsRun(0, func(e broadcast.AsRunEntry) error {
		n++
		if e.Seq != n {
			return fmt.Errorf("entry %d has seq %d", n, e.Seq)
		}
		if e.PrevHash != prev {
			return fmt.Errorf("entry %d: prev hash %s, want %s", e.Seq, e.PrevHash, prev)
		}
		if got := e.ChainHashIn(s.forms); got != e.Hash {
			return fmt.Errorf("entry %d: hash %s, recomputed %s", e.Seq, e.Hash, got)
		}
		prev = e.Hash
		return nil
	}))
	seq, head, err := s.AsRunHead()
	must(tb, err)
	if seq != n || head != prev {
		tb.Fatalf("head %d %s, log ends at %d %s", seq, head, n, prev)
	}
	return n
}

type boltTx = bolt.Tx
