package broadcast

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestImplausibleClaims(t *testing.T) {
	p := DefaultPolicy() // 2 min of skew
	recv := mustTime(t, "2026-12-07T10:00:00+07:00")
	for name, tc := range map[string]struct {
		at, started time.Time
		played      int64
		want        string
	}{
		"received right after the end":       {recv, recv.Add(-15 * time.Minute), 900_000, ""},
		"clock ahead within the skew":        {recv.Add(2 * time.Minute), recv.Add(-13 * time.Minute), 900_000, ""},
		"sent in the future":                 {recv.Add(2*time.Minute + time.Nanosecond), recv.Add(-15 * time.Minute), 900_000, UnmatchedFuture},
		"a play that ends after the receipt": {recv, recv.Add(-5 * time.Minute), 900_000, UnmatchedFuture},
		"a play 18 days ahead":               {recv.Add(18 * 24 * time.Hour), recv.Add(18 * 24 * time.Hour), 900_000, UnmatchedFuture},
		"no start (a received event)":        {recv, time.Time{}, 0, ""},
		"negative played is no excuse":       {recv, recv.Add(time.Hour), -3_600_000, UnmatchedFuture},
	} {
		t.Run(name, func(t *testing.T) {
			ev := Event{Event: EventFinished, At: tc.at, StartedAt: tc.started, PlayedMS: tc.played}
			if got := Implausible(ev, recv, p); got != tc.want {
				t.Errorf("Implausible = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlayAfterCancelDoesNotCount(t *testing.T) {
	p := DefaultPolicy()
	for name, tc := range map[string]struct {
		cancelAt time.Duration // from the planned start
		want     Status
		reason   string
	}{
		"cancelled the day before":              {-24 * time.Hour, StatusCancelled, ReasonPlayedAfterCancel},
		"cancelled at the start":                {0, StatusCancelled, ReasonPlayedAfterCancel},
		"cancelled while it played (late news)": {5 * time.Minute, StatusAired, ""},
	} {
		t.Run(name, func(t *testing.T) {
			a := testAiring(t)
			a.Cancel(a.Start.Add(tc.cancelAt), "cancelled by Lan")
			ApplyEvent(a, "d1", finished(a, 0, 900_000, a.Audio.SHA256), 1, 1, p)
			d := a.Devices["d1"]
			if a.Status != tc.want || d.Reason != tc.reason {
				t.Errorf("airing %s, device %s/%s; want %s, %q", a.Status, d.Status, d.Reason, tc.want, tc.reason)
			}
		})
	}
	// Cancelled before CancelledAt existed: no play counts.
	a := testAiring(t)
	a.Status = StatusCancelled
	ApplyEvent(a, "d1", finished(a, 0, 900_000, a.Audio.SHA256), 1, 1, p)
	if a.Status != StatusCancelled {
		t.Errorf("an older cancelled airing became %s", a.Status)
	}
}

func TestDoublePlayIsFlagged(t *testing.T) {
	p := DefaultPolicy()
	a := testAiring(t)
	ApplyEvent(a, "d1", finished(a, 0, 900_000, a.Audio.SHA256), 1, 1, p)
	ApplyEvent(a, "d1", finished(a, 0, 900_000, a.Audio.SHA256), 2, 1, p) // the same play again: not a second one
	if a.Devices["d1"].DoublePlay {
		t.Fatal("a repeated report of one play was flagged")
	}
	ApplyEvent(a, "d1", finished(a, 7*time.Minute, 900_000, a.Audio.SHA256), 3, 1, p)
	d := a.Devices["d1"]
	if !d.DoublePlay || d.Status != StatusAired || !d.StartedAt.Equal(a.Start) {
		t.Fatalf("second play: %+v; want flagged, still aired, the first start kept", d)
	}
}

// The rules are a function of the events: for random sequences of events
// from random devices, (1) a play claimed to start at or after the
// cancellation never makes a device aired, (2) the station is aired exactly
// when enough devices are, or a device aired before a cancellation made it
// so, (3) replaying the same events on a fresh copy of the plan gives the
// same airing, and (4) a device once aired stays aired.
func TestApplyEventProperties(t *testing.T) {
	p := DefaultPolicy()
	rng := rand.New(rand.NewPCG(1, 2))
	types := []EventType{EventReceived, EventReady, EventStarted, EventFinished, EventFailed, EventSkipped}
	for round := range 2000 {
		plan := testAiring(t)
		plan.Status = StatusPlanned
		if rng.IntN(3) == 0 {
			plan.Cancel(plan.Start.Add(time.Duration(rng.IntN(40)-20)*time.Minute), "cancelled")
		}
		devices := 1 + rng.IntN(4)
		type step struct {
			dev string
			ev  Event
		}
		var steps []step
		for range rng.IntN(12) {
			ev := Event{Event: types[rng.IntN(len(types))], At: plan.Start.Add(time.Duration(rng.IntN(60)) * time.Minute)}
			if ev.Event == EventFinished {
				ev.StartedAt = plan.Start.Add(time.Duration(rng.IntN(60)-30) * time.Minute)
				ev.PlayedMS = int64(rng.IntN(1_000_000))
				ev.SHA256 = plan.Audio.SHA256
				if rng.IntN(8) == 0 {
					ev.SHA256 = "0"
				}
			}
			if ev.Event == EventSkipped || ev.Event == EventFailed {
				ev.Reason = []string{"cancelled", "power", "player_error"}[rng.IntN(3)]
			}
			steps = append(steps, step{dev: string(rune('a' + rng.IntN(devices))), ev: ev})
		}

		run := func() *Airing {
			a := *plan
			everAired := map[string]bool{}
			for i, s := range steps {
				ApplyEvent(&a, s.dev, s.ev, uint64(i+1), devices, p)
				d := a.Devices[s.dev]
				if everAired[s.dev] && d.Status != StatusAired {
					t.Fatalf("round %d: device %s was aired and became %s", round, s.dev, d.Status)
				}
				if d.Status == StatusAired {
					everAired[s.dev] = true
					if s.ev.Event == EventFinished && !a.CancelledAt.IsZero() && !d.StartedAt.Before(a.CancelledAt) {
						t.Fatalf("round %d: a play started at %v, after the cancellation at %v, counted", round, d.StartedAt, a.CancelledAt)
					}
				}
			}
			return &a
		}
		a := run()
		aired := 0
		for _, d := range a.Devices {
			if d.Status == StatusAired {
				aired++
			}
		}
		if (a.Status == StatusAired) != (aired >= RequiredDevices(devices, p)) {
			t.Fatalf("round %d: status %s with %d of %d devices aired", round, a.Status, aired, devices)
		}
		if b := run(); b.Status != a.Status || len(b.Devices) != len(a.Devices) {
			t.Fatalf("round %d: replay gave %s, first run %s", round, b.Status, a.Status)
		}
	}
}
