package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// SealRecord is the detail of a "period.seal" operations-log entry: where a
// closed month's evidence lies in both logs, by the same rule as a bundle of
// the month, and the whole logs' heads when it was sealed. Once it is in the
// operations log, later entries chain over it: changing the month's evidence
// afterwards means rewriting both logs from the month on, and the seal's
// hashes — kept by auditors, repeated in every later bundle of the period —
// give it away.
type SealRecord struct {
	Period     string    `json:"period"`
	TimeZone   string    `json:"time_zone"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	GraceUntil time.Time `json:"grace_until"`
	AsRun      Segment   `json:"asrun"`
	Oplog      Segment   `json:"oplog"`
	AsRunHead  Head      `json:"asrun_head"`
	OplogHead  Head      `json:"oplog_head"`
	// Figures is the hash of the month's per-station figures, computed from
	// the sealed segment (figures.go); nil for the seals made before it.
	Figures *SealFigures `json:"figures,omitempty"`
}

// Seal computes the seal of month as of now; the caller appends it to the
// operations log (action ActionSeal, subject the month, detail the record
// as JSON). It refuses, with a broadcast.EConflict error, a month whose
// grace has not ended — entries may still arrive for it, and a seal must cut
// the log where the month's bundle does — and a month already sealed.
//
// A purge (purge.go) removes only what sealed months received, once the
// retention is over, and keeps the hash the rest chains from.
func Seal(ctx context.Context, src LogSource, month broadcast.Month, loc *time.Location, now time.Time) (SealRecord, error) {
	rec, _, err := SealWithFigures(ctx, src, month, loc, now, nil, nil)
	return rec, err
}

// SealWithFigures is Seal that also computes the month's per-station figures
// from the sealed segment, over plan (every station and the month's
// airings), the way a bundle's verifier recomputes them, and records their
// hash in the seal (Figures); the figures come back with their salts under
// key, for the daemon to keep beside the seal. A nil plan computes none.
func SealWithFigures(ctx context.Context, src LogSource, month broadcast.Month, loc *time.Location, now time.Time, plan *Plan, key []byte) (SealRecord, []SealedFigure, error) {
	rec, rp, err := seal(ctx, src, month, loc, now, plan)
	if err != nil || rp == nil {
		return rec, nil, err
	}
	figs := rp.figures(plan.Stations, rp.seg.w.until)
	out := make([]SealedFigure, len(figs))
	leaves := make([]broadcast.Hash, len(figs))
	for i, f := range figs {
		out[i] = SealedFigure{Figure: f, Salt: FigureSalt(key, month, f.Station), Index: i}
		leaves[i] = out[i].Leaf()
	}
	rec.Figures = &SealFigures{Root: FiguresRoot(leaves), Stations: len(out)}
	return rec, out, nil
}

func seal(ctx context.Context, src LogSource, month broadcast.Month, loc *time.Location, now time.Time, plan *Plan) (SealRecord, *monthReplay, error) {
	if loc == nil {
		loc = time.UTC
	}
	win, err := periodWindow(broadcast.Period{Name: string(month), Months: []broadcast.Month{month}}, loc)
	if err != nil {
		return SealRecord{}, nil, fmt.Errorf("seal %s: %w", month, err)
	}
	if now.Before(win.until) {
		return SealRecord{}, nil, broadcast.Errorf(broadcast.EConflict,
			"month %s can be sealed from %s: entries received up to %d days after its end still belong to it",
			month, win.until.In(loc).Format(time.RFC3339), int(BundleGrace.Hours()/24))
	}
	rec := SealRecord{Period: string(month), TimeZone: loc.String(), From: win.from, To: win.to, GraceUntil: win.until}
	if rec.AsRunHead.Seq, rec.AsRunHead.Hash, err = src.AsRunHead(); err != nil {
		return SealRecord{}, nil, fmt.Errorf("seal %s: %w", month, err)
	}
	if rec.OplogHead.Seq, rec.OplogHead.Hash, err = src.OpsHead(); err != nil {
		return SealRecord{}, nil, fmt.Errorf("seal %s: %w", month, err)
	}
	seg := segmenter{w: win}
	var rp *monthReplay
	if plan != nil {
		devices := map[string]int{}
		for _, st := range plan.Stations {
			devices[st.ID] = st.Devices
		}
		if rp, err = newMonthReplay(month, loc, plan, devices); err != nil {
			return SealRecord{}, nil, fmt.Errorf("seal %s: %w", month, err)
		}
	}
	n := 0
	err = src.AsRun(0, func(e broadcast.AsRunEntry) error {
		if e.Seq > rec.AsRunHead.Seq {
			return errBeyondHead
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if seg.take(e.Seq, e.ReceivedAt, e.PrevHash, e.Hash) && rp != nil && e.Unmatched == "" {
			rp.applyEvent(&e)
		}
		if seg.over {
			return errBeyondHead
		}
		return nil
	})
	if err != nil && !errors.Is(err, errBeyondHead) {
		return SealRecord{}, nil, fmt.Errorf("seal %s: as-run log: %w", month, err)
	}
	rec.AsRun = seg.segment()
	var sealed *broadcast.OpEntry
	opSeg := segmenter{w: win}
	err = src.Ops(0, func(o broadcast.OpEntry) error {
		if o.Seq > rec.OplogHead.Seq {
			return errBeyondHead
		}
		if o.Action == ActionSeal && o.Subject == string(month) && sealed == nil {
			sealed = &o
		}
		opSeg.take(o.Seq, o.At, o.PrevHash, o.Hash)
		return nil
	})
	if err != nil && !errors.Is(err, errBeyondHead) {
		return SealRecord{}, nil, fmt.Errorf("seal %s: operations log: %w", month, err)
	}
	if sealed != nil {
		return SealRecord{}, nil, broadcast.Errorf(broadcast.EConflict, "month %s is already sealed (operation %d at %s by %s)",
			month, sealed.Seq, sealed.At.In(loc).Format(time.RFC3339), sealed.Actor)
	}
	rec.Oplog = opSeg.segment()
	return rec, rp, nil
}

// SealOp is the operations-log entry that records rec, by actor.
func SealOp(rec SealRecord, actor string, at time.Time) (broadcast.OpEntry, error) {
	detail, err := json.Marshal(rec)
	if err != nil {
		return broadcast.OpEntry{}, fmt.Errorf("seal %s: %w", rec.Period, err)
	}
	return broadcast.OpEntry{At: at, Actor: actor, Action: ActionSeal, Subject: rec.Period, Detail: detail}, nil
}
