package broadcast

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func hcm(t testing.TB) *time.Location {
	loc, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestPlanStationSpreadsOverTheMonth(t *testing.T) {
	loc := hcm(t)
	p := DefaultPolicy()
	prog := Programme{ID: "P1", Month: "2026-12", Title: "Chuyển đổi số tháng 12/2026", Audio: Audio{SHA256: "x", DurationMS: 900_000}}
	now := mustTime(t, "2026-11-20T09:00:00+07:00")
	plan := PlanStation(PlanRequest{Programme: prog, Station: Station{ID: "14755"}, Location: loc, Earliest: now, Policy: p, Now: now})
	if len(plan) != 4 {
		t.Fatalf("planned %d airings, want 1 premiere + 3 replays", len(plan))
	}
	if plan[0].Kind != KindPremiere || plan[0].Start.In(loc).Day() != 1 {
		t.Errorf("premiere %s on %v, want the 1st of the month", plan[0].Kind, plan[0].Start.In(loc))
	}
	days := map[int]bool{}
	for i, a := range plan {
		days[a.Start.In(loc).Day()] = true
		if i > 0 && a.Start.Sub(plan[i-1].Start) < 5*24*time.Hour {
			t.Errorf("airings %d and %d are %v apart; want them spread over the month", i-1, i, a.Start.Sub(plan[i-1].Start))
		}
		if a.NotAfter != a.Start.Add(p.StartTolerance) || a.Status != StatusPlanned || a.Month != "2026-12" {
			t.Errorf("airing %+v", a)
		}
	}
	if len(days) != 4 {
		t.Errorf("airings on %d distinct days, want 4", len(days))
	}
}

// TestPlanProperties checks, over random months, policies, audio lengths,
// start dates and time zones (with and without daylight saving), that every
// plan keeps the rules: enough airings when the month has room, inside
// broadcasting hours, no overlap with each other or with what was there, and
// planning again adds nothing.
func TestPlanProperties(t *testing.T) {
	zones := []string{"Asia/Ho_Chi_Minh", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"}
	r := rand.New(rand.NewPCG(85, 2022))
	for i := 0; i < 3000; i++ {
		loc, err := time.LoadLocation(zones[r.IntN(len(zones))])
		if err != nil {
			t.Fatal(err)
		}
		month := Month(fmt.Sprintf("%04d-%02d", 2024+r.IntN(4), 1+r.IntN(12)))
		from, to := month.Bounds(loc)
		p := DefaultPolicy()
		p.MinReplays = r.IntN(6)
		startH := r.IntN(10)
		p.Hours = DayWindow{Start: startH * 60, End: (startH + 4 + r.IntN(24-startH-4+1)) * 60}
		p.Slots = nil
		for s := 0; s < 1+r.IntN(4); s++ {
			p.Slots = append(p.Slots, r.IntN(24*60/15)*15)
		}
		dur := time.Duration(1+r.IntN(90)) * time.Minute
		earliest := from.Add(time.Duration(r.Int64N(int64(to.Sub(from)))))
		if r.IntN(3) == 0 {
			earliest = from.Add(-time.Hour)
		}
		prog := Programme{ID: "P", Month: month, Audio: Audio{SHA256: "x", DurationMS: dur.Milliseconds()}}
		// Another programme already holds some slots.
		var existing []*Airing
		for _, c := range Candidates(month, loc, from, 30*time.Minute, p) {
			if r.IntN(4) == 0 {
				existing = append(existing, &Airing{ID: "other", Programme: "Q", Start: c, Audio: Audio{DurationMS: 30 * 60_000}, Status: StatusPlanned})
			}
		}
		req := PlanRequest{Programme: prog, Station: Station{ID: "S"}, Location: loc, Existing: existing, Earliest: earliest, Policy: p, Now: earliest}
		plan := PlanStation(req)
		all := append(append([]*Airing(nil), existing...), plan...)
		for _, a := range plan {
			if a.Start.Before(earliest) || !a.Start.Before(to) || a.Start.Before(from) {
				t.Fatalf("case %d: airing at %v outside [%v, %v)", i, a.Start, earliest, to)
			}
			if !InHours(a.Start, dur, loc, p) {
				t.Fatalf("case %d: airing at %v (%v) outside hours %s in %s", i, a.Start.In(loc), dur, p.Hours, loc)
			}
			for _, b := range all {
				if a != b && a.Overlaps(b) {
					t.Fatalf("case %d: %v overlaps %v", i, a.Start, b.Start)
				}
			}
		}
		// Enough when the month had room: count the free candidates.
		free := 0
		for _, c := range Candidates(month, loc, earliest, dur, p) {
			probe := &Airing{Start: c, Audio: prog.Audio}
			ok := true
			for _, b := range existing {
				if b.Overlaps(probe) {
					ok = false
				}
			}
			if ok {
				free++
			}
		}
		if want := min(p.Required(), free); len(plan) < want && !slotsCollide(p, dur) {
			t.Fatalf("case %d: planned %d, want %d (free candidates %d)", i, len(plan), want, free)
		}
		again := PlanStation(PlanRequest{Programme: prog, Station: Station{ID: "S"}, Location: loc, Existing: all, Earliest: earliest, Policy: p, Now: earliest})
		if len(plan) == p.Required() && len(again) != 0 {
			t.Fatalf("case %d: planning again added %d airings", i, len(again))
		}
	}
}

// slotsCollide reports whether two preferred slots are closer than the
// audio: then free candidates can exclude each other and fewer fit.
func slotsCollide(p Policy, d time.Duration) bool {
	for i, a := range p.Slots {
		for j, b := range p.Slots {
			if i != j && time.Duration(abs(a-b))*time.Minute < d {
				return true
			}
		}
	}
	return false
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestLocalTimeDaylightSaving(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	// 2026-03-29: clocks jump from 02:00 to 03:00; 02:30 does not exist.
	if _, ok := LocalTime(time.Date(2026, 3, 29, 12, 0, 0, 0, berlin), 150, berlin); ok {
		t.Error("02:30 on the spring-forward day exists?")
	}
	// 2026-10-25: clocks fall back from 03:00 to 02:00; 02:30 happens twice.
	got, ok := LocalTime(time.Date(2026, 10, 25, 12, 0, 0, 0, berlin), 150, berlin)
	if !ok {
		t.Fatal("02:30 on the fall-back day does not exist?")
	}
	if _, off := got.Zone(); off != 2*3600 {
		t.Errorf("02:30 on the fall-back day = %v; want the first occurrence (CEST, +02:00)", got)
	}
	if got.UTC().Format("15:04") != "00:30" {
		t.Errorf("first 02:30 is %v UTC, want 00:30", got.UTC())
	}
}
