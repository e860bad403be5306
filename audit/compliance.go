// Package audit turns the as-run evidence into the figures of the plan:
// which station met its month, which is at risk, which failed; and checks
// that the evidence itself is intact.
package audit

import (
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// Compliance states of a station-month (docs/design.md, "Compliance").
const (
	Compliant    = "compliant"
	InProgress   = "in_progress"
	AtRisk       = "at_risk"
	NonCompliant = "non_compliant"
)

// StationMonth is one row of a compliance report. Every figure names the
// airings behind it, so that an auditor can follow it to the as-run entries.
type StationMonth struct {
	Station  string          `json:"station"`
	Name     string          `json:"name"`
	Unit     string          `json:"unit"`
	Month    broadcast.Month `json:"month"`
	Required int             `json:"required"`
	Aired    int             `json:"aired"`
	Pending  int             `json:"pending"` // planned airings that may still air
	Status   string          `json:"status"`
	Coverage float64         `json:"coverage"` // mean share of enabled devices that aired the aired airings
	Devices  int             `json:"devices"`  // enabled devices
	Airings  []AiringRef     `json:"airings"`
}

// AiringRef is the evidence behind a figure.
type AiringRef struct {
	ID      string           `json:"id"`
	Kind    broadcast.Kind   `json:"kind"`
	Start   time.Time        `json:"start"`
	Status  broadcast.Status `json:"status"`
	Reason  string           `json:"reason,omitempty"`
	Entries []uint64         `json:"entries,omitempty"` // as-run sequence numbers
	// Causes are what the devices reported about an airing that did not
	// air; the airing's own Reason says only what the scheduler decided.
	// The report lists them with its exceptions.
	Causes []Cause `json:"-"`
}

// Judge computes a station's month from the summaries of its airings in
// that month (storage keeps them up to date as events are logged). monthEnd
// is the first instant after the month in the station's time zone;
// enabledDevices is the station's current count of enabled devices.
func Judge(st broadcast.Station, month broadcast.Month, monthEnd time.Time, airings []broadcast.AiringSummary, enabledDevices int, now time.Time, p broadcast.Policy) StationMonth {
	row := StationMonth{Station: st.ID, Name: st.Name, Unit: st.Unit, Month: month, Required: p.Required(), Devices: enabledDevices, Airings: make([]AiringRef, 0, len(airings))}
	var coverage float64
	for i := range airings {
		a := &airings[i]
		if a.Kind == broadcast.KindEmergency {
			continue
		}
		row.Airings = append(row.Airings, AiringRef{ID: a.ID, Kind: a.Kind, Start: a.Start, Status: a.Status, Reason: a.Reason, Entries: a.Entries, Causes: a.Causes})
		switch {
		case a.Status == broadcast.StatusAired:
			row.Aired++
			coverage += a.Coverage(enabledDevices)
		case !a.Status.Final() && a.NotAfter.Add(p.Grace).After(now):
			row.Pending++
		}
	}
	if row.Aired > 0 {
		row.Coverage = coverage / float64(row.Aired)
	}
	switch {
	case row.Aired >= row.Required:
		row.Status = Compliant
	case !now.Before(monthEnd) && row.Pending == 0:
		// An airing on the month's last evening may still be waiting for its
		// evidence (grace); only when none is can the month be closed.
		row.Status = NonCompliant
	case row.Aired+row.Pending < row.Required:
		row.Status = AtRisk
	default:
		row.Status = InProgress
	}
	return row
}
