package daemon

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/xuri/excelize/v2"
)

// reportGet fetches a report as a browser or a script would, and returns
// what came back as it is.
func reportGet(t *testing.T, c client, path, token string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", c.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, resp.Header, body
}

// TestComplianceReportFormats asks the real daemon for district 380's
// December in every format. Hàm Rồng has its four airings planned and one
// of them cancelled by Lan; the other 48 communes of the district have
// nothing planned yet, so every station is at risk on 10 December.
func TestComplianceReportFormats(t *testing.T) {
	f := startDaemon(t)
	var prog struct{ ID string }
	if code := f.c.upload(f.lan, map[string]string{"unit": "14755", "month": "2026-12", "title": "Chuyển đổi số tháng 12"}, wav(10*time.Second), &prog); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	f.c.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", f.minh, nil, nil, 200)
	var list struct{ Airings []broadcast.Airing }
	f.c.json("GET", "/api/v1/airings?station=14755", f.lan, nil, &list, 200)
	if len(list.Airings) != 4 {
		t.Fatalf("%d airings for Hàm Rồng, want 4", len(list.Airings))
	}
	f.c.json("POST", "/api/v1/airings/"+list.Airings[3].ID+"/cancel", f.lan, nil, nil, 200)

	const base = "/api/v1/compliance?period=2026-12&unit=380"
	check := func(t *testing.T, format, ctype, disposition string) []byte {
		t.Helper()
		code, h, body := reportGet(t, f.c, base+"&format="+format, f.auditor)
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		if got := h.Get("Content-Type"); got != ctype {
			t.Errorf("Content-Type %q, want %q", got, ctype)
		}
		if got := h.Get("Content-Disposition"); got != disposition {
			t.Errorf("Content-Disposition %q, want %q", got, disposition)
		}
		return body
	}

	t.Run("csv", func(t *testing.T) {
		body := check(t, "csv", "text/csv; charset=utf-8", `attachment; filename="bao-cao-2026-12-380.csv"`)
		if !bytes.HasPrefix(body, []byte("\ufeff")) {
			t.Error("no UTF-8 byte order mark")
		}
		recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("\ufeff")))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 50 {
			t.Fatalf("%d records, want a header and 49 communes", len(recs))
		}
		for _, rec := range recs[1:] {
			if rec[2] == "14755" {
				if got := strings.Join(rec[:12], "|"); got != "380|Thành phố Thanh Hóa|14755|Phường Hàm Rồng|14755|2026-12|4|0|3|at_risk|Có nguy cơ không đạt|0.0000" {
					t.Errorf("Hàm Rồng: %s", got)
				}
				return
			}
		}
		t.Error("no row for Hàm Rồng")
	})

	t.Run("xlsx", func(t *testing.T) {
		body := check(t, "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", `attachment; filename="bao-cao-2026-12-380.xlsx"`)
		x, err := excelize.OpenReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		rows, err := x.GetRows("Báo cáo")
		if err != nil {
			t.Fatal(err)
		}
		if a1, _ := x.GetCellValue("Báo cáo", "A1"); a1 != "UBND TỈNH THANH HÓA" {
			t.Errorf("A1 = %q", a1)
		}
		// The summary row of the district: 49 stations, all at risk, 196
		// airings required, none aired yet.
		for _, r := range rows {
			if len(r) >= 9 && r[1] == "Thành phố Thanh Hóa" {
				if got := strings.Join(r[2:9], " "); got != "49 0 0 49 0 196 0" {
					t.Errorf("summary of 380: %s, want 49 0 0 49 0 196 0", got)
				}
				return
			}
		}
		t.Errorf("no summary row for Thành phố Thanh Hóa in %q", rows)
	})

	t.Run("pdf", func(t *testing.T) {
		body := check(t, "pdf", "application/pdf", `attachment; filename="bao-cao-2026-12-380.pdf"`)
		if !bytes.HasPrefix(body, []byte("%PDF-")) {
			t.Fatalf("not a PDF: %q", body[:min(len(body), 16)])
		}
		if _, err := exec.LookPath("pdftotext"); err != nil {
			t.Skip("pdftotext (Debian poppler-utils) is not installed; CI installs it")
		}
		path := filepath.Join(t.TempDir(), "report.pdf")
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("pdftotext", "-enc", "UTF-8", path, "-").CombinedOutput()
		if err != nil {
			t.Fatalf("pdftotext: %v: %s", err, out)
		}
		text := strings.Join(strings.Fields(string(out)), " ")
		for _, want := range []string{"BÁO CÁO KẾT QUẢ PHÁT SÓNG CHƯƠNG TRÌNH CHUYỂN ĐỔI SỐ", "Tháng 12/2026", "UBND TỈNH THANH HÓA", "THÀNH PHỐ THANH HÓA",
			"Thanh Hóa, ngày 10 tháng 12 năm 2026", "Phường Hàm Rồng", "Bị hủy bởi Lan", "Tổng số 49 đài"} {
			if !strings.Contains(text, want) {
				t.Errorf("the PDF lacks %q", want)
			}
		}
	})

	t.Run("html", func(t *testing.T) {
		body := string(check(t, "html", "text/html; charset=utf-8", `inline; filename="bao-cao-2026-12-380.html"`))
		for _, want := range []string{`<html lang="vi">`, "Phường Hàm Rồng", "<td class=\"r\">196</td>", "Bị hủy bởi Lan"} {
			if !strings.Contains(body, want) {
				t.Errorf("the page lacks %q", want)
			}
		}
		code, h, en := reportGet(t, f.c, base+"&format=html&lang=en", f.auditor)
		if code != 200 || !strings.Contains(string(en), "Cancelled by Lan") || !strings.Contains(h.Get("Content-Disposition"), "report-2026-12-380.html") {
			t.Errorf("English: %d %s", code, h.Get("Content-Disposition"))
		}
	})

	t.Run("json", func(t *testing.T) {
		// The default stays the JSON it always was.
		code, h, body := reportGet(t, f.c, base, f.lan)
		var rep struct {
			Period, Unit string
			Totals       map[string]int
			Rows         []struct{ Station, Status string }
			Exceptions   []struct{ Station, Reason, Text string }
		}
		if err := json.Unmarshal(body, &rep); err != nil || code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Fatalf("%d %s: %v", code, h.Get("Content-Type"), err)
		}
		if rep.Period != "2026-12" || rep.Unit != "380" || len(rep.Rows) != 49 || rep.Totals["stations"] != 49 || rep.Totals["at_risk"] != 49 || rep.Totals["required"] != 196 {
			t.Errorf("period %s unit %s rows %d totals %v", rep.Period, rep.Unit, len(rep.Rows), rep.Totals)
		}
		if len(rep.Exceptions) != 1 || rep.Exceptions[0].Station != "14755" || rep.Exceptions[0].Text != "Bị hủy bởi Lan" {
			t.Errorf("exceptions %+v", rep.Exceptions)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			query, token, field string
			code                int
		}{
			{base + "&format=docx", f.auditor, "format", 422},
			{base + "&format=pdf&lang=fr", f.auditor, "lang", 422},
			{"/api/v1/compliance?period=2026-13&unit=380&format=pdf", f.auditor, "period", 422},
			{base + "&format=pdf", f.other, "", 403}, // an operator of 381 asks for 380
		} {
			code, _, body := reportGet(t, f.c, tc.query, tc.token)
			var e apiError
			_ = json.Unmarshal(body, &e)
			if code != tc.code || e.Error.Field != tc.field {
				t.Errorf("%s: %d %s, want %d on field %q", tc.query, code, body, tc.code, tc.field)
			}
		}
	})
}
