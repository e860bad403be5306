package audit

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteReportSamples writes the fixture's report in every format and
// language, and a year of 60 stations, into the directory named by
// LOAXA_REPORT_SAMPLES, for a person to open and look at:
//
//	LOAXA_REPORT_SAMPLES=/tmp/rep go test ./audit/ -run TestWriteReportSamples
//	pdftoppm -png -r 60 /tmp/rep/fixture-vi.pdf /tmp/rep/page
func TestWriteReportSamples(t *testing.T) {
	dir := os.Getenv("LOAXA_REPORT_SAMPLES")
	if dir == "" {
		t.Skip("set LOAXA_REPORT_SAMPLES to a directory to write sample reports")
	}
	year := syntheticYear(60, 25)
	year.Issuer = UnitRef{Code: "38", Name: "Tỉnh Thanh Hóa"}
	year.Unit = UnitRef{Code: "380", Name: "Thành phố Thanh Hóa"}
	year = NewReport(year.ReportSpec, year.Rows)
	for _, format := range []string{FormatJSON, FormatCSV, FormatXLSX, FormatPDF, FormatHTML} {
		for _, lang := range []string{LangVI, LangEN} {
			for name, r := range map[string]Report{"fixture": reportFixture(), "year": year} {
				path := filepath.Join(dir, name+"-"+lang+"."+format)
				if err := os.WriteFile(path, renderReport(t, r, format, lang), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}
