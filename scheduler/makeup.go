package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// makeUp keeps the month's promise after airings were lost: for every
// station-month where the airings aired and those still to come can no
// longer reach the required count, it plans make-up airings in the days
// left. Where none fits, the station-month is at risk now, not after the
// month: the metric, the log and the compliance API all say so.
//
// It is idempotent: make-ups already planned count as airings to come, so a
// second pass over the same lost airings plans nothing.
func (s *Scheduler) makeUp(ctx context.Context, now time.Time, lost []*broadcast.Airing) {
	type key struct {
		station, programme string
		month              broadcast.Month
	}
	groups := map[key][]*broadcast.Airing{}
	var order []key
	for _, a := range lost {
		k := key{a.Station, a.Programme, a.Month}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], a)
	}
	for _, k := range order {
		if ctx.Err() != nil {
			return
		}
		if err := s.makeUpStation(ctx, now, groups[k]); err != nil {
			s.log.Error("plan make-ups", "station", k.station, "month", k.month, "err", err)
		}
	}
}

func (s *Scheduler) makeUpStation(ctx context.Context, now time.Time, lost []*broadcast.Airing) error {
	first := lost[0]
	st, err := s.opts.Store.Station(first.Station)
	if err != nil {
		return fmt.Errorf("station %s: %w", first.Station, err)
	}
	existing, err := s.opts.Store.StationMonthAirings(st.ID, first.Month)
	if err != nil {
		return fmt.Errorf("airings of %s in %s: %w", st.ID, first.Month, err)
	}
	aired, coming := 0, 0
	replaced := map[string]bool{}
	for _, a := range existing {
		if a.Programme != first.Programme {
			continue
		}
		switch {
		case a.Status == broadcast.StatusAired:
			aired++
		case !a.Status.Final():
			coming++
		}
		if a.Replaces != "" {
			replaced[a.Replaces] = true
		}
	}
	short := s.opts.Policy.Required() - aired - coming
	if short <= 0 {
		return nil
	}
	var replaces []string
	for _, a := range lost {
		if !replaced[a.ID] {
			replaces = append(replaces, a.ID)
		}
	}
	prog := broadcast.Programme{ID: first.Programme, Month: first.Month, Title: first.Title, Audio: first.Audio, Priority: first.Priority}
	plan := broadcast.PlanStation(broadcast.PlanRequest{
		Programme: prog, Station: st, Location: s.location(st), Existing: existing,
		Earliest: now.Add(s.opts.PlanMargin), Policy: s.opts.Policy, Now: now,
		Makeups: short, Replaces: replaces,
	})
	if len(plan) > 0 {
		op := &broadcast.OpEntry{At: now, Actor: "system", Action: "airing.makeup", Subject: st.ID, Unit: st.Path,
			Detail: fmt.Appendf(nil, `{"programme":%q,"month":%q,"planned":%d,"short":%d}`, prog.ID, prog.Month, len(plan), short)}
		if err := s.opts.Store.PutAirings(ctx, plan, op); err != nil {
			return fmt.Errorf("store make-ups: %w", err)
		}
		s.makeups.Add(float64(len(plan)))
		s.log.Info("make-ups planned", "station", st.ID, "month", prog.Month, "programme", prog.ID, "planned", len(plan), "short", short)
		s.Touch(st.ID)
	}
	if len(plan) < short {
		s.atRisk.Inc()
		s.log.Warn("station-month at risk: no room left for make-ups", "station", st.ID, "month", prog.Month, "programme", prog.ID, "aired", aired, "coming", coming+len(plan), "required", s.opts.Policy.Required())
	}
	return nil
}

// surplusEvery is how often (on the scheduler's clock) the loop looks for
// make-ups that late evidence made unnecessary.
const surplusEvery = time.Hour

// cancelSurplus cancels make-ups that are no longer needed: a device that
// was offline sent its evidence after the make-up was planned, and the
// month is met without it. Airings inside the freeze window stay; the
// latest make-ups go first.
func (s *Scheduler) cancelSurplus(ctx context.Context, now time.Time) int {
	type key struct {
		station, programme string
		month              broadcast.Month
	}
	seen := map[key]bool{}
	var groups []key
	err := s.opts.Store.AiringsBetween(now.Add(s.opts.Policy.Freeze), now.AddDate(0, 2, 0), func(a *broadcast.Airing) error {
		k := key{a.Station, a.Programme, a.Month}
		if a.Kind == broadcast.KindMakeup && !a.Status.Final() && !seen[k] {
			seen[k] = true
			groups = append(groups, k)
		}
		return nil
	})
	if err != nil {
		s.log.Error("scan make-ups", "err", err)
		return 0
	}
	cancelled := 0
	for _, k := range groups {
		airings, err := s.opts.Store.StationMonthAirings(k.station, k.month)
		if err != nil {
			s.log.Error("scan make-ups", "station", k.station, "err", err)
			continue
		}
		aired, firm := 0, 0
		var movable []*broadcast.Airing // make-ups that may still be cancelled, by start
		for _, a := range airings {
			switch {
			case a.Programme != k.programme:
			case a.Status == broadcast.StatusAired:
				aired++
			case a.Status.Final():
			case a.Kind == broadcast.KindMakeup && a.Start.Sub(now) >= s.opts.Policy.Freeze:
				movable = append(movable, a)
			default:
				firm++
			}
		}
		keep := max(0, s.opts.Policy.Required()-aired-firm)
		var unit string // the station's path, for the operations log's scoping
		if len(movable) > keep {
			st, err := s.opts.Store.Station(k.station)
			if err != nil {
				s.log.Error("cancel surplus make-ups", "station", k.station, "err", err)
				continue
			}
			unit = st.Path
		}
		for i := len(movable) - 1; i >= keep; i-- {
			a := movable[i]
			op := &broadcast.OpEntry{At: now, Actor: "system", Action: "airing.cancel", Subject: a.ID, Unit: unit, Detail: []byte(`{"reason":"make-up no longer needed"}`)}
			_, err := s.opts.Store.UpdateAiring(ctx, a.ID, func(a *broadcast.Airing) error {
				if !a.Status.Final() {
					a.Cancel(now, "make-up no longer needed: the month is met")
				}
				return nil
			}, op)
			if err != nil {
				s.log.Error("cancel a surplus make-up", "airing", a.ID, "err", err)
				continue
			}
			cancelled++
			s.log.Info("make-up cancelled: the month is met", "airing", a.ID, "station", k.station, "month", k.month)
			s.Touch(k.station)
		}
	}
	return cancelled
}
