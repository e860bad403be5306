package audit

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// UnitRef names an administrative unit in a report.
type UnitRef struct {
	Code string `json:"code"`
	Name string `json:"name"`
}

// Cause is what the devices of a station reported about an airing that did
// not air: a reason code of the device protocol and how many devices gave it.
type Cause = broadcast.Cause

// ReportSpec is what a report needs beyond its rows: names from the unit
// tree, and when and where it was made. The API fills it from storage, so
// that this package stays free of storage and HTTP.
type ReportSpec struct {
	Period broadcast.Period
	// Unit is the unit reported on; the zero value means everything the
	// reader may see.
	Unit UnitRef
	// Issuer is the body whose heading the document carries, the province at
	// the root of Unit's path.
	Issuer UnitRef
	// Place is where the report is made, for the date line ("Thanh Hóa");
	// empty means Issuer's name without its type ("Tỉnh").
	Place string
	// GeneratedAt is when the report was made; its location is the time zone
	// of every time the document shows.
	GeneratedAt time.Time
	// Parents maps a station's unit code to the unit whose table the station
	// falls in: its district, or its province since communes hang from
	// provinces directly. A station with no entry falls in Unit's table.
	Parents map[string]UnitRef
}

// Report is a compliance report: the rows of Judge, grouped by unit and
// rolled up over the period, with the airings that did not air.
type Report struct {
	ReportSpec
	// Rows are the station-months as given, the rows of the JSON form.
	Rows       []StationMonth
	Units      []UnitTable
	Totals     Tally
	Exceptions []Exception
	// Addendum is the evidence received after the seals of the period's
	// months (ApplySeals): the figures above are the sealed ones.
	Addendum []Late
}

// UnitTable is the table of one unit: its stations over the period.
type UnitTable struct {
	Unit     UnitRef
	Stations []StationPeriod
	Tally    Tally
}

// StationPeriod is a station over the report's period.
type StationPeriod struct {
	Station         string
	Name            string
	Unit            string
	Months          []StationMonth // in month order
	Required        int
	Aired           int
	MonthsCompliant int
	Status          string
	Coverage        float64
}

// Tally counts stations by their status over the period and adds up their
// airings.
type Tally struct {
	Stations     int     `json:"stations"`
	Compliant    int     `json:"compliant"`
	InProgress   int     `json:"in_progress"`
	AtRisk       int     `json:"at_risk"`
	NonCompliant int     `json:"non_compliant"`
	Required     int     `json:"required"`
	Aired        int     `json:"aired"`
	Coverage     float64 `json:"coverage"`

	coverageSum float64 // Σ coverage × aired: the mean weighs every aired airing once
}

// Exception is an airing that did not air: missed, failed or cancelled.
type Exception struct {
	Unit    UnitRef
	Station string
	Name    string
	Month   broadcast.Month
	Airing  string
	Kind    broadcast.Kind
	Start   time.Time
	Status  broadcast.Status
	Reason  string
	Causes  []Cause
}

// NewReport groups rows by unit and rolls them up. It keeps rows as they
// are; the tables are sorted by code so that two reports of the same
// evidence read the same.
func NewReport(spec ReportSpec, rows []StationMonth) Report {
	if spec.Place == "" {
		spec.Place = placeOf(spec.Issuer.Name)
	}
	if spec.GeneratedAt.IsZero() {
		spec.GeneratedAt = time.Unix(0, 0).UTC()
	}
	r := Report{ReportSpec: spec, Rows: rows}

	type key struct{ unit, station string }
	tables := map[string]*UnitTable{}
	stations := map[key]*StationPeriod{}
	var order []key
	for _, row := range rows {
		parent, ok := spec.Parents[row.Unit]
		if !ok {
			parent = spec.Unit
		}
		if tables[parent.Code] == nil {
			tables[parent.Code] = &UnitTable{Unit: parent}
		}
		k := key{parent.Code, row.Station}
		sp := stations[k]
		if sp == nil {
			sp = &StationPeriod{Station: row.Station, Name: row.Name, Unit: row.Unit}
			stations[k] = sp
			order = append(order, k)
		}
		sp.Months = append(sp.Months, row)
	}
	for _, k := range order {
		sp := stations[k]
		slices.SortStableFunc(sp.Months, func(a, b StationMonth) int { return cmp.Compare(a.Month, b.Month) })
		sp.roll(len(spec.Period.Months))
		t := tables[k.unit]
		t.Stations = append(t.Stations, *sp)
	}
	for _, t := range tables {
		slices.SortFunc(t.Stations, func(a, b StationPeriod) int { return compareCodes(a.Station, b.Station) })
		for _, sp := range t.Stations {
			t.Tally.add(sp)
			r.Totals.add(sp)
		}
		t.Tally.finish()
		r.Units = append(r.Units, *t)
	}
	r.Totals.finish()
	slices.SortFunc(r.Units, func(a, b UnitTable) int { return compareCodes(a.Unit.Code, b.Unit.Code) })

	for _, t := range r.Units {
		for _, sp := range t.Stations {
			var ex []Exception
			for _, m := range sp.Months {
				for _, a := range m.Airings {
					if a.Status != broadcast.StatusMissed && a.Status != broadcast.StatusFailed && a.Status != broadcast.StatusCancelled {
						continue
					}
					ex = append(ex, Exception{Unit: t.Unit, Station: sp.Station, Name: sp.Name, Month: m.Month,
						Airing: a.ID, Kind: a.Kind, Start: a.Start, Status: a.Status, Reason: a.Reason, Causes: a.Causes})
				}
			}
			// Tables are already in order; within a station the evidence
			// reads by time.
			slices.SortFunc(ex, func(a, b Exception) int {
				return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Airing, b.Airing))
			})
			r.Exceptions = append(r.Exceptions, ex...)
		}
	}
	return r
}

// roll computes the station's figures over the period from its months. A
// half-year or a year is compliant when every month is (docs/design.md); one
// month that failed makes the period fail, and the worst month otherwise
// says where it stands.
func (sp *StationPeriod) roll(periodMonths int) {
	var coverage float64
	rank := 0
	for _, m := range sp.Months {
		sp.Required += m.Required
		sp.Aired += m.Aired
		coverage += m.Coverage * float64(m.Aired)
		if m.Status == Compliant {
			sp.MonthsCompliant++
		}
		rank = max(rank, statusRank[m.Status])
	}
	if sp.Aired > 0 {
		sp.Coverage = coverage / float64(sp.Aired)
	}
	// A month without a row has no evidence either way: the period cannot
	// be compliant, and nothing says it failed.
	if len(sp.Months) < periodMonths {
		rank = max(rank, statusRank[InProgress])
	}
	sp.Status = rankedStatus[rank]
}

var (
	statusRank   = map[string]int{Compliant: 0, InProgress: 1, AtRisk: 2, NonCompliant: 3}
	rankedStatus = []string{Compliant, InProgress, AtRisk, NonCompliant}
)

func (t *Tally) add(sp StationPeriod) {
	t.Stations++
	switch sp.Status {
	case Compliant:
		t.Compliant++
	case InProgress:
		t.InProgress++
	case AtRisk:
		t.AtRisk++
	case NonCompliant:
		t.NonCompliant++
	}
	t.Required += sp.Required
	t.Aired += sp.Aired
	t.coverageSum += sp.Coverage * float64(sp.Aired)
}

func (t *Tally) finish() {
	if t.Aired > 0 {
		t.Coverage = t.coverageSum / float64(t.Aired)
	}
}

// compareCodes orders official codes as numbers ("980" before "1000")
// without parsing them, and anything else as text.
func compareCodes(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
}

// placeOf drops the unit type from a province's name: the date line of a
// document says "Thanh Hóa, ngày…", not "Tỉnh Thanh Hóa, ngày…".
func placeOf(name string) string {
	for _, prefix := range []string{"Tỉnh ", "Thành phố ", "TP. ", "Province of ", "City of "} {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			return rest
		}
	}
	return name
}

// Report formats and languages (docs/api.md, GET /api/v1/compliance).
const (
	FormatJSON = "json"
	FormatCSV  = "csv"
	FormatXLSX = "xlsx"
	FormatPDF  = "pdf"
	FormatHTML = "html"

	LangVI = "vi"
	LangEN = "en"
)

// IsReportFormat reports whether RenderReport can write format.
func IsReportFormat(format string) bool {
	switch format {
	case FormatJSON, FormatCSV, FormatXLSX, FormatPDF, FormatHTML:
		return true
	}
	return false
}

// IsReportLang reports whether reports can be written in lang.
func IsReportLang(lang string) bool { return lang == LangVI || lang == LangEN }

// RenderReport writes r as format (json, csv, xlsx, pdf or html; empty is
// json) in lang (vi or en; empty is vi). The binary formats are built in
// memory and written at the end, so a failure leaves w untouched.
func RenderReport(w io.Writer, r Report, format, lang string) error {
	if lang == "" {
		lang = LangVI
	}
	if !IsReportLang(lang) {
		return fmt.Errorf("report: language %q: want vi or en", lang)
	}
	t := textsFor(lang)
	var err error
	switch format {
	case FormatJSON, "":
		err = writeReportJSON(w, r, t)
	case FormatCSV:
		err = writeReportCSV(w, r, t)
	case FormatXLSX:
		err = writeReportXLSX(w, r, t)
	case FormatPDF:
		err = writeReportPDF(w, r, t)
	case FormatHTML:
		err = writeReportHTML(w, r, t)
	default:
		return fmt.Errorf("report: format %q: want json, csv, xlsx, pdf or html", format)
	}
	if err != nil {
		return fmt.Errorf("report %s %s as %s: %w", r.Period.Name, r.Unit.Code, format, err)
	}
	return nil
}

// ReportContentType is the media type of a report in format.
func ReportContentType(format string) string {
	switch format {
	case FormatCSV:
		return "text/csv; charset=utf-8"
	case FormatXLSX:
		return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	case FormatPDF:
		return "application/pdf"
	case FormatHTML:
		return "text/html; charset=utf-8"
	}
	return "application/json; charset=utf-8"
}

// ReportFileName names the file of a report: bao-cao-2026-H2-380.pdf in
// Vietnamese, report-2026-H2-380.pdf in English. Only ASCII letters,
// digits and '-' come from the report, so the name is safe in a
// Content-Disposition header and on any file system.
func ReportFileName(r Report, format, lang string) string {
	if format == "" {
		format = FormatJSON
	}
	base := "bao-cao"
	if lang == LangEN {
		base = "report"
	}
	for _, part := range []string{r.Period.Name, r.Unit.Code} {
		if p := fileSafe(part); p != "" {
			base += "-" + p
		}
	}
	return base + "." + fileSafe(format)
}

func fileSafe(s string) string {
	return strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			return c
		}
		return -1
	}, s)
}
