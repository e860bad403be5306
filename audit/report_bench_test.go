package audit

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// syntheticYear is a year of rows for stations spread over units of
// perUnit stations: mostly compliant, with a missed replay and a failing
// month here and there, four airings each month as the plan asks.
func syntheticYear(stations, perUnit int) Report {
	period, _ := broadcast.ParsePeriod("2026")
	parents := make(map[string]UnitRef, stations)
	rows := make([]StationMonth, 0, stations*len(period.Months))
	for mi, m := range period.Months {
		first, _ := m.Bounds(reportZone)
		for s := range stations {
			code := fmt.Sprintf("%05d", 10000+s)
			if mi == 0 {
				u := s / perUnit
				parents[code] = UnitRef{Code: fmt.Sprintf("%03d", 100+u), Name: fmt.Sprintf("Huyện Thử Nghiệm %d", u+1)}
			}
			row := StationMonth{Station: code, Name: "Xã Đông Hoàng " + code, Unit: code, Month: m, Required: 4, Status: Compliant, Devices: 4}
			for k := range 4 {
				a := AiringRef{ID: fmt.Sprintf("%s-%s-%d", code, m, k), Kind: broadcast.KindReplay, Start: first.Add(time.Duration(24*7*k+6) * time.Hour), Status: broadcast.StatusAired}
				if k == 0 {
					a.Kind = broadcast.KindPremiere
				}
				if (s+mi)%37 == 0 && k == 3 {
					a.Status, a.Reason = broadcast.StatusMissed, broadcast.ReasonNoFinish
				}
				if a.Status == broadcast.StatusAired {
					row.Aired++
					a.Entries = []uint64{uint64(s*1000 + mi*10 + k)}
				}
				row.Airings = append(row.Airings, a)
			}
			if row.Aired < row.Required {
				row.Status = NonCompliant
			}
			row.Coverage = 0.75 + 0.25*float64((s+mi)%5)/4
			rows = append(rows, row)
		}
	}
	return NewReport(ReportSpec{
		Period: period, Unit: UnitRef{Code: "VN", Name: "Việt Nam"}, GeneratedAt: time.Date(2027, 1, 5, 8, 0, 0, 0, reportZone),
		Parents: parents,
	}, rows)
}

// BenchmarkRenderNationalYear renders a national yearly report: 10,047
// commune-level stations (Vietnam's communes before the 2025 merger) by 12
// months, 120,564 station-months. NewReport is timed apart from the
// writers.
func BenchmarkRenderNationalYear(b *testing.B) {
	base := syntheticYear(10047, 14)
	b.Run("build", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			NewReport(base.ReportSpec, base.Rows)
		}
	})
	for _, format := range []string{FormatCSV, FormatXLSX} {
		b.Run(format, func(b *testing.B) {
			b.ReportAllocs()
			var n countingWriter
			for b.Loop() {
				n = 0
				if err := RenderReport(&n, base, format, LangVI); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/(1<<20), "MiB/report")
		})
	}
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)
