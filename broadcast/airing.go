package broadcast

import (
	"math"
	"slices"
	"time"
)

// Kind says why an airing exists.
type Kind string

const (
	KindPremiere  Kind = "premiere"
	KindReplay    Kind = "replay"
	KindMakeup    Kind = "makeup" // replaces a missed airing
	KindEmergency Kind = "emergency"
)

// Priority is one of the three levels of Circular 39/2020/TT-BTTTT.
type Priority int

const (
	PriorityNormal    Priority = 0
	PriorityHigh      Priority = 1
	PriorityEmergency Priority = 2
)

// Status is the lifecycle of an airing (docs/design.md, "Lifecycle of an airing").
type Status string

const (
	StatusPlanned   Status = "planned"
	StatusSent      Status = "sent"
	StatusReceived  Status = "received"
	StatusReady     Status = "ready"
	StatusStarted   Status = "started"
	StatusAired     Status = "aired"
	StatusFailed    Status = "failed"
	StatusMissed    Status = "missed"
	StatusCancelled Status = "cancelled"
)

// progress orders the non-final states, so that an event delivered late (a
// `received` after a `started`) never moves an airing backwards.
var progress = map[Status]int{StatusPlanned: 0, StatusSent: 1, StatusReceived: 2, StatusReady: 3, StatusStarted: 4}

// Final reports whether nothing more can happen to an airing in status s.
func (s Status) Final() bool {
	return s == StatusAired || s == StatusFailed || s == StatusMissed || s == StatusCancelled
}

// Airing is one planned play of a programme at one station. Its devices each
// report events; the station-level Status follows from them by ApplyEvent.
type Airing struct {
	ID        string    `json:"id"`
	Programme string    `json:"programme"`
	Station   string    `json:"station"`
	Month     Month     `json:"month"`
	Kind      Kind      `json:"kind"`
	Priority  Priority  `json:"priority"`
	Title     string    `json:"title"`
	Audio     Audio     `json:"audio"`
	Start     time.Time `json:"start"`
	NotAfter  time.Time `json:"not_after"`
	Status    Status    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	Replaces  string    `json:"replaces,omitempty"` // the missed airing a make-up stands in for
	// CancelledAt is when the airing was cancelled (zero if it never was).
	// A play that a device claims to have started at or after it counts for
	// nothing (ReasonPlayedAfterCancel); one started before it still counts,
	// so a late report of a real play is not lost to a cancellation.
	CancelledAt time.Time `json:"cancelled_at,omitzero"`

	Devices   map[string]*DeviceAiring `json:"devices,omitempty"`
	CreatedAt time.Time                `json:"created_at"`
	UpdatedAt time.Time                `json:"updated_at"`
}

// DeviceAiring is what one device has reported for one airing: its own
// status and a reference to every as-run entry that says so.
type DeviceAiring struct {
	Status    Status    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	PlayedMS  int64     `json:"played_ms,omitempty"`
	// DoublePlay is set when the device reported two plays of the airing
	// with different start times: a device plays an airing once, so one of
	// them is a bug or a lie, and an auditor should look.
	DoublePlay bool       `json:"double_play,omitempty"`
	Events     []EventRef `json:"events"`
}

// EventRef points to the as-run entry that holds the evidence.
type EventRef struct {
	Entry uint64    `json:"entry"` // as-run log sequence number
	Event EventType `json:"event"`
	At    time.Time `json:"at"`
}

// End is when the audio ends if it starts on time.
func (a *Airing) End() time.Time { return a.Start.Add(a.Audio.Duration()) }

// Judgement says why a finished event did or did not air the airing; the
// reason strings appear in reports as the exceptions' explanations.
const (
	ReasonWrongAudio = "wrong_audio"  // played a file whose sha256 is not the programme's
	ReasonShortPlay  = "short_play"   // played less than min_played_ratio of the audio
	ReasonLateStart  = "off_schedule" // started outside start_tolerance of the plan
	ReasonNoFinish   = "no_finish"    // no finished event by not_after + grace
	// ReasonPlayedAfterCancel: the device played the airing after it was
	// cancelled (it was offline and never heard of it). The play is kept as
	// evidence and shown, but it does not count toward the obligation.
	ReasonPlayedAfterCancel = "played_after_cancel"
)

// Cancel marks the airing cancelled at at, for why. A play already
// reported that claims to have started at or after the cancellation (a
// device whose clock runs ahead, within the skew allowance) no longer
// counts either: whether a play counts depends on the times it claims, not
// on whether its report or the cancellation reached the daemon first, so
// that a verifier replaying the log reaches the same verdicts.
func (a *Airing) Cancel(at time.Time, why string) {
	a.Status, a.Reason, a.UpdatedAt = StatusCancelled, why, at
	if a.CancelledAt.IsZero() {
		a.CancelledAt = at
	}
	for _, d := range a.Devices {
		if d != nil && d.Status == StatusAired && !d.StartedAt.Before(a.CancelledAt) {
			d.Status, d.Reason = StatusCancelled, ReasonPlayedAfterCancel
		}
	}
}

// cancelledBefore reports whether the airing had been cancelled by t, a
// time a device claims it started playing. An airing cancelled before
// CancelledAt existed (status cancelled, no time) counts as cancelled
// before any play.
func (a *Airing) cancelledBefore(t time.Time) bool {
	if a.CancelledAt.IsZero() {
		return a.Status == StatusCancelled
	}
	return !t.Before(a.CancelledAt)
}

// Implausible says why an event cannot be what it claims, judged against
// when the daemon received it: UnmatchedFuture if it claims a moment (when
// it was sent, when its play started or ended) later than its receipt plus
// the policy's clock skew. "" if it is plausible. A device cannot report a
// play that has not happened yet; a finished event for an airing weeks away
// would otherwise count as aired the day it arrives.
func Implausible(ev Event, received time.Time, p Policy) string {
	limit := received.Add(p.ClockSkew)
	if ev.At.After(limit) {
		return UnmatchedFuture
	}
	if !ev.StartedAt.IsZero() {
		end := ev.StartedAt.Add(time.Duration(max(ev.PlayedMS, 0)) * time.Millisecond)
		if ev.StartedAt.After(limit) || end.After(limit) {
			return UnmatchedFuture
		}
	}
	return ""
}

// ApplyEvent records a device's event on the airing and recomputes its
// status. entry is the as-run sequence number that holds the event;
// enabledDevices is how many devices the station had enabled, the base of
// min_device_ratio. It is deterministic, so that replaying the log rebuilds
// the same airings.
func ApplyEvent(a *Airing, device string, ev Event, entry uint64, enabledDevices int, p Policy) {
	if a.Devices == nil {
		a.Devices = map[string]*DeviceAiring{}
	}
	d := a.Devices[device]
	if d == nil {
		d = &DeviceAiring{Status: StatusPlanned}
		a.Devices[device] = d
	}
	hadFinished := slices.ContainsFunc(d.Events, func(r EventRef) bool { return r.Event == EventFinished })
	d.Events = append(d.Events, EventRef{Entry: entry, Event: ev.Event, At: ev.At})
	switch ev.Event {
	case EventReceived, EventReady, EventStarted:
		s := Status(ev.Event)
		if !d.Status.Final() && progress[s] > progress[d.Status] {
			d.Status = s
		}
		if ev.Event == EventStarted && d.StartedAt.IsZero() {
			d.StartedAt = ev.At
		}
	case EventFinished:
		// A device plays an airing once: a second play with another start
		// is flagged. A later finished event (a re-delivery with a new seq
		// after a device bug) cannot undo aired.
		if hadFinished && !ev.StartedAt.Equal(d.StartedAt) {
			d.DoublePlay = true
		}
		if d.Status == StatusAired {
			// Of two plays that both count, the earlier stands, whichever
			// was reported first: a cancellation between them then leaves
			// the device aired however the reports and the cancellation
			// were ordered.
			if ev.StartedAt.Before(d.StartedAt) && !a.cancelledBefore(ev.StartedAt) && judgeFinished(a, ev, p) == "" {
				d.StartedAt, d.PlayedMS = ev.StartedAt, ev.PlayedMS
			}
			break
		}
		d.StartedAt, d.PlayedMS = ev.StartedAt, ev.PlayedMS
		if a.cancelledBefore(ev.StartedAt) {
			d.Status, d.Reason = StatusCancelled, ReasonPlayedAfterCancel
		} else if reason := judgeFinished(a, ev, p); reason != "" {
			d.Status, d.Reason = StatusFailed, reason
		} else {
			d.Status, d.Reason = StatusAired, ""
		}
	case EventFailed:
		if d.Status != StatusAired {
			d.Status, d.Reason = StatusFailed, ev.Reason
		}
	case EventSkipped:
		if d.Status != StatusAired {
			if ev.Reason == "cancelled" {
				d.Status, d.Reason = StatusCancelled, ev.Reason
			} else {
				d.Status, d.Reason = StatusFailed, ev.Reason
			}
		}
	}
	a.Status = stationStatus(a, enabledDevices, p)
	if a.Status == StatusAired {
		// Evidence that arrived late (the device was offline) overturns a
		// missed verdict; its reason no longer holds.
		a.Reason = ""
	}
}

func judgeFinished(a *Airing, ev Event, p Policy) string {
	if ev.SHA256 != a.Audio.SHA256 {
		return ReasonWrongAudio
	}
	if float64(ev.PlayedMS) < p.MinPlayedRatio*float64(a.Audio.DurationMS) {
		return ReasonShortPlay
	}
	off := ev.StartedAt.Sub(a.Start)
	if off < -p.StartTolerance || off > p.StartTolerance {
		return ReasonLateStart
	}
	return ""
}

// RequiredDevices is how many devices must air an airing at a station with n
// enabled devices. A station with no devices can never air.
func RequiredDevices(n int, p Policy) int {
	if n <= 0 {
		return math.MaxInt
	}
	need := int(math.Ceil(p.MinDeviceRatio*float64(n) - 1e-9))
	return max(need, 1)
}

// stationStatus is aired when enough devices aired, whatever else happened
// (evidence from a device that was offline may arrive after the scheduler
// judged the airing missed); otherwise what the scheduler decided (missed,
// cancelled), failed when every device has failed, or else the furthest any
// device has got.
func stationStatus(a *Airing, enabledDevices int, p Policy) Status {
	aired, failed := 0, 0
	best := a.Status
	for _, d := range a.Devices {
		switch {
		case d.Status == StatusAired:
			aired++
		case d.Status == StatusFailed || d.Status == StatusCancelled:
			failed++
		case !best.Final() && progress[d.Status] > progress[best]:
			best = d.Status
		}
	}
	switch {
	case aired >= RequiredDevices(enabledDevices, p):
		return StatusAired
	case a.Status == StatusCancelled || a.Status == StatusMissed:
		return a.Status
	case enabledDevices > 0 && failed+aired >= enabledDevices:
		return StatusFailed
	case best.Final():
		// Was aired or failed, and a device count change undid that.
		return StatusSent
	}
	return best
}

// Coverage is the share of enabled devices that aired the airing.
func (a *Airing) Coverage(enabledDevices int) float64 {
	if enabledDevices <= 0 {
		return 0
	}
	n := 0
	for _, d := range a.Devices {
		if d.Status == StatusAired {
			n++
		}
	}
	return float64(n) / float64(enabledDevices)
}

// Overlaps reports whether two airings would sound at the same time.
func (a *Airing) Overlaps(b *Airing) bool {
	return a.Start.Before(b.End()) && b.Start.Before(a.End())
}

// AiringFilter selects airings; empty fields match everything.
type AiringFilter struct {
	Station     string
	Programme   string
	StationPath string // stations at or below this unit path
	Month       Month
	Status      Status
	Limit       int
}
