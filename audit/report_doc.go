package audit

import (
	"fmt"
	"strconv"
)

// document is a report laid out as the paper a provincial department files
// (Decree 30/2020/NĐ-CP's shape of an administrative document): the PDF,
// the spreadsheet's first sheet and the web page all draw this one layout,
// so that they cannot disagree.
type document struct {
	Lang     string
	Heading  []string // the issuing body, top left; the last line is bold
	Number   string
	Republic string
	Motto    string
	DateLine string
	Title    string
	Period   string
	UnitLine string
	Notes    []string

	SummaryTitle string
	Summary      docTable
	SummaryLine  string

	UnitsTitle string
	Units      []docTable

	ExceptionsTitle string
	Exceptions      docTable
	NoExceptions    string // said instead of an empty table

	// The addendum: evidence received after a month's seal, one line a
	// station-month; none, no section.
	AddendumTitle string
	Addendum      []string

	Recipients     string
	RecipientsList string
	PreparedBy     string
	SignHint       string
	Generated      string
	PageFormat     string // "Trang %d/%s"
}

type docTable struct {
	Title   string
	Columns []docColumn
	Rows    [][]docCell
	Total   []docCell // drawn bold under the rows; nil for none
}

type docColumn struct {
	Label string
	Width float64 // in the PDF, mm; the page holds 170
	Align string  // L, C or R
	XLSX  float64 // the spreadsheet column's width, in characters
	Wrap  bool    // long text: wrap rather than clip
	Span  bool    // in the spreadsheet, spreads to the sheet's last column
}

// docCell is shown as Text; the spreadsheet stores Value (an int, a share
// as float64 when Pct, or a string) so that its figures stay figures.
type docCell struct {
	Text  string
	Value any
	Pct   bool
}

func textCell(s string) docCell { return docCell{Text: s, Value: s} }
func intCell(n int) docCell     { return docCell{Text: strconv.Itoa(n), Value: n} }
func (t *texts) pctCell(share float64) docCell {
	return docCell{Text: t.percent(share), Value: share, Pct: true}
}

// pageWidth is A4's 210 mm less the margins of Decree 30/2020/NĐ-CP
// (left 25, right 15; the decree allows 30-35 and 15-20).
const pageWidth = 170.0

func newDocument(r Report, t *texts) document {
	d := document{
		Lang: t.lang, Heading: t.heading(r), Number: t.number, Republic: t.republic, Motto: t.motto,
		DateLine: t.dateLine(r.Place, r.GeneratedAt.In(r.location())),
		Title:    t.title, Period: t.periodTitle(r.Period),
		SummaryTitle: t.sectionSummary, SummaryLine: t.summary(r.Totals),
		UnitsTitle: t.sectionUnits, ExceptionsTitle: t.sectionExceptions,
		Recipients: t.recipients, RecipientsList: t.recipientsList, PreparedBy: t.preparedBy, SignHint: t.signHint,
		Generated:  fmt.Sprintf(t.generated, t.timeLabel(r.GeneratedAt, r.location())),
		PageFormat: t.page,
	}
	if r.Unit.Code != "" {
		d.UnitLine = fmt.Sprintf(t.unitLine, t.unitName(r.Unit), r.Unit.Code)
	}
	if s := t.requirementLine(r); s != "" {
		d.Notes = append(d.Notes, s)
	}
	d.Notes = append(d.Notes, t.rule)
	if len(r.Addendum) > 0 {
		d.AddendumTitle = t.sectionAddendum
		d.Addendum = append(d.Addendum, t.addendumIntro)
		for _, l := range r.Addendum {
			d.Addendum = append(d.Addendum, t.lateText(l))
		}
	}

	d.Summary = docTable{Columns: []docColumn{
		{Label: t.colNo, Width: 10, Align: "C", XLSX: 6},
		{Label: t.colUnit, Width: 30, Align: "L", XLSX: 30, Wrap: true},
		{Label: t.colStations, Width: 15, Align: "R", XLSX: 11},
		{Label: t.statusLabel(Compliant), Width: 17, Align: "R", XLSX: 11},
		{Label: t.statusLabel(InProgress), Width: 17, Align: "R", XLSX: 13},
		{Label: t.statusLabel(AtRisk), Width: 16, Align: "R", XLSX: 13},
		{Label: t.statusLabel(NonCompliant), Width: 17, Align: "R", XLSX: 13},
		{Label: t.colRequired, Width: 16, Align: "R", XLSX: 11},
		{Label: t.colAired, Width: 14, Align: "R", XLSX: 11},
		{Label: t.colCoverage, Width: 18, Align: "R", XLSX: 13},
	}}
	tallyCells := func(tl Tally) []docCell {
		return []docCell{intCell(tl.Stations), intCell(tl.Compliant), intCell(tl.InProgress), intCell(tl.AtRisk), intCell(tl.NonCompliant),
			intCell(tl.Required), intCell(tl.Aired), t.pctCell(tl.Coverage)}
	}
	for i, u := range r.Units {
		d.Summary.Rows = append(d.Summary.Rows, append([]docCell{intCell(i + 1), textCell(t.unitName(u.Unit))}, tallyCells(u.Tally)...))
	}
	d.Summary.Total = append([]docCell{textCell(""), textCell(t.total)}, tallyCells(r.Totals)...)

	// A month's report needs no "months compliant" column; the name takes
	// its room.
	multi := len(r.Period.Months) > 1
	nameWidth := 48.0
	if !multi {
		nameWidth += 18
	}
	cols := []docColumn{
		{Label: t.colNo, Width: 11, Align: "C", XLSX: 6},
		{Label: t.colStation, Width: nameWidth, Align: "L", XLSX: 30, Wrap: true},
		{Label: t.colCode, Width: 14, Align: "C", XLSX: 11},
		{Label: t.colRequired, Width: 17, Align: "R", XLSX: 11},
		{Label: t.colAired, Width: 17, Align: "R", XLSX: 13},
	}
	if multi {
		cols = append(cols, docColumn{Label: t.colMonthsCompliant, Width: 18, Align: "C", XLSX: 13})
	}
	cols = append(cols,
		docColumn{Label: t.colStatus, Width: 27, Align: "L", XLSX: 22, Wrap: true},
		docColumn{Label: t.colCoverage, Width: 18, Align: "R", XLSX: 13})
	for i, u := range r.Units {
		title := t.unitName(u.Unit)
		if u.Unit.Code != "" && u.Unit.Name != "" {
			title += " (" + u.Unit.Code + ")"
		}
		tb := docTable{Title: fmt.Sprintf("%d. %s", i+1, title), Columns: cols}
		for j, sp := range u.Stations {
			row := []docCell{intCell(j + 1), textCell(sp.Name), textCell(sp.Station), intCell(sp.Required), intCell(sp.Aired)}
			if multi {
				row = append(row, textCell(fmt.Sprintf("%d/%d", sp.MonthsCompliant, len(r.Period.Months))))
			}
			row = append(row, textCell(t.statusLabel(sp.Status)), t.pctCell(sp.Coverage))
			tb.Rows = append(tb.Rows, row)
		}
		total := []docCell{textCell(""), textCell(t.subtotal), textCell(""), intCell(u.Tally.Required), intCell(u.Tally.Aired)}
		if multi {
			total = append(total, textCell(""))
		}
		total = append(total, textCell(fmt.Sprintf("%s %d/%d", t.statusLabel(Compliant), u.Tally.Compliant, u.Tally.Stations)), t.pctCell(u.Tally.Coverage))
		tb.Total = total
		d.Units = append(d.Units, tb)
	}

	d.Exceptions = docTable{Columns: []docColumn{
		{Label: t.colNo, Width: 11, Align: "C", XLSX: 6},
		{Label: t.colStation, Width: 36, Align: "L", XLSX: 30, Wrap: true},
		{Label: t.colTime, Width: 31, Align: "L", XLSX: 17},
		{Label: t.colKind, Width: 19, Align: "L", XLSX: 13, Wrap: true},
		{Label: t.colStatus, Width: 21, Align: "L", XLSX: 15, Wrap: true},
		{Label: t.colReason, Width: 52, Align: "L", XLSX: 13, Wrap: true, Span: true},
	}}
	loc := r.location()
	for i, e := range r.Exceptions {
		d.Exceptions.Rows = append(d.Exceptions.Rows, []docCell{intCell(i + 1), textCell(e.Name + " (" + e.Station + ")"),
			textCell(t.timeLabel(e.Start, loc)), textCell(t.kindLabel(e.Kind)), textCell(t.airingStatusLabel(e.Status)),
			textCell(ExceptionText(e, t.lang))})
	}
	if len(r.Exceptions) == 0 {
		d.NoExceptions = t.noExceptions
	}
	return d
}
