package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

func ids(as []*broadcast.Airing) string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return strings.Join(out, ",")
}

func TestAirings(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	seedStations(t, s, 2)
	day := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, t0.Location()) }

	batch := []*broadcast.Airing{
		airing("a3", "38001", "p1", day(20, 17)),
		airing("a1", "38001", "p1", day(2, 6)),
		airing("a2", "38001", "p1", day(10, 6)),
		airing("b1", "38002", "p1", day(2, 6)),
		airing("b2", "38002", "p2", day(5, 17)),
		airing("c1", "38101", "p2", day(3, 6)),
		airing("a4", "38001", "p1", time.Date(2026, 4, 1, 6, 0, 0, 0, t0.Location())),
	}
	op := &broadcast.OpEntry{Actor: "system", Action: "schedule.plan", Subject: "2026-03"}
	must(t, s.PutAirings(ctx, batch, op))
	if op.Seq != 1 {
		t.Errorf("op %+v", op)
	}
	a, err := s.Airing("a1")
	must(t, err)
	if a.Station != "38001" || !a.Start.Equal(day(2, 6)) || !a.CreatedAt.Equal(t0) {
		t.Errorf("Airing(a1) = %+v", a)
	}
	if _, err := s.Airing("zz"); !broadcast.IsNotFound(err) {
		t.Errorf("Airing(zz): %v", err)
	}

	check := func(name string, as []*broadcast.Airing, err error, want string) {
		t.Helper()
		must(t, err)
		if got := ids(as); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	as, err := s.StationMonthAirings("38001", "2026-03")
	check("StationMonthAirings(38001, 2026-03)", as, err, "a1,a2,a3")
	as, err = s.StationMonthAirings("38001", "2026-04")
	check("StationMonthAirings(38001, 2026-04)", as, err, "a4")
	as, err = s.StationAirings("38001", day(2, 6), day(20, 17))
	check("StationAirings [2nd, 20th 17h)", as, err, "a1,a2")
	as, err = s.ProgrammeAirings("p2")
	check("ProgrammeAirings(p2)", as, err, "c1,b2")

	var between []*broadcast.Airing
	must(t, s.AiringsBetween(day(2, 6), day(10, 7), func(a *broadcast.Airing) error { between = append(between, a); return nil }))
	check("AiringsBetween", between, nil, "a1,b1,c1,b2,a2")

	// Moving an airing re-indexes it everywhere.
	batch[1].Start = day(25, 6)
	must(t, s.PutAirings(ctx, batch[1:2], nil))
	as, err = s.StationMonthAirings("38001", "2026-03")
	check("after move, StationMonthAirings", as, err, "a2,a3,a1")
	between = nil
	must(t, s.AiringsBetween(day(1, 0), day(3, 0), func(a *broadcast.Airing) error { between = append(between, a); return nil }))
	check("after move, AiringsBetween", between, nil, "b1")

	moved, err := s.UpdateAiring(ctx, "a3", func(a *broadcast.Airing) error {
		a.Start = day(4, 6)
		a.Status = broadcast.StatusCancelled
		return nil
	}, &broadcast.OpEntry{Action: "airing.move", Subject: "a3"})
	must(t, err)
	if moved.Status != broadcast.StatusCancelled {
		t.Errorf("UpdateAiring returned %+v", moved)
	}
	as, err = s.StationAirings("38001", day(1, 0), day(5, 0))
	check("after UpdateAiring, StationAirings", as, err, "a3")

	boom := errors.New("frozen")
	head, _, _ := s.OpsHead()
	if _, err := s.UpdateAiring(ctx, "a2", func(a *broadcast.Airing) error { a.Start = day(30, 6); return boom }, &broadcast.OpEntry{Action: "airing.move"}); err != boom {
		t.Errorf("fn error: %v", err)
	}
	if h, _, _ := s.OpsHead(); h != head {
		t.Error("aborted airing update was logged")
	}
	if a, _ := s.Airing("a2"); !a.Start.Equal(day(10, 6)) {
		t.Error("aborted airing update changed it")
	}
	if _, err := s.UpdateAiring(ctx, "zz", func(*broadcast.Airing) error { return nil }, nil); !broadcast.IsNotFound(err) {
		t.Errorf("update of a missing airing: %v", err)
	}
	if err := s.PutAirings(ctx, []*broadcast.Airing{{ID: "x"}}, nil); broadcast.ErrorCode(err) != broadcast.EInvalid {
		t.Errorf("airing without station: %v", err)
	}

	stop := errors.New("stop")
	if err := s.AiringsBetween(day(1, 0), day(31, 0), func(*broadcast.Airing) error { return stop }); err != stop {
		t.Errorf("AiringsBetween fn error: %v", err)
	}

	for _, c := range []struct {
		f    AiringFilter
		want string
	}{
		{AiringFilter{Station: "38001", Month: "2026-03"}, "a3,a2,a1"},
		{AiringFilter{Station: "38001"}, "a3,a2,a1,a4"},
		{AiringFilter{Station: "38001", Limit: 2}, "a3,a2"},
		{AiringFilter{Programme: "p1", Month: "2026-03"}, "b1,a3,a2,a1"},
		{AiringFilter{Programme: "p1", Station: "38002"}, "b1"},
		{AiringFilter{StationPath: "38/380", Month: "2026-03"}, "b1,a3,b2,a2,a1"},
		{AiringFilter{StationPath: "38/381"}, "c1"},
		{AiringFilter{StationPath: "38", Programme: "p2"}, "c1,b2"},
		{AiringFilter{Month: "2026-04"}, "a4"},
		{AiringFilter{Month: "2026-03", Limit: 1}, "b1"},
		{AiringFilter{Status: broadcast.StatusCancelled}, "a3"},
		{AiringFilter{}, "b1,c1,a3,b2,a2,a1,a4"},
		{AiringFilter{Limit: 3}, "b1,c1,a3"},
		{AiringFilter{Station: "nowhere"}, ""},
	} {
		as, err := s.QueryAirings(c.f)
		check(fmt.Sprintf("QueryAirings(%+v)", c.f), as, err, c.want)
	}
}

// AiringsBetween reads in chunks; fn may write to the store between them
// (the dispatch loop marks airings sent) without deadlocking bbolt.
func TestAiringsBetweenChunksAndWrites(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	var batch []*broadcast.Airing
	for i := range 3*dueChunk + 7 {
		batch = append(batch, airing(fmt.Sprintf("a%04d", i), fmt.Sprintf("st%d", i%5), "p", t0.Add(time.Duration(i)*time.Minute)))
	}
	must(t, s.PutAirings(ctx, batch, nil))
	n := 0
	var last time.Time
	err := s.AiringsBetween(t0, t0.Add(24*time.Hour), func(a *broadcast.Airing) error {
		n++
		if a.Start.Before(last) {
			return fmt.Errorf("%s out of order", a.ID)
		}
		last = a.Start
		_, err := s.UpdateAiring(ctx, a.ID, func(a *broadcast.Airing) error { a.Status = broadcast.StatusSent; return nil }, nil)
		return err
	})
	must(t, err)
	if n != len(batch) {
		t.Errorf("visited %d of %d", n, len(batch))
	}
}
