package broadcast

import (
	"testing"
	"time"
)

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func testAiring(t *testing.T) *Airing {
	start := mustTime(t, "2026-12-05T06:30:00+07:00")
	return &Airing{ID: "A1", Station: "14755", Start: start, NotAfter: start.Add(15 * time.Minute), Status: StatusSent,
		Audio: Audio{SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", DurationMS: 900_000}}
}

func finished(a *Airing, startOff time.Duration, played int64, sha string) Event {
	return Event{V: 1, Event: EventFinished, StartedAt: a.Start.Add(startOff), At: a.Start.Add(startOff + 15*time.Minute), PlayedMS: played, SHA256: sha}
}

func TestApplyEventJudgesFinished(t *testing.T) {
	p := DefaultPolicy()
	for name, tc := range map[string]struct {
		off    time.Duration
		played int64
		sha    string
		want   Status
		reason string
	}{
		"on time, whole":      {time.Second, 900_412, "", StatusAired, ""},
		"90 percent":          {0, 810_000, "", StatusAired, ""},
		"short":               {0, 809_999, "", StatusFailed, ReasonShortPlay},
		"wrong audio":         {0, 900_000, "0000000000000000000000000000000000000000000000000000000000000000", StatusFailed, ReasonWrongAudio},
		"late past tolerance": {15*time.Minute + time.Second, 900_000, "", StatusFailed, ReasonLateStart},
		"early past":          {-16 * time.Minute, 900_000, "", StatusFailed, ReasonLateStart},
	} {
		t.Run(name, func(t *testing.T) {
			a := testAiring(t)
			sha := tc.sha
			if sha == "" {
				sha = a.Audio.SHA256
			}
			ApplyEvent(a, "14755-01", finished(a, tc.off, tc.played, sha), 7, 1, p)
			d := a.Devices["14755-01"]
			if d.Status != tc.want || d.Reason != tc.reason || a.Status != tc.want {
				t.Fatalf("device %s/%s, station %s; want %s/%s", d.Status, d.Reason, a.Status, tc.want, tc.reason)
			}
			if len(d.Events) != 1 || d.Events[0].Entry != 7 {
				t.Fatalf("events = %+v, want a reference to entry 7", d.Events)
			}
		})
	}
}

func TestApplyEventDeviceRatio(t *testing.T) {
	p := DefaultPolicy() // 0.8 of enabled devices
	a := testAiring(t)
	ok := finished(a, 0, 900_000, a.Audio.SHA256)
	for i, dev := range []string{"d1", "d2", "d3"} {
		ApplyEvent(a, dev, ok, uint64(i+1), 5, p)
		if a.Status == StatusAired {
			t.Fatalf("aired after %d of 5 devices; 0.8 needs 4", i+1)
		}
	}
	ApplyEvent(a, "d4", ok, 4, 5, p)
	if a.Status != StatusAired || a.Coverage(5) != 0.8 {
		t.Fatalf("status %s coverage %v after 4 of 5, want aired 0.8", a.Status, a.Coverage(5))
	}
	if RequiredDevices(0, p) <= 1000 || RequiredDevices(1, p) != 1 || RequiredDevices(10, p) != 8 {
		t.Fatal("RequiredDevices is wrong")
	}
}

func TestApplyEventNeverGoesBackwards(t *testing.T) {
	p := DefaultPolicy()
	a := testAiring(t)
	ApplyEvent(a, "d1", Event{Event: EventStarted, At: a.Start}, 1, 2, p)
	ApplyEvent(a, "d1", Event{Event: EventReceived, At: a.Start}, 2, 2, p)
	if a.Devices["d1"].Status != StatusStarted || a.Status != StatusStarted {
		t.Fatalf("a late received moved the airing back: %s / %s", a.Devices["d1"].Status, a.Status)
	}
	ApplyEvent(a, "d1", finished(a, 0, 900_000, a.Audio.SHA256), 3, 1, p)
	ApplyEvent(a, "d1", Event{Event: EventFailed, Reason: "power", At: a.Start}, 4, 1, p)
	if a.Status != StatusAired {
		t.Fatalf("a failed event after aired undid it: %s", a.Status)
	}
}

func TestLateEvidenceRevivesMissed(t *testing.T) {
	p := DefaultPolicy()
	a := testAiring(t)
	a.Status, a.Reason = StatusMissed, ReasonNoFinish
	ApplyEvent(a, "d1", Event{Event: EventStarted, At: a.Start}, 1, 1, p)
	if a.Status != StatusMissed {
		t.Fatalf("a started event undid missed: %s", a.Status)
	}
	ApplyEvent(a, "d1", finished(a, 0, 900_000, a.Audio.SHA256), 2, 1, p)
	if a.Status != StatusAired || a.Reason != "" {
		t.Fatalf("valid evidence that arrived late (device was offline) did not count: %s (%q)", a.Status, a.Reason)
	}
}
