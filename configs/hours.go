package configs

import (
	"fmt"
	"strings"
)

// minutesPerDay is also the largest end of a window: "24:00" closes a day that airs until
// midnight, which "23:59" could not express without losing the last minute.
const minutesPerDay = 24 * 60

// Hours is a daily window of local time, in minutes after midnight: an airing may start at
// Start or later and must start before End. Keeping minutes rather than a time.Time lets the
// scheduler apply the window to any date without the date or time zone leaking into config.
type Hours struct {
	Start int // 0 ≤ Start < End
	End   int // Start < End ≤ 1440 ("24:00")
}

// ParseHours reads "HH:MM-HH:MM", e.g. "05:00-21:00"; "00:00-24:00" is the whole day.
// A window that wraps past midnight ("21:00-05:00") is refused rather than guessed at: the
// scheduler reasons in single days, and a wrapped window is more often a typo than a wish.
func ParseHours(s string) (Hours, error) {
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return Hours{}, fmt.Errorf("must be HH:MM-HH:MM, e.g. 05:00-21:00, got %q", s)
	}
	start, err := parseClock(strings.TrimSpace(from), false)
	if err != nil {
		return Hours{}, fmt.Errorf("start of %q: %w", s, err)
	}
	end, err := parseClock(strings.TrimSpace(to), true)
	if err != nil {
		return Hours{}, fmt.Errorf("end of %q: %w", s, err)
	}
	h := Hours{Start: start, End: end}
	if err := h.check(); err != nil {
		return Hours{}, err
	}
	return h, nil
}

// check is shared by ParseHours and Validate, so that an Hours built in Go code is held to the
// same rules as one read from a file.
func (h Hours) check() error {
	if h.Start < 0 || h.Start >= minutesPerDay || h.End <= 0 || h.End > minutesPerDay {
		return fmt.Errorf("%d-%d is not a window of minutes within a day", h.Start, h.End)
	}
	if h.Start >= h.End {
		return fmt.Errorf("start must be before end, got %s (for all day write 00:00-24:00)", h)
	}
	return nil
}

// Contains reports whether an airing may start at minute m after local midnight.
func (h Hours) Contains(m int) bool { return h.Start <= m && m < h.End }

// String returns the form ParseHours reads, so that errors and logs quote what the operator wrote.
func (h Hours) String() string { return formatClock(h.Start) + "-" + formatClock(h.End) }

// MarshalText and UnmarshalText let Hours travel through encoders (JSON in the API, YAML
// dumps of the effective configuration) in the same form as the file.
func (h Hours) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (h *Hours) UnmarshalText(b []byte) error {
	v, err := ParseHours(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// ParseClock reads a local time of day "HH:MM" (00:00 to 23:59) into minutes after midnight.
// Exactly two digits each: "6:00" is refused so that every slot in every file reads alike and
// sorts as text.
func ParseClock(s string) (int, error) { return parseClock(s, false) }

func parseClock(s string, allowMidnightEnd bool) (int, error) {
	if len(s) != 5 || s[2] != ':' || !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[3]) || !isDigit(s[4]) {
		return 0, fmt.Errorf("must be HH:MM, got %q", s)
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if allowMidnightEnd && h == 24 && m == 0 {
		return minutesPerDay, nil
	}
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("%q is not a time of day (00:00 to 23:59)", s)
	}
	return h*60 + m, nil
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

func formatClock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }
