package audit

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// SealedMonth is what a report needs of a month's seal: its operation, the
// last as-run entry it covers and its per-station figures.
type SealedMonth struct {
	Op      uint64
	At      time.Time
	LastSeq uint64
	Figures map[string]Figure // by station
}

// Late is a line of a report's addendum: a station's sealed month with
// evidence received after its seal (the as-run entries after the sealed
// segment), what the sealed figure is and what the evidence gives now. The
// sealed figure stays the report's.
type Late struct {
	Station string          `json:"station"`
	Name    string          `json:"name"`
	Month   broadcast.Month `json:"month"`
	SealOp  uint64          `json:"seal_op"`
	Sealed  Figure          `json:"sealed"`
	Aired   int             `json:"aired"`  // what the evidence gives now
	Status  string          `json:"status"` // idem
	Entries []uint64        `json:"entries"`
}

// ApplySeals keeps the sealed figures of rows whose month is sealed (their
// required, aired and status become the sealed ones; their airings and
// coverage stay as the evidence has them now) and returns the addendum: the
// station-months with evidence received after their seal, or whose figures
// the evidence now gives differently.
func ApplySeals(rows []StationMonth, seals map[broadcast.Month]SealedMonth) []Late {
	var out []Late
	for i := range rows {
		row := &rows[i]
		sm, ok := seals[row.Month]
		if !ok {
			continue
		}
		sealed, ok := sm.Figures[row.Station]
		if !ok {
			continue // a station added after the seal: nothing was sealed of it
		}
		var late []uint64
		for _, a := range row.Airings {
			for _, e := range a.Entries {
				if e > sm.LastSeq {
					late = append(late, e)
				}
			}
		}
		slices.Sort(late)
		if len(late) > 0 || row.Aired != sealed.Aired || row.Status != sealed.Status || row.Required != sealed.Required {
			out = append(out, Late{Station: row.Station, Name: row.Name, Month: row.Month, SealOp: sm.Op, Sealed: sealed,
				Aired: row.Aired, Status: row.Status, Entries: late})
		}
		row.Required, row.Aired, row.Status, row.Pending = sealed.Required, sealed.Aired, sealed.Status, 0
	}
	return out
}

// lateText is an addendum line for a person.
func (t *texts) lateText(l Late) string {
	entries := make([]string, len(l.Entries))
	for i, e := range l.Entries {
		entries[i] = fmt.Sprint(e)
	}
	if t.lang == LangEN {
		return fmt.Sprintf("%s (%s), %s: sealed %d of %d aired (%s, operation %d); with the evidence received since, %d aired (%s). Late entries: %s.",
			l.Name, l.Station, l.Month, l.Sealed.Aired, l.Sealed.Required, t.statusLabel(l.Sealed.Status), l.SealOp, l.Aired, t.statusLabel(l.Status), orNone(entries, "none"))
	}
	return fmt.Sprintf("%s (%s), tháng %s: đã niêm phong %d/%d buổi (%s, thao tác %d); theo chứng cứ nhận sau đó, %d buổi (%s). Bản ghi nhận muộn: %s.",
		l.Name, l.Station, l.Month, l.Sealed.Aired, l.Sealed.Required, t.statusLabel(l.Sealed.Status), l.SealOp, l.Aired, t.statusLabel(l.Status), orNone(entries, "không có"))
}

func orNone(s []string, none string) string {
	if len(s) == 0 {
		return none
	}
	return strings.Join(s, ", ")
}
