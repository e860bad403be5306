package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast/audio/audiotest"
	"github.com/loaxa/loaxa/cmd/loaxad/daemon"
	"github.com/loaxa/loaxa/configs"
	"log/slog"
)

// clock is the daemon's clock shifted to 10 December 2026, 08:00 in
// Vietnam, so that the month has airings left to plan, move and cancel.
type clock struct{ offset time.Duration }

func (c clock) Now() time.Time                       { return time.Now().Add(c.offset) }
func (clock) After(d time.Duration) <-chan time.Time { return time.After(d) }

var ict = time.FixedZone("ICT", 7*3600)

type fixture struct {
	base                      string
	admin, lan, minh, auditor string
	t                         *testing.T
}

// start runs the real daemon (storage, embedded broker, scheduler, API and
// the console mounted beside it) on free ports with Thanh Hoa's units, and
// makes two operators and an auditor of district 380 through the API.
func start(t *testing.T) *fixture {
	t.Helper()
	cfg := configs.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.PublicURL = ""
	cfg.MQTT.Embedded.Listen = "127.0.0.1:0"
	cfg.UnitsCSV = "../configs/data/thanh-hoa-units-2025-03.csv"
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler),
		Clock: clock{offset: time.Until(time.Date(2026, 12, 10, 8, 0, 0, 0, ict))}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{base: "http://" + d.HTTPAddr(), admin: strings.TrimSpace(string(admin)), t: t}
	for _, tk := range []struct {
		dst              *string
		name, role, unit string
	}{{&f.lan, "Lan", "operator", "380"}, {&f.minh, "Minh", "operator", "380"}, {&f.auditor, "Sở TT&TT", "auditor", "380"}} {
		body, _ := json.Marshal(map[string]string{"name": tk.name, "role": tk.role, "unit": tk.unit})
		req, _ := http.NewRequest("POST", f.base+"/api/v1/tokens", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+f.admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Token string }
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 201 || out.Token == "" {
			t.Fatalf("create token %s: %d", tk.name, resp.StatusCode)
		}
		*tk.dst = out.Token
	}
	return f
}

// browser is a cookie-keeping client that does not follow redirects, so
// that tests see each answer.
type browser struct {
	f    *fixture
	c    *http.Client
	last string // the last page's body, for its CSRF token
}

func (f *fixture) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{f: f, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) answer {
	b.f.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{resp.StatusCode, resp.Header, string(body)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		b.last = a.body
	}
	return a
}

func (b *browser) get(path string, hdr ...string) answer {
	req, _ := http.NewRequest("GET", b.f.base+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) answer {
	req, _ := http.NewRequest("POST", b.f.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) csrf() string {
	m := csrfRE.FindStringSubmatch(b.last)
	if m == nil {
		b.f.t.Fatalf("no CSRF token in the last page:\n%.2000s", b.last)
	}
	return m[1]
}

// login signs in with token and returns the answer to POST /login.
func (f *fixture) login(token string) (*browser, answer) {
	b := f.browser()
	if a := b.get("/login"); a.status != 200 {
		f.t.Fatalf("GET /login: %d", a.status)
	}
	return b, b.post("/login", url.Values{"token": {token}, "csrf": {b.csrf()}, "next": {"/"}})
}

func (f *fixture) signedIn(token string) *browser {
	f.t.Helper()
	b, a := f.login(token)
	if a.status != http.StatusSeeOther {
		f.t.Fatalf("sign in: %d %s", a.status, a.body)
	}
	b.get("/")
	return b
}

func must(t *testing.T, a answer, status int, contains ...string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d; body:\n%.3000s", a.status, status, a.body)
	}
	for _, c := range contains {
		if !strings.Contains(a.body, c) {
			t.Fatalf("answer lacks %q; body:\n%.3000s", c, a.body)
		}
	}
}

func mustNot(t *testing.T, a answer, absent ...string) {
	t.Helper()
	for _, c := range absent {
		if strings.Contains(a.body, c) {
			t.Fatalf("answer has %q, which it must not", c)
		}
	}
}

func TestSignInAndOut(t *testing.T) {
	f := start(t)
	b := f.browser()
	a := b.get("/")
	if a.status != http.StatusSeeOther || !strings.HasPrefix(a.header.Get("Location"), "/login?next=") {
		t.Fatalf("signed out GET /: %d %s", a.status, a.header.Get("Location"))
	}
	must(t, b.get("/login"), 200, `name="token"`, `<html lang="vi">`, "Mã truy cập")

	bad := b.post("/login", url.Values{"token": {"loaxa_not-a-token"}, "csrf": {b.csrf()}})
	must(t, bad, http.StatusUnauthorized, "không hợp lệ")

	b, a = f.login(f.admin)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Fatalf("sign in: %d %s", a.status, a.header.Get("Location"))
	}
	var cookie string
	for _, c := range a.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "loaxa_session=") {
			cookie = c
		}
	}
	for _, flag := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, flag) {
			t.Errorf("session cookie %q lacks %s", cookie, flag)
		}
	}
	if strings.Contains(cookie, "Secure") {
		t.Errorf("session cookie %q is Secure over plain HTTP: the browser would never send it back", cookie)
	}
	must(t, b.get("/"), 200, "Tổng quan", "bootstrap admin", `action="/logout"`)
	must(t, b.post("/logout", url.Values{"csrf": {b.csrf()}}), http.StatusSeeOther)
	if a := b.get("/"); a.status != http.StatusSeeOther {
		t.Fatalf("after sign-out GET /: %d", a.status)
	}
}

func TestCSRFRefused(t *testing.T) {
	f := start(t)
	b := f.browser()
	b.get("/login")
	// The sign-in form's token must match its cookie.
	must(t, b.post("/login", url.Values{"token": {f.admin}}), http.StatusForbidden, "chống giả mạo")
	must(t, b.post("/login", url.Values{"token": {f.admin}, "csrf": {"forged-forged-forged-forged-forged-forged"}}), http.StatusForbidden)

	b = f.signedIn(f.lan)
	must(t, b.post("/logout", nil), http.StatusForbidden, "chống giả mạo")
	must(t, b.post("/airings/x/cancel", url.Values{"csrf": {"wrong"}}), http.StatusForbidden)
	// An upload without the token is refused before anything reaches the API.
	must(t, b.upload("/programmes", map[string]string{"unit": "380", "month": "2026-12", "title": "x"}, audiotest.WAV(time.Second), false), http.StatusForbidden)
	must(t, b.get("/"), 200) // still signed in
}

func TestSecurityHeaders(t *testing.T) {
	f := start(t)
	a := f.browser().get("/login")
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
	} {
		if !strings.Contains(a.header.Get(h), want) {
			t.Errorf("%s = %q, want %q", h, a.header.Get(h), want)
		}
	}
	if !strings.Contains(a.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Error("CSP allows framing")
	}
	mustNot(t, a, "<script>", "style=", "https://")
	// The API keeps its own paths.
	if r := f.browser().get("/healthz"); r.status != 200 || !strings.Contains(r.body, "ok") {
		t.Errorf("/healthz through the mount: %d %s", r.status, r.body)
	}
	if r := f.browser().get("/static/fonts/DejaVuSans.ttf"); r.status != 200 || len(r.body) < 100000 {
		t.Errorf("embedded font: %d, %d bytes", r.status, len(r.body))
	}
}

// upload posts a multipart form as the browser does, CSRF token first
// (unless withCSRF is false), then the fields and the audio.
func (b *browser) upload(path string, fields map[string]string, audio []byte, withCSRF bool) answer {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if withCSRF {
		mw.WriteField("csrf", b.csrf())
	}
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if audio != nil {
		w, _ := mw.CreateFormFile("audio", "programme.wav")
		w.Write(audio)
	}
	mw.Close()
	req, _ := http.NewRequest("POST", b.f.base+path, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(req)
}

var linkRE = regexp.MustCompile(`href="/airings/([0-9A-Za-z_-]+)"`)

// approved uploads a programme as Lan and approves it as Minh through the
// console, and returns its page as Minh sees it.
func approved(t *testing.T, f *fixture) (string, answer) {
	lan := f.signedIn(f.lan)
	lan.get("/programmes")
	up := lan.upload("/programmes", map[string]string{"unit": "380", "month": "2026-12", "title": "Chuyển đổi số tháng 12/2026", "description": "Bản tin", "priority": "normal"}, audiotest.WAV(90*time.Second), true)
	must(t, up, http.StatusSeeOther)
	page := up.header.Get("Location")
	if !strings.HasPrefix(page, "/programmes/") {
		t.Fatalf("upload went to %q", page)
	}
	// The uploader sees no approve button, and the API refuses anyway.
	own := lan.get(page)
	must(t, own, 200, "Chuyển đổi số tháng 12/2026", "một người vận hành khác phải duyệt", `src="/media/`)
	mustNot(t, own, `/approve"`)
	must(t, lan.post(page+"/approve", url.Values{"csrf": {lan.csrf()}}), http.StatusForbidden, "Không được phép:", "someone other than its uploader")

	minh := f.signedIn(f.minh)
	minh.get(page)
	must(t, minh.last2(page), 200, `action="`+page+`/approve"`)
	ok := minh.post(page+"/approve", url.Values{"csrf": {minh.csrf()}})
	must(t, ok, http.StatusSeeOther)
	after := minh.get(page)
	must(t, after, 200, "Đã duyệt", "Các buổi phát", "Phường Hàm Rồng")
	return page, after
}

// last2 fetches a page again and returns it (a readability helper).
func (b *browser) last2(path string) answer { return b.get(path) }

func TestUploadAndApproveByTwoOperators(t *testing.T) {
	f := start(t)
	page, after := approved(t, f)
	if len(linkRE.FindAllString(after.body, -1)) < 4 {
		t.Fatalf("the programme's page lists fewer than 4 airings:\n%.3000s", after.body)
	}
	// The XHR path answers JSON for the progress-bar script.
	lan := f.signedIn(f.lan)
	lan.get("/programmes")
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("csrf", lan.csrf())
	mw.WriteField("unit", "380")
	mw.WriteField("month", "2026-12")
	mw.WriteField("title", "")
	w, _ := mw.CreateFormFile("audio", "a.wav")
	w.Write(audiotest.WAV(time.Second))
	mw.Close()
	req, _ := http.NewRequest("POST", f.base+"/programmes", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	a := lan.do(req)
	var e struct {
		Error struct{ Code, Message, Field string }
	}
	if err := json.Unmarshal([]byte(a.body), &e); err != nil || a.status != 422 || e.Error.Field != "title" {
		t.Fatalf("XHR upload without a title: %d %s", a.status, a.body)
	}
	// The player's route passes Range through.
	sha := regexp.MustCompile(`/media/([0-9a-f]{64})`).FindStringSubmatch(after.body)[1]
	r := lan.get("/media/"+sha, "Range", "bytes=0-3")
	if r.status != http.StatusPartialContent || r.body != "RIFF" {
		t.Fatalf("ranged audio: %d %q", r.status, r.body)
	}
	// The airings are on the station's calendar.
	cal := lan.get("/schedule?station=14755&month=2026-12")
	must(t, cal, 200, "Phường Hàm Rồng", "Chuyển đổi số tháng 12/2026")
	if len(linkRE.FindAllString(cal.body, -1)) < 4 {
		t.Fatalf("calendar shows fewer than 4 airings")
	}
	must(t, lan.get(page), 200, "Rút chương trình")
}

func TestMoveAndCancelShowTheReason(t *testing.T) {
	f := start(t)
	approved(t, f)
	lan := f.signedIn(f.lan)
	cal := lan.get("/schedule?station=14755&month=2026-12")
	ids := linkRE.FindAllStringSubmatch(cal.body, -1)
	if len(ids) == 0 {
		t.Fatal("no airing on the calendar")
	}
	id := ids[len(ids)-1][1] // the last: far from the freeze window
	page := "/airings/" + id
	must(t, lan.get(page), 200, `name="start"`, "Dời buổi phát")
	// 23:00 is outside broadcasting hours (05:00-21:00): the API's 409, in
	// words, next to the field.
	out := lan.post(page+"/move", url.Values{"csrf": {lan.csrf()}, "start": {"2026-12-28T23:00"}})
	must(t, out, http.StatusConflict, "Không thể thực hiện vì xung đột:", "broadcasting hours", `id="err-start"`)
	must(t, lan.post(page+"/move", url.Values{"csrf": {lan.csrf()}, "start": {"not a time"}}), http.StatusUnprocessableEntity, `id="err-start"`)
	must(t, lan.post(page+"/move", url.Values{"csrf": {lan.csrf()}, "start": {"2026-12-29T10:17"}}), http.StatusSeeOther)
	moved := lan.get(page)
	must(t, moved, 200, "Đã dời buổi phát", "29/12/2026 10:17")
	must(t, lan.post(page+"/cancel", url.Values{"csrf": {lan.csrf()}}), http.StatusSeeOther)
	lan.get(page)
	// A cancelled airing has no more edit forms; posting anyway gets the
	// API's 409.
	must(t, lan.post(page+"/cancel", url.Values{"csrf": {lan.csrf()}}), http.StatusConflict, "can no longer be cancelled")

	// Auditors see the airing but no move or cancel.
	aud := f.signedIn(f.auditor)
	a := aud.get("/airings/" + ids[0][1])
	must(t, a, 200, "Nhật ký phát sóng")
	mustNot(t, a, "/move\"", "/cancel\"")
}

func TestRolesSeeWhatTheyMayDo(t *testing.T) {
	f := start(t)
	aud := f.signedIn(f.auditor)
	home := aud.get("/")
	must(t, home, 200, "Kiểm tra") // the role's name
	mustNot(t, home, `href="/emergency"`)
	progs := aud.get("/programmes")
	must(t, progs, 200, "Danh sách chương trình")
	mustNot(t, progs, `enctype="multipart/form-data"`)
	must(t, aud.get("/emergency"), http.StatusForbidden)
	st := aud.get("/stations/14755")
	must(t, st, 200, "Phường Hàm Rồng")
	mustNot(t, st, "Thêm thiết bị", "/disable")
	// District 380's auditor: verifying the whole log is not theirs.
	audRep := aud.get("/reports")
	must(t, audRep, 200, `href="/reports/oplog"`)
	mustNot(t, audRep, `href="/reports/verify"`, `href="/tokens"`)

	op := f.signedIn(f.lan)
	must(t, op.get("/"), 200, `href="/emergency"`)
	must(t, op.get("/programmes"), 200, `enctype="multipart/form-data"`, "Tải lên chương trình")
	rep := op.get("/reports")
	must(t, rep, 200, "Báo cáo")
	mustNot(t, rep, `href="/reports/verify"`)
	// Refused by the API anyway, with its words.
	must(t, op.get("/reports/verify"), http.StatusForbidden, "Không được phép:")
}

func TestAuditorComplianceAndDownloads(t *testing.T) {
	f := start(t)
	approved(t, f)
	aud := f.signedIn(f.auditor)
	rep := aud.get("/reports?period=2026-12")
	must(t, rep, 200, "Phường Hàm Rồng", "/reports/download?", "Excel (XLSX)")
	must(t, aud.get("/reports?period=2026-13"), http.StatusUnprocessableEntity, `id="err-period"`, "2026-H2")
	x := aud.get("/reports/download?period=2026-12&format=xlsx")
	if x.status != 200 || !strings.HasPrefix(x.body, "PK") || !strings.Contains(x.header.Get("Content-Disposition"), ".xlsx") {
		t.Fatalf("XLSX download: %d %s %.20q", x.status, x.header.Get("Content-Disposition"), x.body)
	}
	c := aud.get("/reports/download?period=2026-H2&format=csv")
	if c.status != 200 || !strings.Contains(c.header.Get("Content-Type"), "csv") {
		t.Fatalf("CSV download: %d %s", c.status, c.header.Get("Content-Type"))
	}
	must(t, aud.get("/reports/download?period=nope&format=xlsx"), 422, "Giá trị không hợp lệ:")
	must(t, aud.get("/reports/station?station=14755&month=2026-12"), 200, "Các buổi phát làm nên số liệu", "/airings/")
	// Verifying checks every unit's entries: a token of the whole tree only
	// (docs/security.md); district 380's auditor reads its entries through the as-run log.
	must(t, aud.get("/reports/verify"), http.StatusForbidden, "whole tree")
	must(t, aud.get("/reports/oplog?from=2026-01-01"), 200, "Duyệt chương trình", "Minh")
	// An auditor of district 380 gets district 380's bundle.
	if b := aud.get("/reports/bundle?period=2026-12"); b.status != 200 || !strings.HasPrefix(b.body, "\x1f\x8b") || !strings.Contains(b.header.Get("Content-Disposition"), "2026-12-380") {
		t.Fatalf("bundle of district 380: %d %s", b.status, b.header.Get("Content-Disposition"))
	}
}

func TestDevicesAndQRCode(t *testing.T) {
	f := start(t)
	lan := f.signedIn(f.lan)
	must(t, lan.get("/stations?unit=380"), 200, "Phường Hàm Rồng")
	lan.get("/stations/14755")
	added := lan.post("/stations/14755/devices", url.Values{"csrf": {lan.csrf()}, "id": {"14755-01"}, "broker": {"tcp://10.0.0.1:1883"}})
	must(t, added, http.StatusCreated, "14755-01", "<svg", "secret: ", "broker: tcp://10.0.0.1:1883", "chỉ hiện một lần")
	if added.header.Get("Cache-Control") != "no-store" {
		t.Error("the page with the secret may be cached")
	}
	st := lan.get("/stations/14755")
	must(t, st, 200, "14755-01", "Chưa rõ", `action="/devices/14755-01/disable"`)
	dup := lan.post("/stations/14755/devices", url.Values{"csrf": {lan.csrf()}, "id": {"bad id!"}})
	must(t, dup, 422, `id="err-id"`)
	must(t, lan.post("/devices/14755-01/disable", url.Values{"csrf": {lan.csrf()}}), http.StatusSeeOther)
	must(t, lan.get("/stations/14755"), 200, "Đã vô hiệu")
}

func TestEmergencyConfirmedTwice(t *testing.T) {
	f := start(t)
	lan := f.signedIn(f.lan)
	lan.get("/emergency")
	// Without the first confirmation: the form again, with the reason.
	no := lan.upload("/emergency", map[string]string{"unit": "380", "title": "Bão số 9"}, audiotest.WAV(5*time.Second), true)
	must(t, no, http.StatusUnprocessableEntity, `id="err-confirm1"`)
	first := lan.upload("/emergency", map[string]string{"unit": "380", "title": "Bão số 9", "confirm1": "yes"}, audiotest.WAV(5*time.Second), true)
	must(t, first, 200, "Xác nhận lần hai", "Bão số 9", `action="/emergency/confirm"`)
	if a := lan.get("/emergency/pending/audio", "Range", "bytes=0-3"); a.status != 206 || a.body != "RIFF" {
		t.Fatalf("pending audio: %d %q", a.status, a.body)
	}
	lan.last = first.body
	must(t, lan.post("/emergency/confirm", url.Values{"csrf": {lan.csrf()}}), http.StatusUnprocessableEntity, `id="err-confirm2"`)
	sent := lan.post("/emergency/confirm", url.Values{"csrf": {lan.csrf()}, "confirm2": {"yes"}})
	must(t, sent, http.StatusSeeOther)
	live := sent.header.Get("Location")
	if !strings.HasPrefix(live, "/emergency/live?p=") {
		t.Fatalf("after sending: %q", live)
	}
	must(t, lan.get(live), 200, "Bão số 9", "Đã phát bản tin tới 1 đơn vị")
	token := lan.csrf()
	must(t, lan.get(strings.Replace(live, "/live?", "/live/part?", 1), "X-Requested-With", "fetch"), 200, "Bão số 9")
	// Sent once: confirming again has nothing to send.
	must(t, lan.post("/emergency/confirm", url.Values{"csrf": {token}, "confirm2": {"yes"}}), http.StatusConflict)
}

func TestLanguageSwitch(t *testing.T) {
	f := start(t)
	b := f.signedIn(f.admin)
	a := b.get("/?lang=en")
	must(t, a, 200, `<html lang="en">`, "Overview", "Tiếng Việt")
	if !strings.Contains(strings.Join(a.header.Values("Set-Cookie"), ";"), "loaxa_lang=en") {
		t.Fatal("the choice of English is not remembered")
	}
	must(t, b.get("/programmes"), 200, `<html lang="en">`, "Programmes")
	must(t, b.get("/programmes?lang=vi"), 200, `<html lang="vi">`, "Chương trình")
	must(t, b.get("/"), 200, `<html lang="vi">`)
}

// TestEveryPageInBothLanguages renders every page, as an admin and as an
// auditor, in Vietnamese and English, and looks for untranslated keys.
func TestEveryPageInBothLanguages(t *testing.T) {
	f := start(t)
	page, _ := approved(t, f)
	lan := f.signedIn(f.lan)
	cal := lan.get("/schedule?station=14755&month=2026-12")
	airing := "/airings/" + linkRE.FindStringSubmatch(cal.body)[1]
	pages := []string{"/", "/overview/live", "/programmes", page, "/schedule", "/schedule?station=14755&month=2026-12", airing,
		"/stations", "/stations?unit=380", "/stations/14755", "/emergency", "/reports", "/reports?period=2026-H2",
		"/reports/station?station=14755&month=2026-12", "/reports/verify", "/reports/oplog", "/tokens", "/no-such-page"}
	for _, who := range []struct {
		name, token string
	}{{"admin", f.admin}, {"auditor", f.auditor}} {
		b := f.signedIn(who.token)
		for _, lang := range []string{"vi", "en"} {
			for _, p := range pages {
				sep := "?"
				if strings.Contains(p, "?") {
					sep = "&"
				}
				a := b.get(p + sep + "lang=" + lang)
				want := 200
				switch {
				case p == "/no-such-page":
					want = 404
				case who.name == "auditor" && (p == "/emergency" || p == "/tokens" || p == "/reports/verify"):
					// Auditors send nothing and manage no tokens; this
					// one is district 380's, and verifying is the whole
					// tree's.
					want = 403
				}
				if a.status != want {
					t.Errorf("%s %s %s: %d, want %d\n%.1500s", who.name, lang, p, a.status, want, a.body)
					continue
				}
				if i := strings.Index(a.body, "⟦"); i >= 0 {
					t.Errorf("%s %s %s: missing message %.60s", who.name, lang, p, a.body[i:])
				}
				if p != "/overview/live" && !strings.Contains(a.body, fmt.Sprintf(`<html lang="%s">`, lang)) {
					t.Errorf("%s %s %s: no lang attribute", who.name, lang, p)
				}
			}
		}
	}
	// The sign-in page, signed out.
	for _, lang := range []string{"vi", "en"} {
		a := f.browser().get("/login?lang=" + lang)
		if a.status != 200 || strings.Contains(a.body, "⟦") {
			t.Errorf("login %s: %d", lang, a.status)
		}
	}
}
