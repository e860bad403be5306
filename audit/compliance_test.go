package audit

import (
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestJudgeStationMonth(t *testing.T) {
	p := broadcast.DefaultPolicy()
	st := broadcast.Station{ID: "14755", Unit: "14755", Name: "Phường Hàm Rồng"}
	monthEnd := at(t, "2027-01-01T00:00:00+07:00")
	mk := func(day int, s broadcast.Status) *broadcast.Airing {
		start := time.Date(2026, 12, day, 6, 0, 0, 0, time.FixedZone("ICT", 7*3600))
		return &broadcast.Airing{ID: "A", Month: "2026-12", Kind: broadcast.KindReplay, Start: start, NotAfter: start.Add(15 * time.Minute), Status: s,
			Devices: map[string]*broadcast.DeviceAiring{"d1": {Status: s, Events: []broadcast.EventRef{{Entry: uint64(day)}}}}}
	}
	mid := at(t, "2026-12-15T12:00:00+07:00")
	for name, tc := range map[string]struct {
		airings []*broadcast.Airing
		now     time.Time
		want    string
		aired   int
	}{
		"four aired":          {[]*broadcast.Airing{mk(1, "aired"), mk(8, "aired"), mk(15, "aired"), mk(22, "aired")}, at(t, "2026-12-23T00:00:00+07:00"), Compliant, 4},
		"on track":            {[]*broadcast.Airing{mk(1, "aired"), mk(8, "aired"), mk(22, "sent"), mk(29, "planned")}, mid, InProgress, 2},
		"missed one, no room": {[]*broadcast.Airing{mk(1, "aired"), mk(8, "missed"), mk(22, "sent"), mk(29, "planned")}, mid, AtRisk, 1},
		"month over, short":   {[]*broadcast.Airing{mk(1, "aired"), mk(8, "missed"), mk(15, "aired"), mk(22, "aired")}, monthEnd, NonCompliant, 3},
		"nothing planned":     {nil, mid, AtRisk, 0},
	} {
		t.Run(name, func(t *testing.T) {
			var sums []broadcast.AiringSummary
			for _, a := range tc.airings {
				sums = append(sums, a.Summary())
			}
			row := Judge(st, "2026-12", monthEnd, sums, 1, tc.now, p)
			if row.Status != tc.want || row.Aired != tc.aired || row.Required != 4 {
				t.Fatalf("row = %+v, want %s with %d aired of 4", row, tc.want, tc.aired)
			}
			if len(row.Airings) != len(tc.airings) {
				t.Fatalf("row names %d airings, want every one of %d", len(row.Airings), len(tc.airings))
			}
		})
	}
}
