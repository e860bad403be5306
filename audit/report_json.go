package audit

import (
	"encoding/json"
	"io"
	"time"
)

// reportJSON keeps the shape GET /api/v1/compliance had before reports
// came in other formats (period, unit, totals, rows), and adds to it.
type reportJSON struct {
	Period      string          `json:"period"`
	PeriodTitle string          `json:"period_title"`
	Unit        string          `json:"unit"`
	UnitName    string          `json:"unit_name,omitempty"`
	Issuer      *UnitRef        `json:"issuer,omitempty"`
	GeneratedAt time.Time       `json:"generated_at"`
	Lang        string          `json:"lang"`
	Totals      map[string]int  `json:"totals"`
	Rows        []StationMonth  `json:"rows"`
	Units       []unitJSON      `json:"units"`
	Exceptions  []exceptionJSON `json:"exceptions"`
}

type unitJSON struct {
	Code     string        `json:"code"`
	Name     string        `json:"name"`
	Totals   Tally         `json:"totals"`
	Stations []stationJSON `json:"stations"`
}

type stationJSON struct {
	Station         string  `json:"station"`
	Name            string  `json:"name"`
	Unit            string  `json:"unit"`
	Required        int     `json:"required"`
	Aired           int     `json:"aired"`
	Months          int     `json:"months"`
	MonthsCompliant int     `json:"months_compliant"`
	Status          string  `json:"status"`
	Coverage        float64 `json:"coverage"`
}

type exceptionJSON struct {
	Unit    string  `json:"unit"`
	Station string  `json:"station"`
	Name    string  `json:"name"`
	Month   string  `json:"month"`
	Airing  string  `json:"airing"`
	Kind    string  `json:"kind"`
	Start   string  `json:"start"`
	Status  string  `json:"status"`
	Reason  string  `json:"reason,omitempty"`
	Causes  []Cause `json:"causes,omitempty"`
	Text    string  `json:"text"`
}

func writeReportJSON(w io.Writer, r Report, t *texts) error {
	out := reportJSON{
		Period: r.Period.Name, PeriodTitle: t.periodTitle(r.Period), Unit: r.Unit.Code, UnitName: r.Unit.Name,
		GeneratedAt: r.GeneratedAt, Lang: t.lang, Rows: r.Rows,
		Units: []unitJSON{}, Exceptions: []exceptionJSON{},
	}
	if out.Rows == nil {
		out.Rows = []StationMonth{}
	}
	if r.Issuer != (UnitRef{}) {
		out.Issuer = &r.Issuer
	}
	// totals counts station-months by status, as it always has; the
	// station-level roll-up over the period is in units[].totals.
	out.Totals = map[string]int{"stations": r.Totals.Stations, "required": r.Totals.Required, "aired": r.Totals.Aired,
		Compliant: 0, InProgress: 0, AtRisk: 0, NonCompliant: 0, "exceptions": len(r.Exceptions)}
	for _, row := range r.Rows {
		out.Totals[row.Status]++
	}
	for _, u := range r.Units {
		uj := unitJSON{Code: u.Unit.Code, Name: u.Unit.Name, Totals: u.Tally, Stations: make([]stationJSON, len(u.Stations))}
		for i, sp := range u.Stations {
			uj.Stations[i] = stationJSON{Station: sp.Station, Name: sp.Name, Unit: sp.Unit, Required: sp.Required, Aired: sp.Aired,
				Months: len(sp.Months), MonthsCompliant: sp.MonthsCompliant, Status: sp.Status, Coverage: sp.Coverage}
		}
		out.Units = append(out.Units, uj)
	}
	loc := r.location()
	for _, e := range r.Exceptions {
		out.Exceptions = append(out.Exceptions, exceptionJSON{Unit: e.Unit.Code, Station: e.Station, Name: e.Name, Month: string(e.Month),
			Airing: e.Airing, Kind: string(e.Kind), Start: e.Start.In(loc).Format(time.RFC3339), Status: string(e.Status),
			Reason: e.Reason, Causes: e.Causes, Text: ExceptionText(e, t.lang)})
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}
