package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
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
	Addendum    []lateJSON      `json:"addendum"`
}

// lateJSON is an addendum line: the station-month, its sealed figure, what
// the evidence gives now, the late entries, and the line for a person.
type lateJSON struct {
	Late
	Text string `json:"text"`
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
		Units: []unitJSON{}, Exceptions: []exceptionJSON{}, Addendum: []lateJSON{},
	}
	for _, l := range r.Addendum {
		out.Addendum = append(out.Addendum, lateJSON{Late: l, Text: t.lateText(l)})
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
	return streamJSON(w, out)
}

// streamJSON writes out as encoding/json would (no HTML escaping, one
// line), one row at a time: a national year is 120,564 rows and ~100 MiB,
// and encoding it whole held two growing copies of it in memory, whose
// clearing alone was half the time.
func streamJSON(w io.Writer, out reportJSON) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	put := func(v any) error {
		buf.Reset()
		if err := enc.Encode(v); err != nil {
			return err
		}
		_, err := bw.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		return err
	}
	rows, units, exceptions, addendum := out.Rows, out.Units, out.Exceptions, out.Addendum
	out.Rows, out.Units, out.Exceptions, out.Addendum = nil, nil, nil, nil
	// The fields before rows, in their order, without the closing brace.
	buf.Reset()
	if err := enc.Encode(out); err != nil {
		return err
	}
	head := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	cut := bytes.LastIndex(head, []byte(`,"rows":`))
	if cut < 0 {
		return fmt.Errorf("report JSON: no rows field in %.80s", head)
	}
	if _, err := bw.Write(head[:cut]); err != nil {
		return err
	}
	if _, err := bw.WriteString(`,"rows":[`); err != nil {
		return err
	}
	for i := range rows {
		if i > 0 {
			if err := bw.WriteByte(','); err != nil {
				return err
			}
		}
		if err := put(&rows[i]); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		v    any
	}{{`],"units":`, units}, {`,"exceptions":`, exceptions}, {`,"addendum":`, addendum}} {
		if _, err := bw.WriteString(f.name); err != nil {
			return err
		}
		if err := put(f.v); err != nil {
			return err
		}
	}
	if _, err := bw.WriteString("}\n"); err != nil {
		return err
	}
	return bw.Flush()
}
