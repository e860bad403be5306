package audit

import (
	"embed"
	"fmt"
	"io"
	"strings"

	"github.com/go-pdf/fpdf"
	"golang.org/x/text/unicode/norm"
)

// The PDF's fonts travel inside the binary: the standard PDF fonts have no
// Vietnamese letters, and a daemon on a bare server has no system fonts to
// borrow. DejaVu (fonts/README.md) has them all as precomposed glyphs.
//
//go:embed fonts/DejaVuSerifCondensed.ttf fonts/DejaVuSerifCondensed-Bold.ttf fonts/DejaVuSerifCondensed-Italic.ttf
var reportFonts embed.FS

const (
	pdfFont = "dejavu-serif"

	pdfLeft, pdfRight, pdfTop, pdfBottom = 25.0, 15.0, 20.0, 20.0
	pdfPageHeight                        = 297.0
	pdfLine                              = 4.6 // table line height, mm
	pdfPad                               = 1.0 // table cell padding above and below, mm
	pdfCellMargin                        = 1.2 // table cell padding left and right, mm
)

type pdfDoc struct {
	f *fpdf.Fpdf
	d document
}

func writeReportPDF(w io.Writer, r Report, t *texts) error {
	f := fpdf.New("P", "mm", "A4", "")
	// The page count alias must be set before the fonts are added: it
	// decides which glyphs the subset keeps for the numbers that replace it.
	f.AliasNbPages("{nb}")
	for _, face := range []struct{ style, file string }{
		{"", "fonts/DejaVuSerifCondensed.ttf"}, {"B", "fonts/DejaVuSerifCondensed-Bold.ttf"}, {"I", "fonts/DejaVuSerifCondensed-Italic.ttf"},
	} {
		b, err := reportFonts.ReadFile(face.file)
		if err != nil {
			return fmt.Errorf("font %s: %w", face.file, err)
		}
		f.AddUTF8FontFromBytes(pdfFont, face.style, b)
	}
	d := newDocument(r, t)
	f.SetTitle(nfc(d.Title+" - "+d.Period), true)
	f.SetSubject(nfc(d.UnitLine), true)
	f.SetCreator("loaxa", true)
	f.SetLang(t.lang)
	// Dated by the evidence, not by the clock of the render, so that the same
	// report is the same file.
	f.SetCreationDate(r.GeneratedAt)
	f.SetModificationDate(r.GeneratedAt)
	f.SetCatalogSort(true)
	f.SetMargins(pdfLeft, pdfTop, pdfRight)
	f.SetAutoPageBreak(true, pdfBottom)
	f.SetCellMargin(pdfCellMargin)
	f.SetFooterFunc(func() {
		f.SetY(-13)
		f.SetFont(pdfFont, "I", 8)
		f.SetTextColor(90, 90, 90)
		f.CellFormat(pageWidth/2, 4, nfc(d.Generated), "", 0, "L", false, 0, "")
		f.CellFormat(pageWidth/2, 4, fmt.Sprintf(d.PageFormat, f.PageNo(), "{nb}"), "", 0, "R", false, 0, "")
		f.SetTextColor(0, 0, 0)
	})
	p := &pdfDoc{f: f, d: d}
	f.AddPage()
	p.header()
	p.section(d.SummaryTitle)
	p.table(d.Summary)
	p.paragraph(d.SummaryLine, "", 11)
	p.section(d.UnitsTitle)
	for _, tb := range d.Units {
		p.table(tb)
	}
	p.section(d.ExceptionsTitle)
	if d.NoExceptions != "" {
		p.paragraph(d.NoExceptions, "", 11)
	} else {
		p.table(d.Exceptions)
	}
	if len(d.Addendum) > 0 {
		p.section(d.AddendumTitle)
		for _, l := range d.Addendum {
			p.paragraph(l, "", 11)
		}
	}
	p.signature()
	if err := f.Output(w); err != nil {
		return fmt.Errorf("pdf: %w", err)
	}
	return nil
}

// nfc composes letters: fpdf draws one glyph per code point and cannot
// place a combining mark, so "e" + U+0302 + U+0301 must become "ế" first.
// Names imported from some spreadsheets come decomposed.
func nfc(s string) string { return norm.NFC.String(s) }

// header draws the top of an administrative document: the issuing body on
// the left, the nation and its motto on the right, the place and date, the
// title and the period.
func (p *pdfDoc) header() {
	f, d := p.f, p.d
	const leftW, rightX, rightW, lh = 72.0, pdfLeft + 72, pageWidth - 72, 5.6
	top := f.GetY()

	y := top
	for i, l := range d.Heading {
		style := ""
		if i == len(d.Heading)-1 {
			style = "B"
		}
		f.SetFont(pdfFont, style, 12)
		// A long body's name wraps inside its column rather than run into
		// the nation's heading.
		for _, part := range f.SplitText(nfc(l), leftW) {
			y = p.centred(pdfLeft, y, leftW, lh, part)
		}
	}
	// The short rule under the issuing body, a third of its width.
	f.SetLineWidth(0.3)
	f.Line(pdfLeft+leftW/3, y+0.6, pdfLeft+2*leftW/3, y+0.6)
	f.SetFont(pdfFont, "", 12)
	leftEnd := p.centred(pdfLeft, y+2.5, leftW, lh, d.Number)

	f.SetFont(pdfFont, "B", 12)
	y = p.centred(rightX, top, rightW, lh, d.Republic)
	f.SetFont(pdfFont, "B", 13)
	y = p.centred(rightX, y, rightW, lh, d.Motto)
	// The motto is underlined for exactly its width.
	mw := f.GetStringWidth(nfc(d.Motto))
	f.Line(rightX+(rightW-mw)/2, y+0.2, rightX+(rightW+mw)/2, y+0.2)
	f.SetFont(pdfFont, "I", 13)
	rightEnd := p.centred(rightX, y+2.5, rightW, lh, d.DateLine)

	y = max(leftEnd, rightEnd) + 8
	// The title stays on one line when a slightly smaller size allows it,
	// as a title should; only a title too long for that wraps.
	size := 14.0
	for ; size > 12; size -= 0.5 {
		f.SetFont(pdfFont, "B", size)
		if f.GetStringWidth(nfc(d.Title))+2.4 <= pageWidth {
			break
		}
	}
	f.SetFont(pdfFont, "B", size)
	f.SetXY(pdfLeft, y)
	f.MultiCell(pageWidth, 6.5, nfc(d.Title), "", "C", false)
	f.SetFont(pdfFont, "B", 13)
	y = p.centred(pdfLeft, f.GetY(), pageWidth, 6, d.Period)
	if d.UnitLine != "" {
		f.SetFont(pdfFont, "I", 12)
		y = p.centred(pdfLeft, y, pageWidth, 6, d.UnitLine)
	}
	f.SetY(y + 3)
	for _, n := range d.Notes {
		p.paragraph(n, "", 11)
	}
}

// centred writes one line centred in [x, x+w] at y and returns the y under it.
func (p *pdfDoc) centred(x, y, w, h float64, s string) float64 {
	p.f.SetXY(x, y)
	p.f.CellFormat(w, h, nfc(s), "", 0, "C", false, 0, "")
	return y + h
}

func (p *pdfDoc) paragraph(s, style string, size float64) {
	p.f.SetFont(pdfFont, style, size)
	p.f.SetX(pdfLeft)
	p.f.MultiCell(pageWidth, 5.2, nfc(s), "", "J", false)
	p.f.Ln(1)
}

func (p *pdfDoc) section(title string) {
	p.ensure(30)
	p.f.Ln(2)
	p.f.SetFont(pdfFont, "B", 12.5)
	p.f.SetX(pdfLeft)
	p.f.CellFormat(pageWidth, 7, nfc(title), "", 1, "L", false, 0, "")
}

// ensure starts a new page unless h mm are left above the bottom margin.
func (p *pdfDoc) ensure(h float64) bool {
	if p.f.GetY()+h > pdfPageHeight-pdfBottom {
		p.f.AddPage()
		return true
	}
	return false
}

// table draws a bordered table whose header row comes back on every page
// it runs onto.
func (p *pdfDoc) table(tb docTable) {
	f := p.f
	// A table's title, header and first row stay together.
	p.ensure(7 + 2*(2*pdfLine+2*pdfPad) + pdfLine)
	if tb.Title != "" {
		f.SetFont(pdfFont, "B", 11.5)
		f.SetX(pdfLeft)
		f.CellFormat(pageWidth, 7, nfc(tb.Title), "", 1, "L", false, 0, "")
	}
	head := make([]docCell, len(tb.Columns))
	for i, c := range tb.Columns {
		head[i] = textCell(c.Label)
	}
	drawHead := func() { p.row(tb, head, "B", true, true) }
	drawHead()
	for _, r := range tb.Rows {
		if p.row(tb, r, "", false, false) {
			drawHead()
			p.row(tb, r, "", false, false)
		}
	}
	if tb.Total != nil {
		if p.row(tb, tb.Total, "B", false, false) {
			drawHead()
			p.row(tb, tb.Total, "B", false, false)
		}
	}
	f.Ln(3)
}

// row draws one table row, wrapping the columns that wrap. When the row
// does not fit on the page it starts a new page and reports true without
// drawing, so that the caller repeats the header first.
func (p *pdfDoc) row(tb docTable, cells []docCell, style string, head, force bool) bool {
	f := p.f
	size := 10.0
	if head {
		size = 9.5
	}
	f.SetFont(pdfFont, style, size)
	lines := make([][]string, len(cells))
	sizes := make([]float64, len(cells))
	n := 1
	for i, c := range cells {
		col := tb.Columns[i]
		text := nfc(c.Text)
		wrap := col.Wrap || head
		// Text is set smaller rather than spill into the next column: a
		// figure or a code when it is wider than its column, a wrapping
		// text when one of its words is (a header's "Stations" would
		// otherwise break inside the word).
		if head && tooWide(f, text, col.Width-2*pdfCellMargin, true) {
			// A compound word in a header breaks after its hyphen
			// ("Non-" / "compliant") before it is set smaller.
			text = strings.ReplaceAll(text, "-", "- ")
		}
		sizes[i] = size
		for sizes[i] > 6 && tooWide(f, text, col.Width-2*pdfCellMargin, wrap) {
			sizes[i] -= 0.5
			f.SetFontSize(sizes[i])
		}
		if wrap {
			lines[i] = f.SplitText(text, col.Width)
		} else {
			lines[i] = []string{text}
		}
		f.SetFontSize(size)
		if len(lines[i]) == 0 {
			lines[i] = []string{""}
		}
		n = max(n, len(lines[i]))
	}
	h := float64(n)*pdfLine + 2*pdfPad
	if !force && f.GetY()+h > pdfPageHeight-pdfBottom {
		f.AddPage()
		return true
	}
	y := f.GetY()
	x := pdfLeft
	f.SetLineWidth(0.2)
	if head {
		f.SetFillColor(232, 232, 232)
	}
	for i, c := range tb.Columns {
		rectStyle := "D"
		if head {
			rectStyle = "FD"
		}
		f.Rect(x, y, c.Width, h, rectStyle)
		align := c.Align
		if head {
			align = "C"
		}
		// Lines sit in the middle of the row's height.
		ly := y + (h-float64(len(lines[i]))*pdfLine)/2
		f.SetFontSize(sizes[i])
		for j, l := range lines[i] {
			f.SetXY(x, ly+float64(j)*pdfLine)
			f.CellFormat(c.Width, pdfLine, l, "", 0, align, false, 0, "")
		}
		x += c.Width
	}
	f.SetXY(pdfLeft, y+h)
	return false
}

// tooWide reports whether text, or with wrap any of its words, is wider
// than w in the current font.
func tooWide(f *fpdf.Fpdf, text string, w float64, wrap bool) bool {
	if !wrap {
		return f.GetStringWidth(text) > w
	}
	for _, word := range strings.Fields(text) {
		if f.GetStringWidth(word) > w {
			return true
		}
	}
	return false
}

// signature draws where the report is received and signed, kept together
// on one page.
func (p *pdfDoc) signature() {
	f, d := p.f, p.d
	p.ensure(45)
	f.Ln(4)
	top := f.GetY()
	const leftW, rightX, rightW = 80.0, pdfLeft + 80, pageWidth - 80
	f.SetXY(pdfLeft, top)
	// On paper "Nơi nhận" is bold italic; the embedded family has no bold
	// italic face, and bold alone reads the same.
	f.SetFont(pdfFont, "B", 11)
	f.CellFormat(leftW, 5, nfc(d.Recipients), "", 2, "L", false, 0, "")
	f.SetFont(pdfFont, "", 10)
	for _, l := range strings.Split(d.RecipientsList, "\n") {
		f.SetX(pdfLeft)
		f.CellFormat(leftW, 4.6, nfc(l), "", 2, "L", false, 0, "")
	}
	f.SetFont(pdfFont, "B", 12.5)
	y := p.centred(rightX, top, rightW, 6, d.PreparedBy)
	f.SetFont(pdfFont, "I", 12)
	p.centred(rightX, y, rightW, 6, d.SignHint)
}
