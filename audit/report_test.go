package audit

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-pdf/fpdf"
	"github.com/loaxa/loaxa/broadcast"
	"github.com/xuri/excelize/v2"
)

var updateReportGolden = flag.Bool("update", false, "rewrite the golden files of the report tests from the current output")

var reportZone = time.FixedZone("ICT", 7*3600)

// reportFixture is December 2026 in two districts of Thanh Hoa: every state
// a station-month can be in, the exceptions of each kind, and a coverage
// that is not a round number.
func reportFixture() Report {
	start := func(day, hour int) time.Time {
		return time.Date(2026, 12, day, hour, 0, 0, 0, time.UTC).Add(-7 * time.Hour)
	}
	ref := func(id string, kind broadcast.Kind, day int, s broadcast.Status, reason string, entries ...uint64) AiringRef {
		return AiringRef{ID: id, Kind: kind, Start: start(day, 6), Status: s, Reason: reason, Entries: entries}
	}
	four := func(prefix string, statuses [4]broadcast.Status, reasons [4]string) []AiringRef {
		kinds := [4]broadcast.Kind{broadcast.KindPremiere, broadcast.KindReplay, broadcast.KindReplay, broadcast.KindReplay}
		var out []AiringRef
		for i := range 4 {
			var entries []uint64
			if statuses[i] == broadcast.StatusAired {
				entries = []uint64{uint64(100 + 10*i), uint64(101 + 10*i)}
			}
			out = append(out, ref(fmt.Sprintf("%s-%d", prefix, i+1), kinds[i], 1+7*i, statuses[i], reasons[i], entries...))
		}
		return out
	}
	aired, missed, failed, cancelled, sent := broadcast.StatusAired, broadcast.StatusMissed, broadcast.StatusFailed, broadcast.StatusCancelled, broadcast.StatusSent
	rows := []StationMonth{
		{Station: "14755", Name: "Phường Hàm Rồng", Unit: "14755", Month: "2026-12", Required: 4, Aired: 4, Status: Compliant, Coverage: 1, Devices: 3,
			Airings: four("a14755", [4]broadcast.Status{aired, aired, aired, aired}, [4]string{})},
		{Station: "14758", Name: "Phường Đông Thọ", Unit: "14758", Month: "2026-12", Required: 4, Aired: 3, Status: NonCompliant, Coverage: 0.875, Devices: 4,
			Airings: four("a14758", [4]broadcast.Status{aired, failed, aired, aired}, [4]string{})},
		{Station: "16381", Name: "Xã Đông Hoàng", Unit: "16381", Month: "2026-12", Required: 4, Aired: 2, Pending: 1, Status: AtRisk, Coverage: 0.5, Devices: 2,
			Airings: four("a16381", [4]broadcast.Status{aired, missed, aired, sent}, [4]string{"", broadcast.ReasonNoFinish, "", ""})},
		{Station: "14809", Name: "Phường Bắc Sơn", Unit: "14809", Month: "2026-12", Required: 4, Aired: 2, Pending: 2, Status: InProgress, Coverage: 2.0 / 3, Devices: 3,
			Airings: four("a14809", [4]broadcast.Status{aired, aired, "planned", "planned"}, [4]string{})},
		{Station: "14812", Name: "Phường Ba Đình", Unit: "14812", Month: "2026-12", Required: 4, Aired: 4, Status: Compliant, Coverage: 0.75, Devices: 4,
			Airings: append(four("a14812", [4]broadcast.Status{aired, aired, aired, aired}, [4]string{}),
				ref("a14812-5", broadcast.KindReplay, 29, cancelled, "cancelled by Nguyễn Thị Lan"))},
	}
	rows[1].Airings[1].Causes = []Cause{{Reason: "power", Devices: 2}, {Reason: "download_failed", Devices: 1}}
	return NewReport(ReportSpec{
		Period:      broadcast.Period{Name: "2026-12", Months: []broadcast.Month{"2026-12"}},
		Unit:        UnitRef{Code: "38", Name: "Tỉnh Thanh Hóa"},
		Issuer:      UnitRef{Code: "38", Name: "Tỉnh Thanh Hóa"},
		GeneratedAt: time.Date(2026, 11, 27, 9, 30, 0, 0, reportZone),
		Parents: map[string]UnitRef{
			"14755": {"380", "Thành phố Thanh Hóa"}, "14758": {"380", "Thành phố Thanh Hóa"}, "16381": {"380", "Thành phố Thanh Hóa"},
			"14809": {"381", "Thị xã Bỉm Sơn"}, "14812": {"381", "Thị xã Bỉm Sơn"},
		},
	}, rows)
}

func TestReportGroupsAndRollsUp(t *testing.T) {
	r := reportFixture()
	if len(r.Units) != 2 || r.Units[0].Unit.Code != "380" || r.Units[1].Unit.Code != "381" {
		t.Fatalf("units %+v, want 380 then 381", r.Units)
	}
	u := r.Units[0]
	if got := []string{u.Stations[0].Station, u.Stations[1].Station, u.Stations[2].Station}; strings.Join(got, " ") != "14755 14758 16381" {
		t.Errorf("stations of 380 in order %v", got)
	}
	want := Tally{Stations: 3, Compliant: 1, AtRisk: 1, NonCompliant: 1, Required: 12, Aired: 9}
	got := u.Tally
	got.Coverage, got.coverageSum = 0, 0
	if got != want {
		t.Errorf("tally of 380 %+v, want %+v", got, want)
	}
	// (1×4 + 0.875×3 + 0.5×2) / 9 aired airings
	if c := u.Tally.Coverage; c < 0.8472 || c > 0.8473 {
		t.Errorf("coverage of 380 %.4f, want 0.8472 (weighted by aired airings)", c)
	}
	if r.Totals.Stations != 5 || r.Totals.Compliant != 2 || r.Totals.InProgress != 1 || r.Totals.Required != 20 || r.Totals.Aired != 15 {
		t.Errorf("totals %+v", r.Totals)
	}
	var ex []string
	for _, e := range r.Exceptions {
		ex = append(ex, e.Airing+" "+string(e.Status))
	}
	if strings.Join(ex, ", ") != "a14758-2 failed, a16381-2 missed, a14812-5 cancelled" {
		t.Errorf("exceptions %v", ex)
	}
}

// A half-year is compliant for a station only when every month is; one
// failed month fails it, and otherwise the worst month says where it stands.
func TestReportPeriodStatus(t *testing.T) {
	h2 := broadcast.Period{Name: "2026-H2", Months: []broadcast.Month{"2026-07", "2026-08", "2026-09", "2026-10", "2026-11", "2026-12"}}
	months := func(statuses ...string) []StationMonth {
		var out []StationMonth
		for i, s := range statuses {
			out = append(out, StationMonth{Station: "14755", Name: "Phường Hàm Rồng", Unit: "14755", Month: h2.Months[i], Required: 4, Aired: 4, Status: s, Coverage: 1})
		}
		return out
	}
	c, p, a, n := Compliant, InProgress, AtRisk, NonCompliant
	for name, tc := range map[string]struct {
		rows []StationMonth
		want string
		ok   int
	}{
		"every month":         {months(c, c, c, c, c, c), Compliant, 6},
		"one month failed":    {months(c, c, n, c, c, c), NonCompliant, 5},
		"last month running":  {months(c, c, c, c, c, p), InProgress, 5},
		"at risk beats going": {months(c, p, c, c, a, p), AtRisk, 3},
		"failed beats risk":   {months(c, a, n, c, c, c), NonCompliant, 4},
		"a month has no row":  {months(c, c, c, c, c), InProgress, 5},
	} {
		t.Run(name, func(t *testing.T) {
			r := NewReport(ReportSpec{Period: h2}, tc.rows)
			sp := r.Units[0].Stations[0]
			if sp.Status != tc.want || sp.MonthsCompliant != tc.ok {
				t.Fatalf("status %s with %d months compliant, want %s with %d", sp.Status, sp.MonthsCompliant, tc.want, tc.ok)
			}
		})
	}
}

func renderReport(t testing.TB, r Report, format, lang string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := RenderReport(&b, r, format, lang); err != nil {
		t.Fatalf("render %s %s: %v", format, lang, err)
	}
	return b.Bytes()
}

func reportGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateReportGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./audit/ -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; if the change is meant, run go test ./audit/ -run %s -update and review the diff\ngot:\n%s", path, t.Name(), got)
	}
}

func TestReportCSVGolden(t *testing.T) {
	for _, lang := range []string{LangVI, LangEN} {
		t.Run(lang, func(t *testing.T) {
			out := renderReport(t, reportFixture(), FormatCSV, lang)
			if !bytes.HasPrefix(out, []byte("\xef\xbb\xbfparent_unit,")) {
				t.Fatalf("the CSV does not start with a UTF-8 BOM and the header: %q", out[:min(len(out), 20)])
			}
			reportGolden(t, "report-2026-12-38."+lang+".csv.golden", out)
		})
	}
}

func TestReportJSONGolden(t *testing.T) {
	out := renderReport(t, reportFixture(), FormatJSON, LangVI)
	// The shape GET /api/v1/compliance had before stays: period, unit,
	// totals and rows with the fields docs/api.md names.
	var v struct {
		Period string
		Unit   string
		Totals map[string]int
		Rows   []map[string]any
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	if v.Period != "2026-12" || v.Unit != "38" || v.Totals["stations"] != 5 || v.Totals["compliant"] != 2 || v.Totals["aired"] != 15 || len(v.Rows) != 5 {
		t.Errorf("period %q unit %q totals %v rows %d", v.Period, v.Unit, v.Totals, len(v.Rows))
	}
	for _, f := range []string{"station", "unit", "month", "required", "aired", "status", "coverage"} {
		if _, ok := v.Rows[0][f]; !ok {
			t.Errorf("a row lacks %q: %v", f, v.Rows[0])
		}
	}
	// The golden copy is indented so that its diffs can be read.
	var b bytes.Buffer
	if err := json.Indent(&b, out, "", "  "); err != nil {
		t.Fatal(err)
	}
	reportGolden(t, "report-2026-12-38.vi.json.golden", b.Bytes())
}

func TestReportXLSX(t *testing.T) {
	for _, tc := range []struct {
		lang, sheet, detail, title, total, compliant string
	}{
		{LangVI, "Báo cáo", "Chi tiết", "BÁO CÁO KẾT QUẢ PHÁT SÓNG CHƯƠNG TRÌNH CHUYỂN ĐỔI SỐ", "Tổng cộng", "Đạt"},
		{LangEN, "Report", "Detail", "REPORT ON THE BROADCASTING OF THE DIGITAL TRANSFORMATION PROGRAMME", "Total", "Compliant"},
	} {
		t.Run(tc.lang, func(t *testing.T) {
			out := renderReport(t, reportFixture(), FormatXLSX, tc.lang)
			f, err := excelize.OpenReader(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := f.GetSheetList(); len(got) != 2 || got[0] != tc.sheet || got[1] != tc.detail {
				t.Fatalf("sheets %v", got)
			}
			rows, err := f.GetRows(tc.sheet)
			if err != nil {
				t.Fatal(err)
			}
			cell := func(ref string) string {
				t.Helper()
				v, err := f.GetCellValue(tc.sheet, ref)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			// find is the row (1-based) whose column B reads name, after row from.
			find := func(from int, name string) int {
				t.Helper()
				for i := from; i < len(rows); i++ {
					if len(rows[i]) > 1 && rows[i][1] == name {
						return i + 1
					}
				}
				t.Fatalf("no row names %q after row %d", name, from)
				return 0
			}
			want := map[string]string{"A1": map[string]string{LangVI: "UBND TỈNH THANH HÓA", LangEN: "PEOPLE'S COMMITTEE OF THANH HÓA PROVINCE"}[tc.lang]}
			if tc.lang == LangVI {
				want["E1"], want["E2"], want["E4"] = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "Độc lập - Tự do - Hạnh phúc", "Thanh Hóa, ngày 27 tháng 11 năm 2026"
			}
			for ref, v := range want {
				if got := cell(ref); got != v {
					t.Errorf("%s = %q, want %q", ref, got, v)
				}
			}
			found := false
			for _, r := range rows {
				if len(r) > 0 && r[0] == tc.title {
					found = true
				}
			}
			if !found {
				t.Errorf("no cell holds the title %q", tc.title)
			}
			// Summary: the row of district 380, then the grand total.
			r := find(0, "Thành phố Thanh Hóa")
			for col, v := range map[string]string{"C": "3", "D": "1", "E": "0", "F": "1", "G": "1", "H": "12", "I": "9"} {
				if got := cell(fmt.Sprint(col, r)); got != v {
					t.Errorf("summary 380 %s%d = %q, want %s", col, r, got, v)
				}
			}
			if cov, err := f.GetCellValue(tc.sheet, fmt.Sprint("J", r), excelize.Options{RawCellValue: true}); err != nil || !strings.HasPrefix(cov, "0.8472") {
				t.Errorf("summary 380 coverage J%d = %q %v, want the fraction 0.8472…", r, cov, err)
			}
			tot := find(r, tc.total)
			for col, v := range map[string]string{"C": "5", "D": "2", "H": "20", "I": "15"} {
				if got := cell(fmt.Sprint(col, tot)); got != v {
					t.Errorf("total %s%d = %q, want %s", col, tot, got, v)
				}
			}
			// The table of 380: Phường Đông Thọ aired 3 of 4, non-compliant.
			s := find(tot, "Phường Đông Thọ")
			if got := []string{cell(fmt.Sprint("C", s)), cell(fmt.Sprint("D", s)), cell(fmt.Sprint("E", s))}; strings.Join(got, " ") != "14758 4 3" {
				t.Errorf("Phường Đông Thọ C:E = %v, want 14758 4 3", got)
			}
			// A month's table has no "months compliant" column: status is F.
			if got := cell(fmt.Sprint("F", find(tot, "Phường Hàm Rồng"))); got != tc.compliant {
				t.Errorf("Phường Hàm Rồng's status %q, want %q", got, tc.compliant)
			}
			// The exceptions name the station and explain the reason.
			e := find(s, "Phường Đông Thọ (14758)")
			reason := map[string]string{LangVI: "Mất điện khi đang phát (2 thiết bị)", LangEN: "Power was lost during the play (2 devices)"}[tc.lang]
			if got := cell(fmt.Sprint("F", e)); !strings.Contains(got, reason) {
				t.Errorf("exception reason %q lacks %q", got, reason)
			}
			// The detail sheet has a row per station-month.
			detail, err := f.GetRows(tc.detail)
			if err != nil {
				t.Fatal(err)
			}
			if len(detail) != 6 {
				t.Fatalf("detail has %d rows, want a header and 5", len(detail))
			}
			if got := strings.Join(detail[2][:7], "|"); got != "Thành phố Thanh Hóa|14758|Phường Đông Thọ|2026-12|4|3|0" {
				t.Errorf("detail row 3 = %s", got)
			}
		})
	}
}

func reportPDFText(t *testing.T, pdf []byte) string {
	t.Helper()
	if _, err := exec.LookPath("pdftotext"); err != nil {
		t.Skip("pdftotext (Debian poppler-utils) is not installed; CI installs it")
	}
	path := filepath.Join(t.TempDir(), "report.pdf")
	if err := os.WriteFile(path, pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-enc", "UTF-8", path, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v: %s", err, out)
	}
	return string(out)
}

func TestReportPDF(t *testing.T) {
	for _, tc := range []struct {
		lang string
		want []string
	}{
		{LangVI, []string{"BÁO CÁO KẾT QUẢ PHÁT SÓNG CHƯƠNG TRÌNH CHUYỂN ĐỔI SỐ", "UBND TỈNH THANH HÓA", "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
			"Độc lập - Tự do - Hạnh phúc", "Thanh Hóa, ngày 27 tháng 11 năm 2026", "Tháng 12/2026", "Thành phố Thanh Hóa", "Thị xã Bỉm Sơn",
			"Phường Hàm Rồng", "Xã Đông Hoàng", "Mất điện khi đang phát (2 thiết bị)", "Bị hủy bởi Nguyễn Thị Lan", "Trang 1/"}},
		{LangEN, []string{"SOCIALIST REPUBLIC OF VIETNAM", "December 2026", "Thành phố Thanh Hóa", "Phường Đông Thọ", "Power was lost during the play", "Page 1/"}},
	} {
		t.Run(tc.lang, func(t *testing.T) {
			out := renderReport(t, reportFixture(), FormatPDF, tc.lang)
			if !bytes.HasPrefix(out, []byte("%PDF-")) {
				t.Fatalf("not a PDF: %q", out[:min(len(out), 16)])
			}
			// pdftotext breaks lines where a cell wraps its text; the title
			// is on one line, with every diacritic intact.
			text := reportPDFText(t, out)
			if tc.lang == LangVI && !strings.Contains(text, "\nBÁO CÁO KẾT QUẢ PHÁT SÓNG CHƯƠNG TRÌNH CHUYỂN ĐỔI SỐ\n") {
				t.Errorf("the title is not one line of the PDF's text:\n%s", text)
			}
			flat := strings.Join(strings.Fields(text), " ")
			for _, w := range tc.want {
				if !strings.Contains(flat, w) {
					t.Errorf("the PDF's text lacks %q:\n%s", w, text)
				}
			}
			if strings.Contains(text, "{nb}") {
				t.Error("the page count alias was not replaced")
			}
		})
	}
}

// Page 1 renders to an image: the document is a real PDF a viewer draws,
// not just text a parser finds.
func TestReportPDFRenders(t *testing.T) {
	if _, err := exec.LookPath("pdftoppm"); err != nil {
		t.Skip("pdftoppm (Debian poppler-utils) is not installed; CI installs it")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "report.pdf")
	if err := os.WriteFile(path, renderReport(t, reportFixture(), FormatPDF, LangVI), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", path, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v: %s", err, out)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "page*.png"))
	if len(pages) != 1 {
		t.Fatalf("pdftoppm made %v", pages)
	}
	png, err := os.ReadFile(pages[0])
	if err != nil {
		t.Fatal(err)
	}
	// An A4 page at 60 dpi is 496×702 pixels.
	if !bytes.HasPrefix(png, []byte("\x89PNG")) || len(png) < 5000 {
		t.Fatalf("page 1 is %d bytes, not a drawn page", len(png))
	}
}

// Decomposed names (as some spreadsheets write them) come out composed: fpdf
// cannot place combining marks.
func TestReportPDFComposesDecomposedNames(t *testing.T) {
	r := reportFixture()
	decomposed := "Phu\u031bo\u031b\u0300ng Ha\u0300m Ro\u0302\u0300ng" // Phường Hàm Rồng in NFD
	for i := range r.Units[0].Stations {
		if r.Units[0].Stations[i].Station == "14755" {
			r.Units[0].Stations[i].Name = decomposed
		}
	}
	text := reportPDFText(t, renderReport(t, r, FormatPDF, LangVI))
	if !strings.Contains(text, "Phường Hàm Rồng") {
		t.Errorf("the decomposed name did not come out composed:\n%s", text)
	}
}

// Every letter of the Vietnamese alphabet, with every tone, has a glyph in
// each embedded face: fpdf draws a missing glyph as nothing, silently.
func TestReportFontsCoverVietnamese(t *testing.T) {
	letters := "aàáảãạăằắẳẵặâầấẩẫậbcdđeèéẻẽẹêềếểễệghiìíỉĩịklmnoòóỏõọôồốổỗộơờớởỡợpqrstuùúủũụưừứửữựvxyỳýỷỹỵ"
	letters += strings.ToUpper(letters)
	for _, face := range []struct{ style, file string }{
		{"", "fonts/DejaVuSerifCondensed.ttf"}, {"B", "fonts/DejaVuSerifCondensed-Bold.ttf"}, {"I", "fonts/DejaVuSerifCondensed-Italic.ttf"},
	} {
		b, err := reportFonts.ReadFile(face.file)
		if err != nil {
			t.Fatal(err)
		}
		f := fpdf.New("P", "mm", "A4", "")
		f.AddUTF8FontFromBytes("x", face.style, b)
		f.SetFont("x", face.style, 12)
		if f.Err() {
			t.Fatalf("%s: %v", face.file, f.Error())
		}
		for _, c := range letters {
			if f.GetStringWidth(string(c)) <= 0 {
				t.Errorf("%s has no glyph for %q", face.file, c)
			}
		}
	}
}

func TestReportHTML(t *testing.T) {
	r := reportFixture()
	r.Units[0].Unit.Name = `Thành phố <script>alert("x")</script> & Co`
	r.Units[0].Stations[0].Name = `Phường "Hàm" <Rồng>`
	out := string(renderReport(t, r, FormatHTML, LangVI))
	for _, bad := range []string{"<script>", `<Rồng>`} {
		if strings.Contains(out, bad) {
			t.Errorf("the page carries %q unescaped", bad)
		}
	}
	for _, want := range []string{`&lt;script&gt;`, `Phường &#34;Hàm&#34; &lt;Rồng&gt;`, "BÁO CÁO KẾT QUẢ PHÁT SÓNG CHƯƠNG TRÌNH CHUYỂN ĐỔI SỐ", `<html lang="vi">`,
		"Thanh Hóa, ngày 27 tháng 11 năm 2026", "Không nhận được báo cáo phát xong trước thời hạn"} {
		if !strings.Contains(out, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// Self-contained: nothing is fetched from anywhere.
	if m := regexp.MustCompile(`(?i)(src|href)\s*=|@import|url\(`).FindString(out); m != "" {
		t.Errorf("the page refers to an outside resource: %q", m)
	}
	if en := string(renderReport(t, r, FormatHTML, LangEN)); !strings.Contains(en, `<html lang="en">`) || !strings.Contains(en, "Second half") && !strings.Contains(en, "December 2026") {
		t.Error("the English page is not in English")
	}
}

func TestReportPeriodTitles(t *testing.T) {
	for _, tc := range []struct{ period, vi, en string }{
		{"2026-12", "Tháng 12/2026", "December 2026"},
		{"2026-H1", "6 tháng đầu năm 2026", "First half of 2026"},
		{"2026-H2", "6 tháng cuối năm 2026", "Second half of 2026"},
		{"2026", "Năm 2026", "Year 2026"},
	} {
		p, err := broadcast.ParsePeriod(tc.period)
		if err != nil {
			t.Fatal(err)
		}
		if got := vietnamese.periodTitle(p); got != tc.vi {
			t.Errorf("%s in Vietnamese: %q, want %q", tc.period, got, tc.vi)
		}
		if got := english.periodTitle(p); got != tc.en {
			t.Errorf("%s in English: %q, want %q", tc.period, got, tc.en)
		}
	}
	// Decree 30/2020: days below 10 and months 1 and 2 with a leading zero.
	if got := vietnamese.dateLine("Thanh Hóa", time.Date(2027, 2, 5, 0, 0, 0, 0, reportZone)); got != "Thanh Hóa, ngày 05 tháng 02 năm 2027" {
		t.Errorf("date line %q", got)
	}
}

func TestReasonTexts(t *testing.T) {
	for _, code := range []string{"no_finish", "short_play", "wrong_audio", "off_schedule", "expired", "power", "download_failed",
		"checksum_mismatch", "player_error", "other", "cancelled", "preempted", "withdrawn"} {
		vi, en := ReasonText(code, LangVI), ReasonText(code, LangEN)
		if vi == code || en == code || vi == en {
			t.Errorf("%s: vi %q, en %q", code, vi, en)
		}
	}
	if got := ReasonText("cancelled by Nguyễn Thị Lan", LangVI); got != "Bị hủy bởi Nguyễn Thị Lan" {
		t.Errorf("cancelled by: %q", got)
	}
	if got := ReasonText("reason_from_the_future", LangVI); got != "reason_from_the_future" {
		t.Errorf("an unknown code is hidden: %q", got)
	}
	e := Exception{Status: broadcast.StatusFailed, Causes: []Cause{{Reason: "power", Devices: 1}}}
	if got := ExceptionText(e, LangEN); got != "Too few devices aired it: Power was lost during the play (1 device)" {
		t.Errorf("exception text %q", got)
	}
}

func TestReportNamesAndTypes(t *testing.T) {
	r := reportFixture()
	r.Period.Name, r.Unit.Code = "2026-H2", "380"
	for _, tc := range []struct{ format, lang, name, ctype string }{
		{FormatPDF, LangVI, "bao-cao-2026-H2-380.pdf", "application/pdf"},
		{FormatXLSX, LangEN, "report-2026-H2-380.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
		{FormatCSV, LangVI, "bao-cao-2026-H2-380.csv", "text/csv; charset=utf-8"},
		{FormatHTML, LangVI, "bao-cao-2026-H2-380.html", "text/html; charset=utf-8"},
		{"", LangVI, "bao-cao-2026-H2-380.json", "application/json; charset=utf-8"},
	} {
		if got := ReportFileName(r, tc.format, tc.lang); got != tc.name {
			t.Errorf("file name %q, want %q", got, tc.name)
		}
		if got := ReportContentType(tc.format); got != tc.ctype {
			t.Errorf("content type of %q: %q", tc.format, got)
		}
	}
	r.Unit.Code = `../"x`
	if got := ReportFileName(r, FormatPDF, LangVI); got != "bao-cao-2026-H2-x.pdf" {
		t.Errorf("an odd unit code leaks into the file name: %q", got)
	}
	for _, bad := range [][2]string{{"docx", LangVI}, {FormatPDF, "fr"}} {
		if err := RenderReport(&bytes.Buffer{}, r, bad[0], bad[1]); err == nil {
			t.Errorf("format %q lang %q rendered", bad[0], bad[1])
		}
	}
}

// Every format renders an empty report (a unit without stations) without
// failing.
func TestReportEmpty(t *testing.T) {
	r := NewReport(ReportSpec{Period: broadcast.Period{Name: "2026", Months: []broadcast.Month{"2026-01"}}, Unit: UnitRef{Code: "384", Name: "Huyện Mường Lát"}}, nil)
	for _, format := range []string{FormatJSON, FormatCSV, FormatXLSX, FormatPDF, FormatHTML} {
		if out := renderReport(t, r, format, LangVI); len(out) == 0 {
			t.Errorf("%s is empty", format)
		}
	}
}
