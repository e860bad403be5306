package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// ActionPurge is the operations-log action of a purge of the as-run log;
// its subject is the first month kept, its detail a PurgeRecord.
const ActionPurge = "evidence.purge"

// PurgeRecord is what a purge removed: every as-run entry up to Upto, the
// entry received last before Before began. The log goes on chaining from
// Hash, and a verifier takes the log's start from the last such record.
type PurgeRecord struct {
	Before    broadcast.Month `json:"before"`
	TimeZone  string          `json:"time_zone"`
	Upto      uint64          `json:"asrun_upto"`
	Hash      broadcast.Hash  `json:"asrun_hash"`
	Retention string          `json:"retention"`
}

// PurgeSource is what PlanPurge reads.
type PurgeSource interface {
	AsRun(after uint64, fn func(broadcast.AsRunEntry) error) error
	AsRunBase() (uint64, broadcast.Hash, error)
	Ops(after uint64, fn func(broadcast.OpEntry) error) error
}

// PlanPurge decides what a purge of the evidence received before month
// before (in loc) would remove, and refuses (broadcast.EConflict), saying
// why, unless:
//
//   - every month it removes ended at least retention before now: the
//     evidence is kept that long (docs/design.md, "Compliance");
//   - every month it removes is sealed: its chain heads are in the
//     operations log and its bundle could be exported, so that what is
//     purged was evidence someone could keep;
//   - there is something to remove.
//
// The cut is the last entry received before before's first instant: what
// arrived in a sealed month's grace days for its airings goes with it, and
// before's own bundle stays whole.
func PlanPurge(ctx context.Context, src PurgeSource, before broadcast.Month, loc *time.Location, now time.Time, retention time.Duration) (PurgeRecord, error) {
	if loc == nil {
		loc = time.UTC
	}
	rec := PurgeRecord{Before: before, TimeZone: loc.String(), Retention: retention.String()}
	start, _ := before.Bounds(loc)
	if start.IsZero() {
		return rec, broadcast.FieldError(broadcast.EInvalid, "before", "month %q: want YYYY-MM", before)
	}
	if keepUntil := start.Add(retention); now.Before(keepUntil) {
		return rec, broadcast.Errorf(broadcast.EConflict, "the evidence received before %s is kept until %s (retention %s)",
			before, keepUntil.In(loc).Format(time.DateOnly), retention)
	}
	base, baseHash, err := src.AsRunBase()
	if err != nil {
		return rec, fmt.Errorf("plan purge: %w", err)
	}
	rec.Upto, rec.Hash = base, baseHash
	var first time.Time
	n := 0
	err = src.AsRun(base, func(e broadcast.AsRunEntry) error {
		if !e.ReceivedAt.Before(start) {
			return errBeyondHead
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if first.IsZero() {
			first = e.ReceivedAt
		}
		rec.Upto, rec.Hash = e.Seq, e.Hash
		return nil
	})
	if err != nil && !errors.Is(err, errBeyondHead) {
		return rec, fmt.Errorf("plan purge: as-run log: %w", err)
	}
	if rec.Upto == base {
		return rec, broadcast.Errorf(broadcast.EConflict, "nothing received before %s is left to purge", before)
	}
	sealed := map[string]bool{}
	err = src.Ops(0, func(o broadcast.OpEntry) error {
		if o.Action == ActionSeal {
			sealed[o.Subject] = true
		}
		return nil
	})
	if err != nil {
		return rec, fmt.Errorf("plan purge: operations log: %w", err)
	}
	for t := first; t.Before(start); {
		m := broadcast.MonthOf(t, loc)
		if !sealed[string(m)] {
			return rec, broadcast.Errorf(broadcast.EConflict, "month %s is not sealed: seal it (POST /api/v1/audit/seal?period=%s) and keep its bundle before purging", m, m)
		}
		_, t = m.Bounds(loc)
	}
	return rec, nil
}

// PurgeOp is the operations-log entry that records rec, by actor.
func PurgeOp(rec PurgeRecord, actor string, at time.Time) (broadcast.OpEntry, error) {
	detail, err := json.Marshal(rec)
	if err != nil {
		return broadcast.OpEntry{}, fmt.Errorf("purge before %s: %w", rec.Before, err)
	}
	return broadcast.OpEntry{At: at, Actor: actor, Action: ActionPurge, Subject: string(rec.Before), Detail: detail}, nil
}

// purgeCheck follows the purges of the operations log, for VerifyLogs: a
// log that starts after entry 0 must start where the last purge said.
type purgeCheck struct {
	last *PurgeRecord
	bad  []Problem
}

func (c *purgeCheck) op(o broadcast.OpEntry) {
	if o.Action != ActionPurge {
		return
	}
	var rec PurgeRecord
	if err := json.Unmarshal(o.Detail, &rec); err != nil {
		c.bad = append(c.bad, Problem{Log: "oplog", Entry: o.Seq, Problem: "its purge record is not valid JSON: " + err.Error()})
		return
	}
	c.last = &rec
}

// start judges the as-run log's start, base and its hash.
func (c *purgeCheck) start(base uint64, hash broadcast.Hash) []Problem {
	switch {
	case base == 0 && c.last == nil:
	case c.last == nil:
		c.bad = append(c.bad, Problem{Log: "asrun", Entry: base + 1, Problem: fmt.Sprintf("the log starts after entry %d, and no purge in the operations log says so: entries were cut away", base)})
	case c.last.Upto != base || c.last.Hash != hash:
		c.bad = append(c.bad, Problem{Log: "asrun", Entry: base + 1, Problem: fmt.Sprintf("the log starts after entry %d, but the last purge (before %s) removed up to entry %d", base, c.last.Before, c.last.Upto)})
	}
	return c.bad
}

// LastPurge returns the last purge of the operations log and its entry;
// ok is false when the as-run log was never purged.
func LastPurge(src interface {
	Ops(after uint64, fn func(broadcast.OpEntry) error) error
}) (rec PurgeRecord, op broadcast.OpEntry, ok bool, err error) {
	err = src.Ops(0, func(o broadcast.OpEntry) error {
		if o.Action != ActionPurge {
			return nil
		}
		if err := json.Unmarshal(o.Detail, &rec); err != nil {
			return fmt.Errorf("purge record of operation %d: %w", o.Seq, err)
		}
		op, ok = o, true
		return nil
	})
	return rec, op, ok, err
}

// purged refuses a period that begins before the last purge's month: its
// as-run entries are gone, and a bundle of what is left would pass for the
// whole.
func purged(src LogSource, p broadcast.Period) error {
	if base, _, err := src.AsRunBase(); err != nil || base == 0 {
		return err
	}
	rec, op, ok, err := LastPurge(src)
	if err != nil || !ok || len(p.Months) == 0 || p.Months[0] >= rec.Before {
		return err
	}
	return broadcast.Errorf(broadcast.EConflict, "the as-run entries received before %s were purged on %s (operation %d, retention %s); the bundle exported when %s was sealed is its evidence",
		rec.Before, op.At.Format(time.DateOnly), op.Seq, rec.Retention, p.Months[0])
}
