package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// table writes aligned columns. tabwriter counts runes, not bytes, so
// Vietnamese names in precomposed form (NFC, as the official unit lists
// and browsers produce) line up; text in decomposed form (NFD, combining
// accents) would be counted a little too wide.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

// row writes one line. Cells are sanitized: a title is written by one
// user and read in another's terminal, so control characters (escape
// sequences, tabs, newlines) must not reach it.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = sanitize(c)
		if cells[i] == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// fields writes "name: value" lines aligned on the values, for one object.
func fields(w io.Writer, kv ...string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for i := 0; i+1 < len(kv); i += 2 {
		v := sanitize(kv[i+1])
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", kv[i], v)
	}
	return tw.Flush()
}

// sanitize replaces control characters with spaces.
func sanitize(s string) string {
	if !strings.ContainsFunc(s, isControl) && utf8.ValidString(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
}

func isControl(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }

// truncate shortens s to n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return strings.TrimSpace(string(r[:n-1])) + "…"
}

// printJSON writes the daemon's JSON indented but otherwise as it came, so
// that scripts see the fields docs/api.md documents, including any this client
// does not know.
func printJSON(w io.Writer, raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("the daemon's answer is not JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// when formats a time in the chosen zone; seconds appear only when they
// are not zero, as most airings start on the minute.
func (c *cli) when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.In(c.loc)
	if t.Second() != 0 {
		return t.Format("2006-01-02 15:04:05")
	}
	return t.Format("2006-01-02 15:04")
}

// parseWhen reads a time as typed: RFC 3339, or a local date and time in
// the chosen zone ("2026-12-14 06:30", "2026-12-14T06:30", "2026-12-14").
func (c *cli) parseWhen(flagName, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, c.loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usagef("--%s %q: want a time like 2026-12-14T06:30:00+07:00 or \"2026-12-14 06:30\" (in %s)", flagName, s, c.loc)
}

// length formats a programme's duration as h:mm:ss or m:ss.
func length(ms int64) string {
	if ms <= 0 {
		return ""
	}
	s := (ms + 500) / 1000
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// size formats a byte count in binary units.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func itoa(n int) string { return strconv.Itoa(n) }

func percent(f float64) string { return fmt.Sprintf("%.0f%%", f*100) }

// isTerminal reports whether w is a character device, as a terminal is.
// It errs towards "yes" for /dev/null, which is harmless for a progress
// bar and for refusing binary output.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
