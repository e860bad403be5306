package audit

import (
	"bufio"
	"encoding/csv"
	"io"
	"strconv"
	"strings"
)

// reportCSVColumns are the CSV's columns, in an order scripts may rely on:
// add at the end, never reorder. The header is the same in every language;
// only status_label is translated.
var reportCSVColumns = []string{"parent_unit", "parent_unit_name", "station", "station_name", "unit", "month",
	"required", "aired", "pending", "status", "status_label", "coverage", "devices", "airings"}

// writeReportCSV writes one row per station-month, grouped by unit as the
// tables are. It starts with a UTF-8 byte order mark: without it Excel reads
// the file as the local code page and mangles every Vietnamese name.
func writeReportCSV(w io.Writer, r Report, t *texts) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.WriteString("\ufeff"); err != nil {
		return err
	}
	cw := csv.NewWriter(bw)
	if err := cw.Write(reportCSVColumns); err != nil {
		return err
	}
	rec := make([]string, len(reportCSVColumns))
	var ids strings.Builder
	for _, u := range r.Units {
		for _, sp := range u.Stations {
			for _, m := range sp.Months {
				ids.Reset()
				for i, a := range m.Airings {
					if i > 0 {
						ids.WriteByte(' ')
					}
					ids.WriteString(a.ID)
				}
				rec[0], rec[1], rec[2], rec[3], rec[4], rec[5] = SafeCell(u.Unit.Code), SafeCell(u.Unit.Name), SafeCell(m.Station), SafeCell(m.Name), SafeCell(m.Unit), string(m.Month)
				rec[6], rec[7], rec[8] = strconv.Itoa(m.Required), strconv.Itoa(m.Aired), strconv.Itoa(m.Pending)
				rec[9], rec[10] = SafeCell(m.Status), SafeCell(t.statusLabel(m.Status))
				rec[11], rec[12], rec[13] = strconv.FormatFloat(m.Coverage, 'f', 4, 64), strconv.Itoa(m.Devices), SafeCell(ids.String())
				if err := cw.Write(rec); err != nil {
					return err
				}
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}
