package broadcast

import (
	"fmt"
	"strconv"
	"time"
)

// Month is a calendar month, "2026-12", in the station's time zone.
type Month string

// MinYear and MaxYear bound every month and period the daemon takes: loaxa
// keeps no airings before 2000, and a year past 2100 is a typo (or a probe
// for a report that loops over centuries of empty months).
const (
	MinYear = 2000
	MaxYear = 2100
)

// ParseMonth checks the YYYY-MM form and that the year is within
// MinYear-MaxYear.
func ParseMonth(s string) (Month, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil || len(s) != 7 {
		return "", fmt.Errorf("month %q: want YYYY-MM, e.g. 2026-12", s)
	}
	if y := t.Year(); y < MinYear || y > MaxYear {
		return "", fmt.Errorf("month %q: the year must be between %d and %d", s, MinYear, MaxYear)
	}
	return Month(s), nil
}

// MonthOf is the month of t in loc.
func MonthOf(t time.Time, loc *time.Location) Month {
	return Month(t.In(loc).Format("2006-01"))
}

// Bounds returns the first instant of the month and of the next one in loc.
func (m Month) Bounds(loc *time.Location) (time.Time, time.Time) {
	t, err := time.ParseInLocation("2006-01", string(m), loc)
	if err != nil {
		return time.Time{}, time.Time{}
	}
	return t, t.AddDate(0, 1, 0)
}

// Period is what a report covers: a month ("2026-12"), a half-year
// ("2026-H2") or a year ("2026").
type Period struct {
	Name   string
	Months []Month
}

// ParsePeriod accepts the three forms of docs/api.md.
func ParsePeriod(s string) (Period, error) {
	bad := fmt.Errorf("period %q: want a month (2026-12), a half-year (2026-H1, 2026-H2) or a year (2026), from %d to %d", s, MinYear, MaxYear)
	switch {
	case len(s) == 7 && s[4] == '-' && s[5] != 'H':
		m, err := ParseMonth(s)
		if err != nil {
			return Period{}, bad
		}
		return Period{Name: s, Months: []Month{m}}, nil
	case len(s) == 7 && s[4:6] == "-H":
		y, err := strconv.Atoi(s[:4])
		if err != nil || y < MinYear || y > MaxYear || s[0] == '+' || s[0] == '-' || (s[6] != '1' && s[6] != '2') {
			return Period{}, bad
		}
		first := 1
		if s[6] == '2' {
			first = 7
		}
		return Period{Name: s, Months: months(y, first, 6)}, nil
	case len(s) == 4:
		y, err := strconv.Atoi(s)
		if err != nil || y < MinYear || y > MaxYear || s[0] == '+' || s[0] == '-' {
			return Period{}, bad
		}
		return Period{Name: s, Months: months(y, 1, 12)}, nil
	}
	return Period{}, bad
}

func months(year, first, n int) []Month {
	out := make([]Month, n)
	for i := range out {
		out[i] = Month(fmt.Sprintf("%04d-%02d", year, first+i))
	}
	return out
}
