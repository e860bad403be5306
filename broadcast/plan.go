package broadcast

import (
	"sort"
	"time"
)

// PlanRequest is everything planning one programme at one station depends
// on; the same request always gives the same plan.
type PlanRequest struct {
	Programme Programme
	Station   Station
	Location  *time.Location
	Existing  []*Airing // the station's airings that month (any programme), to avoid
	Earliest  time.Time // nothing is planned to start before this (now + a margin)
	Policy    Policy
	Now       time.Time // CreatedAt of the new airings
	// Makeups, when > 0, asks for that many make-up airings instead of the
	// month's premiere and replays: the month's count fell short.
	Makeups int
	// Replaces names the missed airings the make-ups stand in for, in order.
	Replaces []string
}

// PlanStation returns the premiere and replays of a programme at one station:
// 1 + MinReplays airings inside the programme's month, on the preferred
// slots, inside broadcasting hours, never overlapping another airing, spread
// over the days that are left. When fewer fit, it returns what fits; the
// caller reports the shortfall.
//
// Spreading: the days from Earliest to the month's end are cut into as many
// equal parts as airings are needed, and each airing takes the first free
// slot of its part (the premiere the first); parts with no free slot leave
// their airing to any free slot elsewhere, so a crowded month still fills.
func PlanStation(r PlanRequest) []*Airing {
	need := r.Policy.Required()
	for _, a := range r.Existing {
		if a.Programme == r.Programme.ID && a.Status != StatusCancelled {
			need-- // re-planning is a no-op for what is already planned
		}
	}
	if r.Makeups > 0 {
		need = r.Makeups
	}
	if need <= 0 {
		return nil
	}
	candidates := Candidates(r.Programme.Month, r.Location, r.Earliest, r.Programme.Audio.Duration(), r.Policy)
	taken := append([]*Airing(nil), r.Existing...)
	free := func(start time.Time) bool {
		probe := &Airing{Start: start, Audio: r.Programme.Audio}
		for _, a := range taken {
			if a.Status != StatusCancelled && a.Overlaps(probe) && !r.yields(a) {
				return false
			}
		}
		return true
	}
	var out []*Airing
	pick := func(start time.Time) {
		a := newAiring(r, start)
		out = append(out, a)
		taken = append(taken, a)
	}
	if len(candidates) == 0 {
		return nil
	}
	first, last := candidates[0], candidates[len(candidates)-1]
	span := last.Sub(first) + time.Nanosecond
	used := make([]bool, len(candidates))
	for part := 0; part < need; part++ {
		lo := first.Add(span * time.Duration(part) / time.Duration(need))
		hi := first.Add(span * time.Duration(part+1) / time.Duration(need))
		for i, c := range candidates {
			if !used[i] && !c.Before(lo) && c.Before(hi) && free(c) {
				used[i] = true
				pick(c)
				break
			}
		}
	}
	for i, c := range candidates {
		if len(out) >= need {
			break
		}
		if !used[i] && free(c) {
			used[i] = true
			pick(c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	hasPremiere := false
	for _, a := range r.Existing {
		if a.Programme == r.Programme.ID && a.Kind == KindPremiere && a.Status != StatusCancelled {
			hasPremiere = true
		}
	}
	for i, a := range out {
		switch {
		case r.Makeups > 0:
			a.Kind = KindMakeup
			if i < len(r.Replaces) {
				a.Replaces = r.Replaces[i]
			}
		case i == 0 && !hasPremiere:
			a.Kind = KindPremiere
		default:
			a.Kind = KindReplay
		}
	}
	return out
}

// yields reports whether an existing airing gives way to the programme
// being planned (Circular 39/2020: a higher priority takes a clashing slot).
// Airings inside the freeze window, or already over, never move.
func (r PlanRequest) yields(a *Airing) bool {
	return a.Priority < r.Programme.Priority && !a.Status.Final() && a.Start.Sub(r.Now) >= r.Policy.Freeze &&
		a.Status != StatusStarted
}

// Displaced lists the existing airings that a plan took the slots of: they
// must be re-planned (Reslot), not dropped.
func Displaced(plan, existing []*Airing) []*Airing {
	var out []*Airing
	for _, a := range existing {
		if a.Status == StatusCancelled || a.Status.Final() {
			continue
		}
		for _, p := range plan {
			if p.Priority > a.Priority && p.Overlaps(a) {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// Reslot finds a new start for a displaced airing: the first slot of its
// month, not before earliest, inside broadcasting hours, that overlaps
// nothing in taken. ok is false when the month has no room left.
func Reslot(a *Airing, taken []*Airing, loc *time.Location, earliest time.Time, p Policy) (time.Time, bool) {
	for _, c := range Candidates(a.Month, loc, earliest, a.Audio.Duration(), p) {
		probe := &Airing{Start: c, Audio: a.Audio}
		clash := false
		for _, b := range taken {
			if b.ID != a.ID && b.Status != StatusCancelled && b.Overlaps(probe) {
				clash = true
				break
			}
		}
		if !clash {
			return c, true
		}
	}
	return time.Time{}, false
}

func newAiring(r PlanRequest, start time.Time) *Airing {
	return &Airing{
		ID:        NewID(r.Now),
		Programme: r.Programme.ID,
		Station:   r.Station.ID,
		Month:     r.Programme.Month,
		Priority:  r.Programme.Priority,
		Title:     r.Programme.Title,
		Audio:     r.Programme.Audio,
		Start:     start,
		NotAfter:  start.Add(r.Policy.StartTolerance),
		Status:    StatusPlanned,
		CreatedAt: r.Now,
		UpdatedAt: r.Now,
	}
}

// Candidates lists the start times, in order, at which an airing of length d
// could be planned in month m: every preferred slot of every day, not before
// earliest, with the whole audio inside broadcasting hours.
//
// Daylight saving (none in Vietnam, but a deployment elsewhere may have it):
// a slot that does not exist on a day (clocks jump over it) is skipped that
// day; a slot that happens twice (clocks fall back) is taken at its first
// occurrence. Both keep the plan deterministic.
func Candidates(m Month, loc *time.Location, earliest time.Time, d time.Duration, p Policy) []time.Time {
	from, to := m.Bounds(loc)
	var out []time.Time
	for day := from; day.Before(to); day = day.AddDate(0, 0, 1) {
		for _, slot := range p.Slots {
			if !p.Hours.Contains(slot, d) {
				continue
			}
			t, ok := LocalTime(day, slot, loc)
			if !ok || t.Before(earliest) {
				continue
			}
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// LocalTime is minute-of-day on day's date in loc, with the daylight-saving
// policy of Candidates: ok is false for a wall time that does not exist, and
// a wall time that exists twice gives the earlier instant.
func LocalTime(day time.Time, minuteOfDay int, loc *time.Location) (time.Time, bool) {
	y, mo, d := day.In(loc).Date()
	h, mi := minuteOfDay/60, minuteOfDay%60
	t := time.Date(y, mo, d, h, mi, 0, 0, loc)
	if t.Hour() != h || t.Minute() != mi {
		return time.Time{}, false
	}
	// time.Date may pick either side of a fall-back; an hour earlier with the
	// same wall clock is the first occurrence.
	if e := t.Add(-time.Hour); e.Hour() == h && e.Minute() == mi && e.Day() == d {
		return e, true
	}
	return t, true
}

// InHours reports whether an airing starting at start with audio length d
// lies inside the policy's broadcasting hours in loc, on the day it starts.
func InHours(start time.Time, d time.Duration, loc *time.Location, p Policy) bool {
	l := start.In(loc)
	second := l.Hour()*3600 + l.Minute()*60 + l.Second()
	if l.Nanosecond() > 0 {
		second++
	}
	return p.Hours.containsSeconds(second, d)
}
