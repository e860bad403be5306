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
	base := opsSeq(t, s)
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
	if op.Seq != base+1 || len(op.Records) != len(batch) {
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

func TestUpdateAirings(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	seedStations(t, s, 2)
	day := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, t0.Location()) }
	var plan []*broadcast.Airing
	for i, st := range []string{"38001", "38002", "38101"} {
		a := airing(fmt.Sprintf("a%d", i), st, "p1", day(10, 6))
		a.Status = broadcast.StatusPlanned
		plan = append(plan, a)
	}
	must(t, s.PutAirings(ctx, plan, nil))
	base := opsSeq(t, s)
	status := func(id string) broadcast.Status {
		t.Helper()
		a, err := s.Airing(id)
		must(t, err)
		return a.Status
	}
	markSent := func(a *broadcast.Airing) error {
		a.Status = broadcast.StatusSent
		return nil
	}

	// One transaction (one fsync), one op entry, in the order asked.
	txID := func() (id int) {
		_ = s.db.View(func(tx *boltTx) error { id = tx.ID(); return nil })
		return id
	}
	before := txID()
	op := &broadcast.OpEntry{Actor: "system", Action: "schedule.send", Subject: "38"}
	got, err := s.UpdateAirings(ctx, []string{"a2", "a0", "a1"}, markSent, op)
	must(t, err)
	if n := txID() - before; n != 1 {
		t.Errorf("%d write transactions", n)
	}
	if ids(got) != "a2,a0,a1" {
		t.Errorf("returned %s", ids(got))
	}
	for _, a := range got {
		if a.Status != broadcast.StatusSent || !a.UpdatedAt.Equal(t0) || status(a.ID) != broadcast.StatusSent {
			t.Errorf("%s: %s, updated %s", a.ID, a.Status, a.UpdatedAt)
		}
	}
	// Marking sent changes no plan: the entry lists no records.
	if op.Seq != base+1 || len(op.Records) != 0 {
		t.Errorf("op %+v", op)
	}
	verifyOps(t, s, base+1)

	// All or nothing: fn's error aborts the batch and comes back as is.
	boom := errors.New("boom")
	n := 0
	_, err = s.UpdateAirings(ctx, []string{"a0", "a1", "a2"}, func(a *broadcast.Airing) error {
		if n++; n == 2 {
			return boom
		}
		a.Status = broadcast.StatusCancelled
		return nil
	}, &broadcast.OpEntry{Actor: "system", Action: "schedule.cancel"})
	if err != boom {
		t.Errorf("fn error: %v", err)
	}
	if status("a0") != broadcast.StatusSent {
		t.Errorf("a0 was changed by an aborted batch")
	}
	verifyOps(t, s, base+1)

	// An unknown id: ENotFound, nothing stored.
	_, err = s.UpdateAirings(ctx, []string{"a0", "nope"}, func(a *broadcast.Airing) error {
		a.Status = broadcast.StatusCancelled
		return nil
	}, &broadcast.OpEntry{Actor: "system", Action: "schedule.cancel"})
	if broadcast.ErrorCode(err) != broadcast.ENotFound || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown id: %v", err)
	}
	if status("a0") != broadcast.StatusSent {
		t.Errorf("a0 was changed by a batch with an unknown id")
	}
	verifyOps(t, s, base+1)

	// An invalid result aborts too.
	_, err = s.UpdateAirings(ctx, []string{"a0", "a1"}, func(a *broadcast.Airing) error {
		if a.ID == "a1" {
			a.ID = "other"
		}
		a.Status = broadcast.StatusCancelled
		return nil
	}, nil)
	if broadcast.ErrorCode(err) != broadcast.EInvalid || status("a0") != broadcast.StatusSent {
		t.Errorf("id change: %v", err)
	}

	// A move is re-indexed; an id given twice sees its first update.
	got, err = s.UpdateAirings(ctx, []string{"a0", "a0"}, func(a *broadcast.Airing) error {
		a.Start = a.Start.Add(24 * time.Hour)
		a.Title += "+"
		return nil
	}, nil)
	must(t, err)
	if len(got) != 2 || got[0].Title != "t+" || got[1].Title != "t++" || got[0] == got[1] {
		t.Errorf("twice: %+v", got)
	}
	if in, _ := s.StationAirings("38001", day(12, 0), day(13, 0)); ids(in) != "a0" {
		t.Errorf("moved airing not found at its new time: %q", ids(in))
	}
	if in, _ := s.StationAirings("38001", day(10, 0), day(11, 0)); len(in) != 0 {
		t.Errorf("moved airing still at its old time: %q", ids(in))
	}
	var due []string
	must(t, s.AiringsBetween(day(1, 0), day(31, 0), func(a *broadcast.Airing) error {
		due = append(due, a.ID+"@"+fmt.Sprint(a.Start.In(t0.Location()).Day()))
		return nil
	}))
	if strings.Join(due, ",") != "a1@10,a2@10,a0@12" {
		t.Errorf("due index: %v", due)
	}

	// Nothing to do: no transaction, no op.
	op = &broadcast.OpEntry{Actor: "system", Action: "schedule.send"}
	if got, err := s.UpdateAirings(ctx, nil, markSent, op); err != nil || got != nil || op.Seq != 0 {
		t.Errorf("no ids: %v %v %+v", got, err, op)
	}
	// The move, which changed a plan, was logged with the record's hash.
	verifyOps(t, s, base+2)
	var last broadcast.OpEntry
	must(t, s.Ops(base+1, func(o broadcast.OpEntry) error { last = o; return nil }))
	if last.Action != broadcast.ActionRecords || len(last.Records) != 1 || last.Records[0].Key != "airing/a0" {
		t.Errorf("the move's entry: %+v", last)
	}
}

// A status change rewrites the record and its summary only: the other index
// entries are not written again (a Put dirties its page even when the value
// is the same).
func TestUpdateAiringLeavesIndexesAlone(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	seedStations(t, s, 1)
	var plan []*broadcast.Airing
	for i := range 2000 {
		plan = append(plan, airing(fmt.Sprintf("a%04d", i), "38001", fmt.Sprintf("p%d", i%7), t0.Add(time.Duration(i)*time.Minute)))
	}
	must(t, s.PutAirings(ctx, plan, nil))
	written := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }
	before := written()
	_, err := s.UpdateAirings(ctx, []string{"a1000", "a1001", "a1002"}, func(a *broadcast.Airing) error {
		a.Status = broadcast.StatusReceived
		return nil
	}, nil)
	must(t, err)
	// The record's leaf and its branch path in air_due, the summaries'
	// leaf and branch in air_sm, and the root pages of the buckets: no leaf
	// of airings, air_st, air_prog.
	t.Logf("%d pages", written()-before)
	if w := written() - before; w > 6 {
		t.Errorf("a status change of 3 adjacent airings wrote %d pages", w)
	}
}
