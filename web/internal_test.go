package web

import (
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCatalogueKeys(t *testing.T) {
	verbs := regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`)
	for k, v := range vi {
		e, ok := en[k]
		if !ok {
			t.Errorf("%q has no English", k)
			continue
		}
		if a, b := verbs.FindAllString(v, -1), verbs.FindAllString(e, -1); !slices.Equal(a, b) {
			t.Errorf("%q: Vietnamese has verbs %v, English %v", k, a, b)
		}
	}
	for k := range en {
		if _, ok := vi[k]; !ok {
			t.Errorf("%q has no Vietnamese", k)
		}
	}
}

// TestImports keeps the console a client of the API: no path into
// storage, the scheduler, the devices or the audit package, even through
// another package.
func TestImports(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"storage", "scheduler", "devices", "audit", "api"} {
			if dep == "github.com/loaxa/loaxa/"+banned || strings.HasPrefix(dep, "github.com/loaxa/loaxa/"+banned+"/") {
				t.Errorf("web depends on %s", dep)
			}
		}
		if strings.Contains(dep, "bbolt") {
			t.Errorf("web depends on %s", dep)
		}
	}
}

func TestParseLocalTime(t *testing.T) {
	loc := time.FixedZone("ICT", 7*3600)
	for _, c := range []struct {
		in   string
		want string
	}{
		{"2026-12-05T06:30", "2026-12-05T06:30:00+07:00"},
		{" 2026-12-05T06:30:15 ", "2026-12-05T06:30:15+07:00"},
		{"2026-02-29T06:30", ""},
		{"2026-12-05 06:30", ""},
		{"2026-12-05T25:00", ""},
		{"2026-12-05T06:30+07:00", ""},
		{"", ""},
	} {
		got, err := parseLocalTime(c.in, loc)
		if c.want == "" {
			if err == nil {
				t.Errorf("%q: got %v, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got.Format(time.RFC3339) != c.want {
			t.Errorf("%q: got %v %v, want %s", c.in, got, err, c.want)
		}
	}
}

func FuzzParseLocalTime(f *testing.F) {
	for _, s := range []string{"2026-12-05T06:30", "2026-12-05T06:30:00", "x", "9999-99-99T99:99"} {
		f.Add(s)
	}
	loc := time.FixedZone("ICT", 7*3600)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseLocalTime(s, loc)
		if err != nil {
			return
		}
		// What is accepted round-trips, in the stations' zone.
		if _, off := got.Zone(); off != 7*3600 {
			t.Fatalf("%q: zone offset %d", s, off)
		}
		if again, err := parseLocalTime(got.Format("2006-01-02T15:04:05"), loc); err != nil || !again.Equal(got) {
			t.Fatalf("%q: %v does not round-trip (%v)", s, got, err)
		}
	})
}

func TestValidPeriod(t *testing.T) {
	for p, want := range map[string]bool{
		"2026-12": true, "2026-01": true, "2026-H1": true, "2026-H2": true, "2026": true,
		"2026-13": false, "2026-00": false, "2026-H3": false, "26-12": false, "2026-1": false,
		"+026": false, "2026-+1": false, "": false, "2026-12-01": false, "abcd": false, "2026-1x": false,
	} {
		if got := validPeriod(p); got != want {
			t.Errorf("validPeriod(%q) = %v, want %v", p, got, want)
		}
	}
}

func FuzzValidPeriod(f *testing.F) {
	for _, s := range []string{"2026-12", "2026-H2", "2026", "2026-13"} {
		f.Add(s)
	}
	re := regexp.MustCompile(`^[0-9]{4}(-(0[1-9]|1[0-2]|H[12]))?$`)
	f.Fuzz(func(t *testing.T, s string) {
		// The form's pattern attribute and the server agree, within the
		// years a report can have.
		if validPeriod(s) && !re.MatchString(s) {
			t.Fatalf("%q accepted but the form's pattern refuses it", s)
		}
	})
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/programmes?month=2026-12": "/programmes?month=2026-12",
		"":                          "/",
		"https://evil.example/":     "/",
		"//evil.example/":           "/",
		"/\\evil.example":           "/",
		"/a\r\nSet-Cookie: x":       "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCalendarStartsOnMonday(t *testing.T) {
	first := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) // a Tuesday
	weeks := calendar(first, first, nil, true)
	if len(weeks) != 5 || weeks[0][0].Date.Day() != 30 || weeks[0][0].InMonth || !weeks[0][1].InMonth {
		t.Fatalf("December 2026: %d weeks, first day %v", len(weeks), weeks[0][0].Date)
	}
	if last := weeks[4][6]; last.Date.Day() != 3 || last.InMonth {
		t.Fatalf("last cell %v", last.Date)
	}
}

func TestSessionsExpire(t *testing.T) {
	now := time.Date(2026, 12, 10, 8, 0, 0, 0, time.UTC)
	s := newSessions(time.Hour, func() time.Time { return now })
	id, _ := s.create("tok", me{ID: "x"})
	if s.get(id) == nil || s.get("other") != nil {
		t.Fatal("lookup")
	}
	now = now.Add(59 * time.Minute)
	if s.get(id) == nil {
		t.Fatal("expired while in use")
	}
	now = now.Add(61 * time.Minute)
	if s.get(id) != nil {
		t.Fatal("an idle session outlived its timeout")
	}
}
