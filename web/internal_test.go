package web

import (
	"bytes"
	"mime/multipart"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
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
		"/\t/evil.example":          "/",
		"/\x00/evil.example":        "/",
		"/\u0085/evil.example":      "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzSafeNext: whatever a link carries as next, the redirect stays on
// this origin once a browser has cleaned it (dropped tabs and newlines,
// read backslashes as slashes).
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/schedule?month=2026-12", "/\t/evil.example", "//x", "/\\x", "https://x/", "/%2F%2Fx", "/a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := safeNext(s)
		if got != "/" && got != s {
			t.Fatalf("safeNext(%q) = %q: neither the input nor /", s, got)
		}
		cleaned := strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(got)
		u, err := url.Parse(cleaned)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(cleaned, "/") || strings.HasPrefix(cleaned, "//") {
			t.Fatalf("safeNext(%q) = %q, which a browser reads as %q: off this origin (%v)", s, got, cleaned, err)
		}
		if strings.ContainsFunc(got, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("safeNext(%q) = %q keeps a control character", s, got)
		}
	})
}

func TestStationConfigIsYAML(t *testing.T) {
	conf, err := stationConfig("14755-01", "s3cr\"et: '", "tcp://x:1883#\"daemon_url: http://attacker.example", "https://loa.example", "loaxa/v1", true)
	if err != nil {
		t.Fatal(err)
	}
	var got stationFile
	if err := yaml.Unmarshal([]byte(conf), &got); err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
	if got.Broker != "tcp://x:1883#\"daemon_url: http://attacker.example" || got.Secret != "s3cr\"et: '" || got.DaemonURL != "https://loa.example" || got.KeyFile != "device.key" {
		t.Fatalf("a value broke out of its key:\n%s", conf)
	}
	if _, err := stationConfig("14755-01", "s", "tcp://x:1883\ndaemon_url: http://attacker.example", "https://loa.example", "loaxa/v1", false); err == nil {
		t.Fatal("a broker with a line break was written")
	}
}

// FuzzStationConfig: no value the console puts in a station's config,
// whatever it holds, adds or changes a key; and validBroker takes only one
// URL of a scheme the station knows.
func FuzzStationConfig(f *testing.F) {
	f.Add("14755-01", "secret", "tcp://10.0.0.1:1883", "https://loa.example")
	f.Add("x", "y", "tcp://x:1883\ndaemon_url: http://attacker.example", "http://h")
	f.Add("- a", "'\"", "ssl://[::1]:8883", "")
	f.Fuzz(func(t *testing.T, id, secret, broker, daemonURL string) {
		if !utf8.ValidString(id + secret + broker + daemonURL) {
			return // the form's values are UTF-8 by the time they get here
		}
		conf, err := stationConfig(id, secret, broker, daemonURL, "loaxa/v1", false)
		if err != nil {
			return
		}
		var keys map[string]any
		if err := yaml.Unmarshal([]byte(conf), &keys); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, conf)
		}
		if len(keys) != 8 {
			t.Fatalf("%d keys, want 8:\n%s", len(keys), conf)
		}
		var got stationFile
		if err := yaml.Unmarshal([]byte(conf), &got); err != nil || got.Device != id || got.Secret != secret || got.Broker != broker || got.DaemonURL != daemonURL {
			t.Fatalf("values changed on the way (%v):\n%s", err, conf)
		}
		if validBroker(broker) {
			u, err := url.Parse(broker)
			if err != nil || u.Host == "" || strings.ContainsAny(broker, " \t\r\n") {
				t.Fatalf("validBroker took %q", broker)
			}
		}
	})
}

// FuzzCopyParts: the console's re-encoding of an upload form, whatever the
// browser (or a forger) sent: nothing is forwarded before the right CSRF
// token, and a form without it is refused.
func FuzzCopyParts(f *testing.F) {
	const want = "the-token"
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nthe-token\r\n--B\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.mp3\"\r\n\r\nxyz\r\n--B--\r\n"), "")
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"unit\"\r\n\r\n380\r\n--B--\r\n"), "")
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"unit\"\r\n\r\n380\r\n--B--\r\n"), want)
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		var out bytes.Buffer
		mw := multipart.NewWriter(&out)
		fields := map[string]string{}
		err := copyParts(multipart.NewReader(bytes.NewReader(body), "B"), mw, want, header, fields)
		_ = mw.Close()
		if err != nil {
			return
		}
		// Accepted: the token came in the header or as a csrf part.
		if header != want && !bytes.Contains(body, []byte(want)) {
			t.Fatalf("a form without the token was forwarded (header %q)", header)
		}
		// What was forwarded parses, and holds no csrf part.
		r := multipart.NewReader(&out, mw.Boundary())
		for {
			p, err := r.NextPart()
			if err != nil {
				break
			}
			if p.FormName() == csrfField {
				t.Fatal("the CSRF token was forwarded to the API")
			}
		}
	})
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
