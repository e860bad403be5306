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

// A device reports a later play first, then an earlier one, and the
// airing is cancelled between their starts: the earlier play counts,
// whichever order the daemon heard of them in.
func TestEarlierPlayStandsAcrossACancellation(t *testing.T) {
	p := DefaultPolicy()
	a := testAiring(t)
	ApplyEvent(a, "d1", finished(a, 5*time.Minute, 900_000, a.Audio.SHA256), 1, 1, p)
	ApplyEvent(a, "d1", finished(a, -2*time.Minute, 900_000, a.Audio.SHA256), 2, 1, p)
	a.Cancel(a.Start.Add(time.Minute), "cancelled by Lan")
	if d := a.Devices["d1"]; d.Status != StatusAired || !d.StartedAt.Equal(a.Start.Add(-2*time.Minute)) || !d.DoublePlay {
		t.Fatalf("device %+v: want aired by the play before the cancellation, flagged", d)
	}
}

// The rules are a function of the times the events claim, not of the order
// in which the reports and a cancellation reach the daemon. For random
// sequences of events from random devices, with a cancellation inserted at
// a random point: (1) a play claimed to start at or after the cancellation
// never makes a device aired, (2) the station is aired exactly when enough
// devices are, (3) a device once aired stays aired, and (4) each device's
// verdict is the one a verifier rebuilds by replaying the same events on
// the plan with the cancellation known from the start (audit.VerifyRecords).
func TestApplyEventProperties(t *testing.T) {
	p := DefaultPolicy()
	rng := rand.New(rand.NewPCG(1, 2))
	types := []EventType{EventReceived, EventReady, EventStarted, EventFinished, EventFailed, EventSkipped}
	for round := range 5000 {
		plan := testAiring(t)
		plan.Status = StatusPlanned
		var cancelAt time.Time
		if rng.IntN(2) == 0 {
			cancelAt = plan.Start.Add(time.Duration(rng.IntN(40)-20) * time.Minute)
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

		// Live: the cancellation arrives between two reports.
		live := *plan
		cancelStep := rng.IntN(len(steps) + 1)
		everAired := map[string]bool{}
		for i := 0; i <= len(steps); i++ {
			if i == cancelStep && !cancelAt.IsZero() {
				live.Cancel(cancelAt, "cancelled")
			}
			if i == len(steps) {
				break
			}
			s := steps[i]
			ApplyEvent(&live, s.dev, s.ev, uint64(i+1), devices, p)
			for dev, d := range live.Devices {
				if everAired[dev] && d.Status != StatusAired && (cancelAt.IsZero() || i < cancelStep) {
					t.Fatalf("round %d: device %s was aired and became %s", round, dev, d.Status)
				}
				if d.Status == StatusAired {
					everAired[dev] = true
					if !cancelAt.IsZero() && i >= cancelStep && !d.StartedAt.Before(cancelAt) {
						t.Fatalf("round %d: a play started at %v, after the cancellation at %v, counts", round, d.StartedAt, cancelAt)
					}
				}
			}
		}
		aired := 0
		for _, d := range live.Devices {
			if d.Status == StatusAired {
				aired++
			}
		}
		if (live.Status == StatusAired) != (aired >= RequiredDevices(devices, p)) && live.Status != StatusCancelled {
			t.Fatalf("round %d: status %s with %d of %d devices aired", round, live.Status, aired, devices)
		}

		// Replayed as the verifier does: the plan, cancelled if it was.
		replay := AiringPlan(plan)
		replay.Status = StatusPlanned
		if !cancelAt.IsZero() {
			replay.CancelledAt = cancelAt
		}
		for i, s := range steps {
			ApplyEvent(&replay, s.dev, s.ev, uint64(i+1), 1, p)
		}
		for dev, d := range live.Devices {
			r := replay.Devices[dev]
			if (d.Status == StatusAired) != (r != nil && r.Status == StatusAired) {
				t.Fatalf("round %d: device %s is %s live (cancellation after report %d), %v replayed", round, dev, d.Status, cancelStep, r)
			}
		}
	}
}
