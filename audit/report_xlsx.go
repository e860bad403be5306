package audit

import (
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"
)

// xlsxFont is the face of Vietnamese administrative documents; every
// Windows and macOS Excel has it, with every Vietnamese letter.
const xlsxFont = "Times New Roman"

// xlsxStyles are the cell styles of a report, made once per file.
type xlsxStyles struct {
	heading, headingBold, republic, motto, date, title, period, unitLine, note, section, tableTitle int
	th, text, center, num, pct, totalText, totalNum, totalPct                                       int
	recipientsTitle, recipients, sign, signHint, generated                                          int
	detailHead, detailText, detailNum, detailPct                                                    int
}

// writeReportXLSX writes the document on a first sheet, in the layout of the
// PDF, and every station-month on a second one for filtering and pivots.
// Both are streamed: a national year is 120,000 rows, which excelize's
// in-memory cell model would hold many times over.
func writeReportXLSX(w io.Writer, r Report, t *texts) (err error) {
	f := excelize.NewFile()
	defer func() {
		// Close removes the stream writers' temporary files.
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close workbook: %w", cerr)
		}
	}()
	// The workbook says when the evidence was judged, not when the bytes
	// were written, so that one report always yields the same properties.
	created := r.GeneratedAt.UTC().Format(time.RFC3339)
	if err := f.SetDocProps(&excelize.DocProperties{Title: t.title + " - " + t.periodTitle(r.Period), Creator: "loaxa",
		Created: created, Modified: created, Language: t.lang}); err != nil {
		return fmt.Errorf("document properties: %w", err)
	}
	st, err := newXLSXStyles(f)
	if err != nil {
		return err
	}
	if err := f.SetSheetName("Sheet1", t.sheetReport); err != nil {
		return fmt.Errorf("rename sheet: %w", err)
	}
	if _, err := f.NewSheet(t.sheetDetail); err != nil {
		return fmt.Errorf("add sheet %s: %w", t.sheetDetail, err)
	}
	// Page settings go into the worksheet before it is streamed: the stream
	// writer copies them around the rows it writes.
	a4, portrait, fitWidth, fitHeight := 9, "portrait", 1, 0
	for _, sheet := range []string{t.sheetReport, t.sheetDetail} {
		if err := f.SetPageLayout(sheet, &excelize.PageLayoutOptions{Size: &a4, Orientation: &portrait, FitToWidth: &fitWidth, FitToHeight: &fitHeight}); err != nil {
			return fmt.Errorf("page layout of %s: %w", sheet, err)
		}
		fit := true
		if err := f.SetSheetProps(sheet, &excelize.SheetPropsOptions{FitToPage: &fit}); err != nil {
			return fmt.Errorf("sheet properties of %s: %w", sheet, err)
		}
	}
	left, right, top, bottom := 25/25.4, 15/25.4, 20/25.4, 20/25.4
	if err := f.SetPageMargins(t.sheetReport, &excelize.PageLayoutMarginsOptions{Left: &left, Right: &right, Top: &top, Bottom: &bottom}); err != nil {
		return fmt.Errorf("page margins: %w", err)
	}
	if err := writeXLSXDocument(f, t.sheetReport, newDocument(r, t), st); err != nil {
		return fmt.Errorf("sheet %s: %w", t.sheetReport, err)
	}
	if err := writeXLSXDetail(f, t.sheetDetail, r, t, st); err != nil {
		return fmt.Errorf("sheet %s: %w", t.sheetDetail, err)
	}
	// No SetActiveSheet: the first sheet is active already, and the call
	// would parse every streamed sheet back into memory (a second of a
	// national year).
	if _, err := f.WriteTo(w); err != nil {
		return fmt.Errorf("write workbook: %w", err)
	}
	return nil
}

func newXLSXStyles(f *excelize.File) (xlsxStyles, error) {
	var st xlsxStyles
	var err error
	font := func(size float64, bold, italic bool) *excelize.Font {
		return &excelize.Font{Family: xlsxFont, Size: size, Bold: bold, Italic: italic}
	}
	border := []excelize.Border{{Type: "left", Color: "000000", Style: 1}, {Type: "right", Color: "000000", Style: 1},
		{Type: "top", Color: "000000", Style: 1}, {Type: "bottom", Color: "000000", Style: 1}}
	pct := "0.0%"
	center := &excelize.Alignment{Horizontal: "center", Vertical: "center", WrapText: true}
	for _, s := range []struct {
		id    *int
		style excelize.Style
	}{
		{&st.heading, excelize.Style{Font: font(12, false, false), Alignment: center}},
		{&st.headingBold, excelize.Style{Font: font(12, true, false), Alignment: center}},
		{&st.republic, excelize.Style{Font: font(12, true, false), Alignment: center}},
		{&st.motto, excelize.Style{Font: &excelize.Font{Family: xlsxFont, Size: 13, Bold: true, Underline: "single"}, Alignment: center}},
		{&st.date, excelize.Style{Font: font(13, false, true), Alignment: center}},
		{&st.title, excelize.Style{Font: font(14, true, false), Alignment: center}},
		{&st.period, excelize.Style{Font: font(13, true, false), Alignment: center}},
		{&st.unitLine, excelize.Style{Font: font(13, false, true), Alignment: center}},
		{&st.note, excelize.Style{Font: font(12, false, false), Alignment: &excelize.Alignment{Horizontal: "justify", Vertical: "top", WrapText: true}}},
		{&st.section, excelize.Style{Font: font(13, true, false)}},
		{&st.tableTitle, excelize.Style{Font: font(12, true, true)}},
		{&st.th, excelize.Style{Font: font(11, true, false), Alignment: center, Border: border, Fill: excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"E8E8E8"}}}},
		{&st.text, excelize.Style{Font: font(11, false, false), Border: border, Alignment: &excelize.Alignment{Vertical: "top", WrapText: true}}},
		{&st.center, excelize.Style{Font: font(11, false, false), Border: border, Alignment: &excelize.Alignment{Horizontal: "center", Vertical: "top"}}},
		{&st.num, excelize.Style{Font: font(11, false, false), Border: border, Alignment: &excelize.Alignment{Vertical: "top"}}},
		{&st.pct, excelize.Style{Font: font(11, false, false), Border: border, Alignment: &excelize.Alignment{Vertical: "top"}, CustomNumFmt: &pct}},
		{&st.totalText, excelize.Style{Font: font(11, true, false), Border: border, Alignment: &excelize.Alignment{Vertical: "top", WrapText: true}}},
		{&st.totalNum, excelize.Style{Font: font(11, true, false), Border: border, Alignment: &excelize.Alignment{Vertical: "top"}}},
		{&st.totalPct, excelize.Style{Font: font(11, true, false), Border: border, Alignment: &excelize.Alignment{Vertical: "top"}, CustomNumFmt: &pct}},
		{&st.recipientsTitle, excelize.Style{Font: font(12, true, true), Alignment: &excelize.Alignment{Vertical: "top"}}},
		{&st.recipients, excelize.Style{Font: font(11, false, false), Alignment: &excelize.Alignment{Vertical: "top", WrapText: true}}},
		{&st.sign, excelize.Style{Font: font(13, true, false), Alignment: center}},
		{&st.signHint, excelize.Style{Font: font(13, false, true), Alignment: center}},
		{&st.generated, excelize.Style{Font: &excelize.Font{Family: xlsxFont, Size: 9, Italic: true, Color: "555555"}}},
		{&st.detailHead, excelize.Style{Font: font(11, true, false), Alignment: center, Border: border, Fill: excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"E8E8E8"}}}},
		{&st.detailText, excelize.Style{Font: font(11, false, false)}},
		{&st.detailNum, excelize.Style{Font: font(11, false, false)}},
		{&st.detailPct, excelize.Style{Font: font(11, false, false), CustomNumFmt: &pct}},
	} {
		if *s.id, err = f.NewStyle(&s.style); err != nil {
			return st, fmt.Errorf("cell style: %w", err)
		}
	}
	return st, nil
}

// xlsxSheet is a stream writer that counts its rows, so that the layout
// reads top to bottom like the document.
type xlsxSheet struct {
	sw     *excelize.StreamWriter
	row    int
	cols   int
	widths []float64 // of each column, in characters
}

func (s *xlsxSheet) cell(col, row int) string {
	c, _ := excelize.CoordinatesToCellName(col, row)
	return c
}

// put writes one row starting at column from; a non-zero height fixes the
// row's height in points.
func (s *xlsxSheet) put(from int, cells []any, height float64) error {
	s.row++
	var opts []excelize.RowOpts
	if height > 0 {
		opts = append(opts, excelize.RowOpts{Height: height})
	}
	safeCells(cells)
	if err := s.sw.SetRow(s.cell(from, s.row), cells, opts...); err != nil {
		return fmt.Errorf("row %d: %w", s.row, err)
	}
	return nil
}

// safeCells passes the text cells of a row through SafeCell, in place.
func safeCells(cells []any) {
	for i, c := range cells {
		switch v := c.(type) {
		case string:
			cells[i] = SafeCell(v)
		case excelize.Cell:
			if t, ok := v.Value.(string); ok {
				v.Value = SafeCell(t)
				cells[i] = v
			}
		}
	}
}

func (s *xlsxSheet) merge(fromCol, toCol, row int) error {
	if toCol <= fromCol {
		return nil
	}
	if err := s.sw.MergeCell(s.cell(fromCol, row), s.cell(toCol, row)); err != nil {
		return fmt.Errorf("merge row %d: %w", row, err)
	}
	return nil
}

// line writes text across the whole sheet's width.
func (s *xlsxSheet) line(text string, style int, height float64) error {
	if err := s.put(1, []any{excelize.Cell{Value: text, StyleID: style}}, height); err != nil {
		return err
	}
	return s.merge(1, s.cols, s.row)
}

func writeXLSXDocument(f *excelize.File, sheet string, d document, st xlsxStyles) error {
	sw, err := f.NewStreamWriter(sheet)
	if err != nil {
		return fmt.Errorf("stream writer: %w", err)
	}
	// The sheet's columns serve every table: each is as wide as its
	// widest use.
	var widths []float64
	for _, tb := range append([]docTable{d.Summary, d.Exceptions}, d.Units...) {
		for i, c := range tb.Columns {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], c.XLSX)
		}
	}
	for i, wd := range widths {
		if err := sw.SetColWidth(i+1, i+1, wd); err != nil {
			return fmt.Errorf("column width: %w", err)
		}
	}
	s := &xlsxSheet{sw: sw, cols: len(widths), widths: widths}
	// The heading: the issuing body over columns A-C, the nation over E to
	// the last column, as on paper.
	leftTo, rightFrom := 3, 5
	left := append([]string{}, d.Heading...)
	left = append(left, d.Number)
	right := []string{d.Republic, d.Motto, "", d.DateLine}
	for i := range max(len(left), len(right)) {
		var cells []any
		if i < len(left) {
			style := st.heading
			if i == len(d.Heading)-1 {
				style = st.headingBold
			}
			cells = append(cells, excelize.Cell{Value: left[i], StyleID: style})
		} else {
			cells = append(cells, nil)
		}
		for range rightFrom - 2 {
			cells = append(cells, nil)
		}
		if i < len(right) {
			style := []int{st.republic, st.motto, st.date, st.date}[i]
			cells = append(cells, excelize.Cell{Value: right[i], StyleID: style})
		}
		if err := s.put(1, cells, 18); err != nil {
			return err
		}
		if err := s.merge(1, leftTo, s.row); err != nil {
			return err
		}
		if err := s.merge(rightFrom, s.cols, s.row); err != nil {
			return err
		}
	}
	s.row++
	if err := s.line(d.Title, st.title, 22); err != nil {
		return err
	}
	if err := s.line(d.Period, st.period, 18); err != nil {
		return err
	}
	if d.UnitLine != "" {
		if err := s.line(d.UnitLine, st.unitLine, 18); err != nil {
			return err
		}
	}
	s.row++
	for _, n := range d.Notes {
		if err := s.line(n, st.note, 34); err != nil {
			return err
		}
	}
	s.row++
	if err := s.line(d.SummaryTitle, st.section, 20); err != nil {
		return err
	}
	if err := s.table(d.Summary, st); err != nil {
		return err
	}
	if err := s.line(d.SummaryLine, st.note, 34); err != nil {
		return err
	}
	s.row++
	if err := s.line(d.UnitsTitle, st.section, 20); err != nil {
		return err
	}
	for _, tb := range d.Units {
		if err := s.line(tb.Title, st.tableTitle, 18); err != nil {
			return err
		}
		if err := s.table(tb, st); err != nil {
			return err
		}
		s.row++
	}
	if err := s.line(d.ExceptionsTitle, st.section, 20); err != nil {
		return err
	}
	if d.NoExceptions != "" {
		if err := s.line(d.NoExceptions, st.note, 0); err != nil {
			return err
		}
	} else if err := s.table(d.Exceptions, st); err != nil {
		return err
	}
	s.row++
	if len(d.Addendum) > 0 {
		if err := s.line(d.AddendumTitle, st.section, 20); err != nil {
			return err
		}
		for _, l := range d.Addendum {
			if err := s.line(l, st.note, 0); err != nil {
				return err
			}
		}
		s.row++
	}
	// Signature block: recipients on the left, the preparer on the right.
	sign := []struct {
		left, right           string
		leftStyle, rightStyle int
		height                float64
	}{
		{d.Recipients, d.PreparedBy, st.recipientsTitle, st.sign, 18},
		{d.RecipientsList, d.SignHint, st.recipients, st.signHint, 32},
	}
	for _, l := range sign {
		cells := []any{excelize.Cell{Value: l.left, StyleID: l.leftStyle}}
		for range rightFrom - 2 {
			cells = append(cells, nil)
		}
		cells = append(cells, excelize.Cell{Value: l.right, StyleID: l.rightStyle})
		if err := s.put(1, cells, l.height); err != nil {
			return err
		}
		if err := s.merge(1, leftTo, s.row); err != nil {
			return err
		}
		if err := s.merge(rightFrom, s.cols, s.row); err != nil {
			return err
		}
	}
	s.row += 3
	if err := s.line(d.Generated, st.generated, 0); err != nil {
		return err
	}
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// table writes a header row, the rows and the total. Figures are stored as
// numbers and shares as fractions with a percent format, so that the sheet
// can be summed and checked.
func (s *xlsxSheet) table(tb docTable, st xlsxStyles) error {
	head := make([]any, len(tb.Columns))
	for i, c := range tb.Columns {
		head[i] = excelize.Cell{Value: c.Label, StyleID: st.th}
	}
	if err := s.put(1, s.span(tb, head, st.th), 30); err != nil {
		return err
	}
	if err := s.mergeSpan(tb); err != nil {
		return err
	}
	emit := func(cells []docCell, text, num, pct int) error {
		out := make([]any, len(cells))
		for i, c := range cells {
			style := text
			switch {
			case c.Pct:
				style = pct
			case tb.Columns[i].Align == "C":
				style = st.center
				if text == st.totalText {
					style = st.totalText
				}
			default:
				if _, ok := c.Value.(int); ok {
					style = num
				}
			}
			var v any = c.Value
			if c.Value == "" {
				v = nil
			}
			out[i] = excelize.Cell{Value: v, StyleID: style}
		}
		if err := s.put(1, s.span(tb, out, text), s.height(tb, cells)); err != nil {
			return err
		}
		return s.mergeSpan(tb)
	}
	for _, row := range tb.Rows {
		if err := emit(row, st.text, st.num, st.pct); err != nil {
			return err
		}
	}
	if tb.Total != nil {
		if err := emit(tb.Total, st.totalText, st.totalNum, st.totalPct); err != nil {
			return err
		}
	}
	return nil
}

// height is the height in points that shows every line of a row's
// wrapping cells, or 0 for the default when each fits on one line. Excel
// does not fit a row to a merged cell by itself, and the reasons of the
// exceptions are merged across the sheet's last columns.
func (s *xlsxSheet) height(tb docTable, cells []docCell) float64 {
	lines := 1
	for i, c := range cells {
		col := tb.Columns[i]
		if !col.Wrap {
			continue
		}
		width := s.widths[i]
		if col.Span {
			width = 0
			for _, w := range s.widths[i:] {
				width += w
			}
		}
		// A character of the 11-point font is about one unit of column
		// width; a little is kept for the cell's padding.
		perLine := max(int(width)-2, 1)
		lines = max(lines, (utf8.RuneCountInString(c.Text)+perLine-1)/perLine)
	}
	if lines == 1 {
		return 0
	}
	return 15 * float64(lines)
}

// span pads a row whose last column spreads to the sheet's edge with
// bordered empty cells, so that the merged cell keeps its frame.
func (s *xlsxSheet) span(tb docTable, cells []any, style int) []any {
	if len(tb.Columns) == 0 || !tb.Columns[len(tb.Columns)-1].Span {
		return cells
	}
	for len(cells) < s.cols {
		cells = append(cells, excelize.Cell{StyleID: style})
	}
	return cells
}

func (s *xlsxSheet) mergeSpan(tb docTable) error {
	if len(tb.Columns) == 0 || !tb.Columns[len(tb.Columns)-1].Span {
		return nil
	}
	return s.merge(len(tb.Columns), s.cols, s.row)
}

// writeXLSXDetail writes one row per station-month, in the order of the
// tables, with a frozen header.
func writeXLSXDetail(f *excelize.File, sheet string, r Report, t *texts, st xlsxStyles) error {
	sw, err := f.NewStreamWriter(sheet)
	if err != nil {
		return fmt.Errorf("stream writer: %w", err)
	}
	cols := []struct {
		label string
		width float64
	}{
		{t.colParent, 28}, {t.colCode, 9}, {t.colStation, 28}, {t.colMonth, 9}, {t.colRequired, 10}, {t.colAired, 10},
		{t.colPending, 10}, {t.colStatus, 22}, {t.colCoverage, 13}, {t.colDevices, 11}, {t.colStatusCode, 15},
	}
	head := make([]any, len(cols))
	for i, c := range cols {
		if err := sw.SetColWidth(i+1, i+1, c.width); err != nil {
			return fmt.Errorf("column width: %w", err)
		}
		head[i] = excelize.Cell{Value: c.label, StyleID: st.detailHead}
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return fmt.Errorf("freeze header: %w", err)
	}
	if err := sw.SetRow("A1", head, excelize.RowOpts{Height: 30}); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	// One slice reused for every row: the stream writer encodes it before
	// SetRow returns.
	row := make([]any, len(cols))
	n := 1
	for _, u := range r.Units {
		parent := t.unitName(u.Unit)
		for _, sp := range u.Stations {
			for _, m := range sp.Months {
				n++
				row[0] = excelize.Cell{Value: parent, StyleID: st.detailText}
				row[1] = excelize.Cell{Value: m.Station, StyleID: st.detailText}
				row[2] = excelize.Cell{Value: m.Name, StyleID: st.detailText}
				row[3] = excelize.Cell{Value: string(m.Month), StyleID: st.detailText}
				row[4] = excelize.Cell{Value: m.Required, StyleID: st.detailNum}
				row[5] = excelize.Cell{Value: m.Aired, StyleID: st.detailNum}
				row[6] = excelize.Cell{Value: m.Pending, StyleID: st.detailNum}
				row[7] = excelize.Cell{Value: t.statusLabel(m.Status), StyleID: st.detailText}
				row[8] = excelize.Cell{Value: m.Coverage, StyleID: st.detailPct}
				row[9] = excelize.Cell{Value: m.Devices, StyleID: st.detailNum}
				row[10] = excelize.Cell{Value: m.Status, StyleID: st.detailText}
				safeCells(row)
				cell, _ := excelize.CoordinatesToCellName(1, n)
				if err := sw.SetRow(cell, row); err != nil {
					return fmt.Errorf("row %d: %w", n, err)
				}
			}
		}
	}
	if n > 1 {
		last, _ := excelize.CoordinatesToCellName(len(cols), n)
		// A table gives the header its filter buttons; the lightest style
		// keeps the sheet plain.
		if err := sw.AddTable(&excelize.Table{Range: "A1:" + last, Name: "StationMonths", StyleName: "TableStyleLight1"}); err != nil {
			return fmt.Errorf("table: %w", err)
		}
	}
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
