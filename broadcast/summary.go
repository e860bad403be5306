package broadcast

import (
	"cmp"
	"slices"
	"time"
)

// AiringSummary is what a compliance report needs of an airing. Storage
// keeps one beside the airing's station-month index entry and rewrites it
// in the transaction that changes the airing (an event, a move, a
// cancellation), so that a report of a national year reads the summaries of
// its station-months: never the as-run log, nor the airings' device records.
type AiringSummary struct {
	ID       string
	Kind     Kind
	Start    time.Time
	NotAfter time.Time
	Status   Status
	Reason   string
	// Aired counts the devices whose own status is aired: with the station's
	// enabled devices, the coverage.
	Aired int
	// Entries are the as-run entries behind the airing, ascending: the
	// evidence a report's figure links to.
	Entries []uint64
	// Causes are what the devices reported about an airing that did not
	// air, when it says more than the scheduler's Reason; most devices first.
	Causes []Cause
}

// Cause is a reason code of the device protocol and how many of a station's
// devices gave it for one airing.
type Cause struct {
	Reason  string `json:"reason"`
	Devices int    `json:"devices"`
}

// Summary is the airing as compliance sees it.
func (a *Airing) Summary() AiringSummary {
	s := AiringSummary{ID: a.ID, Kind: a.Kind, Start: a.Start, NotAfter: a.NotAfter, Status: a.Status, Reason: a.Reason}
	explain := a.Status == StatusMissed || a.Status == StatusFailed || a.Status == StatusCancelled
	for _, d := range a.Devices {
		if d == nil {
			continue
		}
		if d.Status == StatusAired {
			s.Aired++
		}
		for _, e := range d.Events {
			s.Entries = append(s.Entries, e.Entry)
		}
		// A device's "cancelled" on a cancelled airing, or the airing's own
		// reason again, tells the reader nothing new.
		if explain && d.Status != StatusAired && d.Reason != "" && d.Reason != a.Reason &&
			!(a.Status == StatusCancelled && d.Reason == "cancelled") {
			i := slices.IndexFunc(s.Causes, func(c Cause) bool { return c.Reason == d.Reason })
			if i < 0 {
				s.Causes = append(s.Causes, Cause{Reason: d.Reason})
				i = len(s.Causes) - 1
			}
			s.Causes[i].Devices++
		}
	}
	slices.Sort(s.Entries)
	slices.SortFunc(s.Causes, func(x, y Cause) int {
		return cmp.Or(cmp.Compare(y.Devices, x.Devices), cmp.Compare(x.Reason, y.Reason))
	})
	return s
}

// Coverage is the share of enabled devices that aired the airing.
func (s *AiringSummary) Coverage(enabledDevices int) float64 {
	if enabledDevices <= 0 {
		return 0
	}
	return float64(s.Aired) / float64(enabledDevices)
}
