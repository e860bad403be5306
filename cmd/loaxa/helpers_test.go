package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
)

// runIn runs the CLI in-process against url with a token.
func runIn(t *testing.T, url string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := map[string]string{"LOAXA_URL": url, "LOAXA_TOKEN": "lxa_test"}
	code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func TestExitCodeOfEachAnswer(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		code   int
		stderr string
	}{
		{409, `{"error":{"code":"conflict","message":"airing X is aired; it can no longer be cancelled"}}`, exitConflict, "loaxa: airing X is aired; it can no longer be cancelled\n"},
		{422, `{"error":{"code":"invalid","message":"month \"2026-13\" is not a month","field":"month"}}`, exitFailure, "loaxa: month \"2026-13\" is not a month (field month)\n"},
		{413, `{"error":{"code":"too_large","message":"the upload is larger than 536870912 bytes"}}`, exitFailure, "loaxa: the upload is larger than 536870912 bytes\n"},
		{403, `{"error":{"code":"forbidden","message":"unit 381 is outside the unit of this token (380)"}}`, exitAuth, "loaxa: unit 381 is outside the unit of this token (380)\n"},
		{404, `{"error":{"code":"not_found","message":"no such endpoint: GET /api/v1/stations"}}`, exitNotFound, "loaxa: no such endpoint: GET /api/v1/stations (this daemon is older than this client: upgrade loaxad)\n"},
		{500, `{"error":{"code":"internal","message":"internal error; the daemon's log has the details"}}`, exitUnavailable, "loaxa: internal error; the daemon's log has the details\n"},
		{502, "<html>\n<h1>502 Bad Gateway</h1>", exitUnavailable, "loaxa: GET /api/v1/stations: 502 Bad Gateway: <html>\n"},
		{503, "", exitUnavailable, "loaxa: GET /api/v1/stations: 503 Service Unavailable\n"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		}))
		r := runIn(t, srv.URL, "station", "list")
		srv.Close()
		if r.code != tc.code || r.stderr != tc.stderr {
			t.Errorf("%d %s: got %v; want exit %d and %q", tc.status, tc.body, r, tc.code, tc.stderr)
		}
	}
}

// A transfer that stops moving ends after --timeout (exit 6), and leaves
// neither the file nor its temporary copy.
func TestStalledDownloadGivesUp(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	out := filepath.Join(t.TempDir(), "loaxa.tar")
	start := time.Now()
	r := runIn(t, srv.URL, "backup", "-o", out, "--timeout", "300ms")
	if r.code != exitUnavailable || !strings.Contains(r.stderr, "no progress for 300ms") {
		t.Fatalf("stalled download: %v", r)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("gave up after %v", el)
	}
	if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// The upload is multipart with the fields first and the audio streamed as
// the "audio" part, with Expect: 100-continue so that a refusal comes
// before the file crosses the link.
func TestUploadForm(t *testing.T) {
	audio := bytes.Repeat([]byte("loa xã "), 300000) // 2.4 MB: many reads through the pipe
	path := filepath.Join(t.TempDir(), "bản tin.mp3")
	if err := os.WriteFile(path, audio, 0o644); err != nil {
		t.Fatal(err)
	}
	var got struct {
		expect, name, ctype string
		fields              []string
		audio               []byte
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.expect = r.Header.Get("Expect")
		mr, err := r.MultipartReader()
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		for {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			b, _ := io.ReadAll(p)
			if p.FormName() == "audio" {
				got.name, got.ctype, got.audio = p.FileName(), p.Header.Get("Content-Type"), b
				continue
			}
			got.fields = append(got.fields, p.FormName()+"="+string(b))
		}
		w.WriteHeader(201)
		io.WriteString(w, `{"id":"01P","status":"draft","title":"Bản tin"}`)
	}))
	defer srv.Close()
	r := runIn(t, srv.URL, "programme", "upload", path, "--unit", "380", "--month", "2026-12", "--title", "Bản tin", "-q")
	if r.code != 0 || r.stdout != "01P\n" {
		t.Fatalf("upload: %v", r)
	}
	if got.expect != "100-continue" || got.name != "bản tin.mp3" || got.ctype != "audio/mpeg" || !bytes.Equal(got.audio, audio) ||
		!slices.Equal(got.fields, []string{"unit=380", "month=2026-12", "title=Bản tin"}) {
		t.Fatalf("the daemon got expect %q, file %q (%s, %d bytes), fields %q", got.expect, got.name, got.ctype, len(got.audio), got.fields)
	}
	if !strings.HasPrefix(r.stderr, "uploading bản tin.mp3: 2.3 MiB in ") {
		t.Fatalf("progress: %q", r.stderr)
	}
}

func TestProgressOnATerminal(t *testing.T) {
	var b bytes.Buffer
	now := time.Date(2026, 12, 10, 8, 0, 0, 0, ict)
	p := newProgress(&b, true, "uploading bản tin.mp3", 4<<20, nil)
	p.now = func() time.Time { return now }
	p.start = now
	for range 4 {
		now = now.Add(time.Second)
		p.add(1 << 20)
	}
	p.finish(true)
	frames := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\r")[1:]
	if len(frames) != 5 {
		t.Fatalf("want 4 redraws and the last frame, got %q", frames)
	}
	if want := "uploading bản tin.mp3  [======>                 ]  25%  1.0 MiB / 4.0 MiB  1.0 MiB/s"; frames[0] != want {
		t.Fatalf("first frame\n%q, want\n%q", frames[0], want)
	}
	if want := "uploading bản tin.mp3  [========================] 100%  4.0 MiB / 4.0 MiB  1.0 MiB/s  4s"; frames[4] != want {
		t.Fatalf("last frame\n%q, want\n%q", frames[4], want)
	}
	// Off a terminal: one line at the end, and nothing after a failure.
	b.Reset()
	p = newProgress(&b, false, "backup → loaxa.tar", -1, nil)
	p.add(3 << 20)
	p.finish(false)
	if b.Len() != 0 {
		t.Fatalf("a failed transfer off a terminal printed %q", b.String())
	}
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8080":                        "http://127.0.0.1:8080",
		"http://127.0.0.1:8080/":                "http://127.0.0.1:8080",
		"https://loaxa.thanhhoa.gov.vn/api/v1/": "https://loaxa.thanhhoa.gov.vn",
		"https://sotttt.example/loaxa/":         "https://sotttt.example/loaxa",
	} {
		if got, err := baseURL(in); err != nil || got != want {
			t.Errorf("baseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://x", "http://"} {
		if _, err := baseURL(bad); exitCode(err) != exitUsage {
			t.Errorf("baseURL(%q): %v, want a usage error", bad, err)
		}
	}
}

func TestFlagsAfterArguments(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	o := fs.String("o", "table", "")
	start := fs.String("start", "", "")
	pos, err := parseInterspersed(fs, []string{"01A", "--start", "2026-12-14 17:30", "-o", "json", "--", "-x"})
	if err != nil || !slices.Equal(pos, []string{"01A", "-x"}) || *o != "json" || *start != "2026-12-14 17:30" {
		t.Fatalf("pos %q, o %q, start %q, err %v", pos, *o, *start, err)
	}
}

// Control characters in what other users wrote never reach the terminal.
func TestTableSanitizes(t *testing.T) {
	var b bytes.Buffer
	tb := newTable(&b, "ID", "TITLE")
	tb.row("01A", "Bản tin\x1b[2J\tmới\nhôm nay")
	tb.flush()
	if strings.ContainsAny(b.String(), "\x1b\t") || strings.Count(b.String(), "\n") != 2 {
		t.Fatalf("%q", b.String())
	}
}

// memLog is a tiny operations log for bundles made in the test.
type memLog struct{ ops []broadcast.OpEntry }

func (l *memLog) AsRun(uint64, func(broadcast.AsRunEntry) error) error { return nil }
func (l *memLog) AsRunHead() (uint64, broadcast.Hash, error)           { return 0, broadcast.Hash{}, nil }
func (l *memLog) AsRunBase() (uint64, broadcast.Hash, error)           { return 0, broadcast.Hash{}, nil }
func (l *memLog) HashForms() (broadcast.HashForms, error)              { return broadcast.HashForms{}, nil }
func (l *memLog) Device(id string) (broadcast.Device, error) {
	return broadcast.Device{}, broadcast.Errorf(broadcast.ENotFound, "device %s not found", id)
}
func (l *memLog) OpsHead() (uint64, broadcast.Hash, error) {
	o := l.ops[len(l.ops)-1]
	return o.Seq, o.Hash, nil
}
func (l *memLog) Ops(after uint64, fn func(broadcast.OpEntry) error) error {
	for _, o := range l.ops {
		if o.Seq > after {
			if err := fn(o); err != nil {
				return err
			}
		}
	}
	return nil
}

// The offline check needs no daemon and no token, and exits 7 when the
// bundle's evidence was altered.
func TestAuditVerifyBundleOffline(t *testing.T) {
	bundle := func(tamper bool) string {
		l := &memLog{}
		var prev broadcast.Hash
		for i, action := range []string{"programme.approve", "airing.move"} {
			o := broadcast.OpEntry{Seq: uint64(i + 1), At: time.Date(2026, 12, 3+i, 9, 0, 0, 0, ict), Actor: "01T Minh", Action: action, Subject: "01P", PrevHash: prev}
			o.Hash = o.ChainHash()
			prev = o.Hash
			l.ops = append(l.ops, o)
		}
		if tamper {
			l.ops[0].Actor = "01T Lan"
		}
		p, err := broadcast.ParsePeriod("2026-12")
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := audit.WriteBundle(context.Background(), &b, l, audit.BundleSpec{Period: p, Location: ict, Now: time.Date(2027, 2, 1, 0, 0, 0, 0, ict), TempDir: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "evidence-2026-12.tar.gz")
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// Nothing listens at this address: the check must not try it.
	r := must(t, 0, "http://127.0.0.1:1", "", "audit", "verify", "--bundle", bundle(false))
	if !strings.Contains(r.stdout, "operations log: 2 entries") || !strings.Contains(r.stdout, "ok:") {
		t.Fatalf("a sound bundle: %v", r)
	}
	r = must(t, exitVerify, "http://127.0.0.1:1", "", "audit", "verify", "--bundle", bundle(true))
	if !strings.Contains(r.stdout, "oplog  1") || !strings.Contains(r.stderr, "loaxa: verification found") {
		t.Fatalf("a tampered bundle: %v", r)
	}
	notBundle := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notBundle, []byte("not a bundle"), 0o644)
	must(t, exitFailure, "", "", "audit", "verify", "--bundle", notBundle)
}
