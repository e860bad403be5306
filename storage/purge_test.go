package storage

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// A purge removes what a sealed month received once the retention is
// over, and the rest of the log still verifies, from the purge's hash, with
// new entries chaining on. What is not sealed, not old enough or already
// gone is refused; a cut that no purge records is named.
func TestPurgeAsRun(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	devs, _ := seedAiring(t, s, 1)
	loc := t0.Location()
	march, april := time.Date(2026, 3, 10, 8, 0, 0, 0, loc), time.Date(2026, 4, 10, 8, 0, 0, 0, loc)
	appendAt := func(seq uint64, at time.Time) broadcast.AsRunEntry {
		t.Helper()
		rec := event(t, devs[0], "38001", "a1", seq, broadcast.EventReceived)
		rec.ReceivedAt = at
		app, err := s.AppendEvent(ctx, rec)
		must(t, err)
		return app.Entry
	}
	var entries []broadcast.AsRunEntry
	for i, at := range []time.Time{march, march.Add(time.Hour), april, april.Add(time.Hour)} {
		entries = append(entries, appendAt(uint64(i+1), at))
	}
	const retention = 5 * 365 * 24 * time.Hour
	now := time.Date(2031, 5, 1, 9, 0, 0, 0, loc)
	refused := func(what string, err error, want string) {
		t.Helper()
		if broadcast.ErrorCode(err) != broadcast.EConflict || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v, want a conflict saying %q", what, err, want)
		}
	}

	_, err := audit.PlanPurge(ctx, s, "2026-04", loc, now, retention)
	refused("March not sealed", err, "2026-03 is not sealed")
	seal, err := audit.Seal(ctx, s, "2026-03", loc, now)
	must(t, err)
	sealOp, err := audit.SealOp(seal, "admin", now)
	must(t, err)
	_, err = s.AppendOp(ctx, sealOp)
	must(t, err)
	_, err = audit.PlanPurge(ctx, s, "2026-04", loc, time.Date(2031, 3, 1, 0, 0, 0, 0, loc), retention)
	refused("within the retention", err, "kept until 2031-03-31")

	plan, err := audit.PlanPurge(ctx, s, "2026-04", loc, now, retention)
	must(t, err)
	if plan.Upto != 2 || plan.Hash != entries[1].Hash {
		t.Fatalf("the cut is at %d %s, want the last of March's entries, 2", plan.Upto, plan.Hash)
	}
	op, err := audit.PurgeOp(plan, "admin", now)
	must(t, err)
	if _, err := s.PurgeAsRun(ctx, plan.Upto, entries[0].Hash, &op); broadcast.ErrorCode(err) != broadcast.EConflict {
		t.Fatalf("a purge with another hash than the log's: %v", err)
	}
	res, err := s.PurgeAsRun(ctx, plan.Upto, plan.Hash, &op)
	must(t, err)
	if res.Entries != 2 || op.Seq == 0 {
		t.Fatalf("purge %+v, op %d", res, op.Seq)
	}
	var left []uint64
	must(t, s.AsRun(0, func(e broadcast.AsRunEntry) error { left = append(left, e.Seq); return nil }))
	if len(left) != 2 || left[0] != 3 {
		t.Fatalf("entries left %v, want 3 4", left)
	}

	// The log goes on from where it was, and verifies from the purge.
	if e := appendAt(5, april.Add(2*time.Hour)); e.Seq != 5 || e.PrevHash != entries[3].Hash {
		t.Fatalf("entry after the purge: %+v", e)
	}
	r, err := audit.VerifyLogs(ctx, s, 0)
	must(t, err)
	if !r.OK || r.Entries != 3 || r.AsRunBase != 2 {
		t.Fatalf("verify after the purge: %+v", r)
	}
	// A device re-sending a purged event gets a duplicate's answer.
	if app, err := s.AppendEvent(ctx, event(t, devs[0], "38001", "a1", 1, broadcast.EventReceived)); err != nil || !app.Duplicate || app.Entry.Seq != 1 {
		t.Fatalf("re-sent purged event: %+v %v", app, err)
	}

	_, err = audit.PlanPurge(ctx, s, "2026-04", loc, now, retention)
	refused("purged already", err, "nothing received before 2026-04")
	_, err = audit.WriteBundle(ctx, io.Discard, s, audit.BundleSpec{Period: broadcast.Period{Name: "2026-03", Months: []broadcast.Month{"2026-03"}}, Location: loc, Now: now})
	refused("a bundle of a purged month", err, "were purged")
	var b bytes.Buffer
	_, err = audit.WriteBundle(ctx, &b, s, audit.BundleSpec{Period: broadcast.Period{Name: "2026-04", Months: []broadcast.Month{"2026-04"}}, Location: loc, Now: now})
	must(t, err)
	if r, err := audit.VerifyBundle(&b); err != nil || !r.OK || r.Entries != 3 {
		t.Fatalf("April's bundle after the purge: %+v %v", r, err)
	}

	// Entry 3 cut away as a purge would, but without one: named.
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		must(t, tx.Bucket(bktAsRun).Delete(u64(3)))
		return tx.Bucket(bktMeta).Put(metaAsRunBase, append(u64(3), entries[2].Hash[:]...))
	}))
	r, err = audit.VerifyLogs(ctx, s, 0)
	must(t, err)
	if r.OK || len(r.Problems) == 0 || r.Problems[0].Entry != 4 || !strings.Contains(r.Problems[0].Problem, "last purge") {
		t.Fatalf("a cut without a purge: %+v", r)
	}
}
