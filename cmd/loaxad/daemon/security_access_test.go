package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/configs"
	"github.com/loaxa/loaxa/devices/mosquittotest"
)

// TestSecurityAccess is the attacks of docs/security.md on access, devices and floods,
// each tried against the real daemon (real HTTP, a bbolt file in a temp
// dir, the embedded broker, Mosquitto where it matters), one case per row
// of the table and per item of "What to build" it owns (1, 2, 3
// and 5). Each case asserts what the old daemon got wrong, so it fails if
// that behaviour comes back. docs/security.md lists which case proves what.
func TestSecurityAccess(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"revoke a leaked token", secRevokeLeakedToken},
		{"tokens expire, and bad tokens from one address are logged without the token and throttled", secTokenExpiryAndThrottle},
		{"an admin token scoped to unit 380 imports a row moving commune 14809 under 380, downloads the backup and purges", secScopedAdmin},
		{"the Thanh Hoa CSV re-imported in NFD", secReimportNFD},
		{"an auditor of district 380 runs the whole-log verify", secDistrictAuditorVerify},
		{"an operator adds a device with id loaxad with Mosquitto, then disables it", secReservedDeviceMosquitto},
		{"any device fetches any programme's audio by sha256", secDeviceFetchesOthersAudio},
		{"16 workers send MQTT CONNECTs with bad passwords", secMQTTConnectFlood},
		{"POST /login body at 1 byte every 5 s", secSlowLoris},
	} {
		t.Run(tc.name, tc.run)
	}
}

// lineLog is a daemon log kept in memory, one slog record per line.
type lineLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines are the log's lines that contain every one of words.
func (l *lineLog) lines(words ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ln := range strings.Split(l.buf.String(), "\n") {
		all := ln != ""
		for _, w := range words {
			all = all && strings.Contains(ln, w)
		}
		if all {
			out = append(out, ln)
		}
	}
	return out
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *lineLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// metricOr0 is readMetric for a series that is absent until it first
// counts (a counter with labels).
func metricOr0(t *testing.T, base, series string) float64 {
	t.Helper()
	v, _ := scanMetric(t, base, series)
	return v
}

// console is a browser signed in to the daemon's web console.
type console struct {
	t    *testing.T
	base string
	hc   *http.Client
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs in to the console with token; it returns the status of
// the sign-in's answer (303 when it worked).
func signIn(t *testing.T, base, token string) (*console, int) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("the sign-in page has no CSRF field:\n%s", b)
	}
	resp, err = hc.PostForm(base+"/login", url.Values{"csrf": {string(m[1])}, "token": {token}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return &console{t: t, base: base, hc: hc}, resp.StatusCode
}

// get fetches a console page and returns its status and where it sends
// the browser, if anywhere.
func (c *console) get(path string) (int, string) {
	c.t.Helper()
	resp, err := c.hc.Get(c.base + path)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

type opEntry struct {
	Action, Subject, Actor string
}

func opActions(t *testing.T, c client, token string) []opEntry {
	var out struct{ Entries []opEntry }
	c.json("GET", "/api/v1/oplog", token, nil, &out, 200)
	return out.Entries
}

func hasOp(ops []opEntry, action, subject string) bool {
	for _, o := range ops {
		if o.Action == action && o.Subject == subject {
			return true
		}
	}
	return false
}

// secRevokeLeakedToken: an operator's token leaks. The admin finds it in
// the list (which shows no secret), revokes it, and the very next request
// with it is refused; the console session signed in with it is over too;
// the operations log says who created and who revoked it.
func secRevokeLeakedToken(t *testing.T) {
	f := startDaemon(t)
	var leaked struct {
		ID, Token string
		ExpiresAt time.Time `json:"expires_at"`
	}
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Máy tính xã Hàm Rồng", "role": "operator", "unit": "380"}, &leaked, 201)
	f.c.json("GET", "/api/v1/stations?unit=380", leaked.Token, nil, nil, 200)
	browser, code := signIn(t, f.c.base, leaked.Token)
	if code != http.StatusSeeOther {
		t.Fatalf("console sign-in with the token: %d", code)
	}
	if code, _ := browser.get("/stations"); code != 200 {
		t.Fatalf("console before the revocation: %d", code)
	}

	// The list: every token, its last use, never a secret or a hash.
	resp, err := http.NewRequest("GET", f.c.base+"/api/v1/tokens", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Header.Set("Authorization", "Bearer "+f.admin)
	r, err := http.DefaultClient.Do(resp)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !bytes.Contains(raw, []byte(leaked.ID)) {
		t.Fatalf("GET /api/v1/tokens: %d %s", r.StatusCode, raw)
	}
	if bytes.Contains(raw, []byte(leaked.Token)) || bytes.Contains(raw, []byte(broadcast.HashToken(leaked.Token))) ||
		bytes.Contains(raw, []byte(`"hash"`)) || bytes.Contains(raw, []byte("lxa_")) {
		t.Fatalf("the token list shows a secret or a hash: %s", raw)
	}
	var list struct {
		Tokens []struct {
			ID       string
			LastUsed time.Time `json:"last_used"`
		}
	}
	f.c.json("GET", "/api/v1/tokens", f.admin, nil, &list, 200)
	found := false
	for _, k := range list.Tokens {
		if k.ID == leaked.ID {
			found = true
			if k.LastUsed.IsZero() {
				t.Errorf("the token was used but its last_used is empty")
			}
		}
	}
	if !found {
		t.Fatalf("the list lacks the token %s", leaked.ID)
	}
	// An operator lists nothing, and revokes nothing.
	f.c.json("GET", "/api/v1/tokens", f.lan, nil, nil, 403)
	f.c.json("DELETE", "/api/v1/tokens/"+leaked.ID, f.lan, nil, nil, 403)

	f.c.json("DELETE", "/api/v1/tokens/"+leaked.ID, f.admin, nil, nil, 200)
	var e apiError
	if code := f.c.do("GET", "/api/v1/stations?unit=380", leaked.Token, nil, "", &e); code != 401 || e.Error.Code != broadcast.EUnauthorized {
		t.Fatalf("the next request with the revoked token: %d %+v, want 401", code, e)
	}
	// The session ended with the token: the console sends the browser to
	// sign in again, without asking the API first.
	if code, loc := browser.get("/stations"); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/login") {
		t.Fatalf("console after the revocation: %d %q, want a redirect to /login", code, loc)
	}
	if _, code := signIn(t, f.c.base, leaked.Token); code != http.StatusUnauthorized {
		t.Fatalf("signing in again with the revoked token: %d, want 401", code)
	}
	f.c.json("DELETE", "/api/v1/tokens/"+leaked.ID, f.admin, nil, nil, 404)
	ops := opActions(t, f.c, f.admin)
	if !hasOp(ops, "token.create", leaked.ID) || !hasOp(ops, "token.revoke", leaked.ID) {
		t.Fatalf("the operations log lacks the token's creation or revocation: %+v", ops)
	}
	// The console's page of tokens, for admins: each token with a button
	// posting to /tokens/{id}/revoke.
	var second struct{ ID, Token string }
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Máy tính phường Đông Thọ", "role": "operator", "unit": "380"}, &second, 201)
	admin, _ := signIn(t, f.c.base, f.admin)
	page, err := admin.hc.Get(f.c.base + "/tokens")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	m := csrfRE.FindSubmatch(body)
	if page.StatusCode != 200 || m == nil || !bytes.Contains(body, []byte(`action="/tokens/`+second.ID+`/revoke"`)) || bytes.Contains(body, []byte(second.Token)) {
		t.Fatalf("console /tokens as admin: %d\n%s", page.StatusCode, body)
	}
	resp2, err := admin.hc.PostForm(f.c.base+"/tokens/"+second.ID+"/revoke", url.Values{"csrf": {string(m[1])}})
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusSeeOther {
		t.Fatalf("console revoke: %d", resp2.StatusCode)
	}
	if code := f.c.do("GET", "/api/v1/me", second.Token, nil, "", nil); code != 401 {
		t.Fatalf("a token revoked in the console still works: %d", code)
	}
	if lan, _ := signIn(t, f.c.base, f.lan); lan != nil {
		if code, _ := lan.get("/tokens"); code != http.StatusForbidden {
			t.Fatalf("console /tokens as an operator: %d, want 403", code)
		}
	}
}

// secTokenExpiryAndThrottle: tokens.max_age bounds an operator's token;
// an expired token is refused and leaves the list with a token.expire
// entry; a client sending bad tokens is logged each time (without the
// token) and, past http.auth_failures, answered 429 with Retry-After.
func secTokenExpiryAndThrottle(t *testing.T) {
	var log lineLog
	f := startDaemonLogged(t, func(c *configs.Config) {
		c.Tokens.MaxAge = 24 * time.Hour
		c.HTTP.AuthFailures = 3
	}, log.logger())
	now := f.clock.Now()

	var op struct {
		ID        string
		ExpiresAt time.Time `json:"expires_at"`
	}
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Lan", "role": "operator", "unit": "380"}, &op, 201)
	if d := op.ExpiresAt.Sub(now); d < 23*time.Hour || d > 25*time.Hour {
		t.Fatalf("an operator token made without expires expires at %s, want about a day from %s (tokens.max_age)", op.ExpiresAt, now)
	}
	var e apiError
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]any{"name": "Lan", "role": "operator", "unit": "380", "expires": now.Add(48 * time.Hour)}, &e, 422)
	if e.Error.Field != "expires" {
		t.Fatalf("an expiry past tokens.max_age: %+v", e)
	}
	var adm struct {
		ExpiresAt time.Time `json:"expires_at"`
	}
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Quản trị 2", "role": "admin"}, &adm, 201)
	if !adm.ExpiresAt.IsZero() {
		t.Fatalf("an admin token expires at %s without being asked to", adm.ExpiresAt)
	}

	var short struct{ ID, Token string }
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]any{"name": "Hết hạn", "role": "auditor", "unit": "380", "expires": now.Add(time.Second)}, &short, 201)
	f.c.json("GET", "/api/v1/me", short.Token, nil, nil, 200)
	awaitFor(t, 10*time.Second, "the one-second token to expire", func() bool {
		return f.c.do("GET", "/api/v1/me", short.Token, nil, "", nil) == http.StatusUnauthorized
	})
	if !hasOp(opActions(t, f.c, f.admin), "token.expire", short.ID) {
		t.Fatal("the operations log lacks the token's expiry")
	}
	var list struct{ Tokens []struct{ ID string } }
	f.c.json("GET", "/api/v1/tokens", f.admin, nil, &list, 200)
	for _, k := range list.Tokens {
		if k.ID == short.ID {
			t.Fatal("the expired token is still listed")
		}
	}

	// Bad tokens from this address: the expiry above was the first
	// failure; two more are answered 401, then the address waits: 429.
	bad := "lxa_" + strings.Repeat("Q", 32)
	for i := 0; i < 2; i++ {
		if code := f.c.do("GET", "/api/v1/me", bad, nil, "", nil); code != 401 {
			t.Fatalf("bad token %d: %d, want 401", i+1, code)
		}
	}
	req, _ := http.NewRequest("GET", f.c.base+"/api/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+bad)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a bad token past http.auth_failures: %d Retry-After %q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The console's sign-in goes through the same throttle. The first wait
	// is a second, which a slow machine may outlast: each failed sign-in
	// doubles it.
	code := 0
	for i := 0; i < 3 && code != http.StatusTooManyRequests; i++ {
		_, code = signIn(t, f.c.base, bad)
	}
	if code != http.StatusTooManyRequests {
		t.Fatalf("console sign-in from the throttled address: %d, want 429", code)
	}
	if got := log.lines("authentication failed"); len(got) < 3 {
		t.Fatalf("%d failed authentications logged, want 3:\n%s", len(got), log.String())
	}
	if strings.Contains(log.String(), bad) || strings.Contains(log.String(), short.Token) {
		t.Fatal("the log holds a token")
	}
	if n := metricOr0(t, f.c.base, "loaxa_api_auth_throttled_total"); n < 1 {
		t.Fatalf("loaxa_api_auth_throttled_total = %v", n)
	}
}

// secScopedAdmin: an administrator of district 380 may only create and
// change units below 380, never move one across its border, and gets
// neither the whole database (backup) nor a purge of every unit's evidence.
func secScopedAdmin(t *testing.T) {
	f := startDaemon(t)
	var adm struct{ Token string }
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Quản trị thành phố", "role": "admin", "unit": "380"}, &adm, 201)
	header := "province_code,province_name,district_code,district_name,district_type,commune_code,commune_name,commune_type\n"
	importCSV := func(body string, out any) int {
		return f.c.do("POST", "/api/v1/units/import", adm.Token, strings.NewReader(header+body), "text/csv", out)
	}
	var e apiError
	if code := importCSV("38,Tỉnh Thanh Hóa,380,Thành phố Thanh Hóa,Thành phố,14809,Phường Bắc Sơn,Phường\n", &e); code != 403 || e.Error.Code != broadcast.EForbidden {
		t.Fatalf("moving 14809 (district 381) under 380: %d %+v, want 403", code, e)
	}
	// And out: 14755 of 380 under 381.
	if code := importCSV("38,Tỉnh Thanh Hóa,381,Thị xã Bỉm Sơn,Thị xã,14755,Phường Hàm Rồng,Phường\n", &e); code != 403 {
		t.Fatalf("moving 14755 out of 380: %d %+v, want 403", code, e)
	}
	u, err := f.d.Store().Unit("14809")
	if err != nil || u.Parent != "381" {
		t.Fatalf("commune 14809 after the refused import: %+v %v, want it under 381", u, err)
	}
	// District 381's operator still sees and runs its commune.
	f.c.json("GET", "/api/v1/stations/14809", f.other, nil, nil, 200)
	f.c.json("GET", "/api/v1/stations/14809", f.lan, nil, nil, 403)

	// Inside its own district it may rename, and the answer counts it.
	var res broadcast.ImportResult
	if code := importCSV("38,Tỉnh Thanh Hóa,380,Thành phố Thanh Hóa,Thành phố,14755,Phường Hàm Rồng Mới,Phường\n", &res); code != 200 {
		t.Fatalf("renaming a commune of 380: %d", code)
	}
	if res.UnitsUpdated != 1 || res.StationsUpdated != 1 || res.UnitsCreated != 0 {
		t.Fatalf("the rename's answer %+v, want 1 unit and 1 station updated", res)
	}

	for _, q := range []struct{ method, path string }{
		{"GET", "/api/v1/backup"},
		{"POST", "/api/v1/audit/purge?before=2020-01"},
		{"GET", "/api/v1/audit/verify"},
	} {
		var e apiError
		if code := f.c.do(q.method, q.path, adm.Token, nil, "", &e); code != 403 || e.Error.Code != broadcast.EForbidden {
			t.Errorf("%s %s as district 380's admin: %d %+v, want 403", q.method, q.path, code, e)
		}
	}
	// The whole tree's admin still backs up.
	if code := f.c.do("GET", "/api/v1/backup", f.admin, nil, "", nil); code != 200 {
		t.Fatalf("backup as the admin of the whole tree: %d", code)
	}
}

// secReimportNFD: the same units typed in decomposed form (NFD, as macOS
// and some spreadsheets write Vietnamese) are the same units: the import
// changes nothing for them, counts the one real rename, and every stored
// name stays NFC.
func secReimportNFD(t *testing.T) {
	f := startDaemon(t)
	orig, err := os.ReadFile(testConfig(t).UnitsCSV)
	if err != nil {
		t.Fatal(err)
	}
	csv := strings.Replace(string(orig), ",14755,Phường Hàm Rồng,", ",14755,Phường Hàm Rồng Đông,", 1)
	nfd := norm.NFD.String(csv)
	if nfd == csv {
		t.Fatal("the NFD file is the same as the NFC one")
	}
	var res broadcast.ImportResult
	if code := f.c.do("POST", "/api/v1/units/import", f.admin, strings.NewReader(nfd), "text/csv", &res); code != 200 {
		t.Fatalf("import: %d", code)
	}
	if res.UnitsUpdated != 1 || res.StationsUpdated != 1 || res.UnitsCreated != 0 || res.StationsCreated != 0 {
		t.Fatalf("answer %+v, want exactly the renamed commune updated (unit and station)", res)
	}
	st, err := f.d.Store().Stations("")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !norm.NFC.IsNormalString(s.Name) {
			t.Fatalf("station %s is named %q, not in NFC", s.ID, s.Name)
		}
	}
	for _, code := range []string{"38", "380", "14755", "14809"} {
		u, err := f.d.Store().Unit(code)
		if err != nil || !norm.NFC.IsNormalString(u.Name) || !norm.NFC.IsNormalString(u.Type) {
			t.Fatalf("unit %s: %+v %v, want its names in NFC", code, u, err)
		}
	}
	if u, _ := f.d.Store().Unit("14755"); u.Name != "Phường Hàm Rồng Đông" {
		t.Fatalf("renamed commune: %q", u.Name)
	}
	// Programme titles are names too.
	var p struct{ ID, Title string }
	if code := f.c.upload(f.lan, map[string]string{"unit": "380", "month": "2026-12", "title": norm.NFD.String("Bản tin phòng chống bão")}, wav(time.Second), &p); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	if stored, err := f.d.Store().Programme(p.ID); err != nil || stored.Title != "Bản tin phòng chống bão" || p.Title != stored.Title {
		t.Fatalf("a title uploaded in NFD: answered %q, stored %q %v", p.Title, stored.Title, err)
	}
}

// secDistrictAuditorVerify: checking every entry and signature of both
// logs is CPU-heavy and reads every unit's evidence: district 380's
// auditor is refused; an auditor of the whole tree gets it.
func secDistrictAuditorVerify(t *testing.T) {
	f := startDaemon(t)
	var e apiError
	if code := f.c.do("GET", "/api/v1/audit/verify", f.auditor, nil, "", &e); code != 403 || e.Error.Code != broadcast.EForbidden {
		t.Fatalf("verify as district 380's auditor: %d %+v, want 403", code, e)
	}
	var tree struct{ Token string }
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Thanh tra", "role": "auditor"}, &tree, 201)
	var res struct{ OK bool }
	f.c.json("GET", "/api/v1/audit/verify", tree.Token, nil, &res, 200)
	if !res.OK {
		t.Fatalf("verify as the whole tree's auditor: %+v", res)
	}
	// The district's auditor still reads its own entries.
	f.c.json("GET", "/api/v1/asrun?station=14755", f.auditor, nil, nil, 200)
}

// secReservedDeviceMosquitto: with Mosquitto, a device named like the
// daemon's MQTT user is refused; a record that predates the check (put in
// the store directly) is left out of the password file instead of failing
// the rewrite, the files keep following device changes, disabling it works,
// and the daemon starts again, even when the files cannot be written.
func secReservedDeviceMosquitto(t *testing.T) {
	mosquittotest.Binary(t)
	cfg := testConfig(t)
	port := mosquittotest.FreePort(t)
	dir := filepath.Join(t.TempDir(), "mosquitto")
	pidFile := filepath.Join(t.TempDir(), "mosquitto.pid")
	cfg.MQTT.Embedded.Enabled = false
	cfg.MQTT.URL = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	cfg.MQTT.Username, cfg.MQTT.Password = "loaxad", broadcast.NewSecret()
	cfg.MQTT.MosquittoDir = dir
	cfg.MQTT.MosquittoReload = []string{"sh", "-c", `kill -HUP "$(cat "$0")"`, pidFile}
	clock := newShiftedClock(time.Date(2026, 12, 10, 8, 0, 0, 0, time.FixedZone("ICT", 7*3600)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := Start(ctx, Options{Config: cfg, Logger: testLogger(t), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if d != nil {
			d.Close()
		}
	}()
	_, pid := mosquittotest.StartProcess(t, dir, port)
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := client{t: t, base: "http://" + d.HTTPAddr()}
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	var lan struct{ Token string }
	c.json("POST", "/api/v1/tokens", strings.TrimSpace(string(admin)), map[string]string{"name": "Lan", "role": "operator", "unit": "380"}, &lan, 201)

	for _, id := range []string{"loaxad", "LOAXAD", "inline"} {
		var e apiError
		c.json("POST", "/api/v1/stations/14755/devices", lan.Token, map[string]string{"id": id}, &e, 422)
		if e.Error.Field != "id" || !strings.Contains(e.Error.Message, "reserved") {
			t.Fatalf("device id %s: %+v, want it refused as reserved", id, e)
		}
	}
	if _, err := d.Store().Device("loaxad"); !broadcast.IsNotFound(err) {
		t.Fatalf("the refused device was stored: %v", err)
	}

	connect := func(device, secret string) error { return connectDevice(cfg.MQTT.URL, device, secret) }
	eventually := func(what string, ok func() bool) {
		t.Helper()
		awaitFor(t, 10*time.Second, what, ok)
	}

	// A record from before the check: an enabled device named loaxad.
	old := broadcast.Device{ID: "loaxad", Station: "14755", SecretHash: broadcast.HashSecret(broadcast.NewSecret()), CreatedAt: clock.Now()}
	if err := d.Store().AddDevice(ctx, old, nil); err != nil {
		t.Fatal(err)
	}
	var dev struct{ ID, Secret string }
	c.json("POST", "/api/v1/stations/14755/devices", lan.Token, map[string]string{"id": "14755-01"}, &dev, 201)
	eventually("the new device to get in despite the bad record", func() bool { return connect(dev.ID, dev.Secret) == nil })
	if n := readMetric(t, c.base, "loaxa_mosquitto_devices_skipped"); n != 1 {
		t.Fatalf("loaxa_mosquitto_devices_skipped = %v, want 1 (the loaxad record)", n)
	}
	passwd, _ := os.ReadFile(filepath.Join(dir, "passwd"))
	if n := strings.Count(string(passwd), "loaxad:"); n != 1 {
		t.Fatalf("passwd names loaxad %d times, want once (the daemon):\n%s", n, passwd)
	}
	c.json("DELETE", "/api/v1/devices/loaxad", lan.Token, nil, nil, 200)
	if n := readMetric(t, c.base, "loaxa_mosquitto_devices_skipped"); n != 0 {
		t.Fatalf("loaxa_mosquitto_devices_skipped = %v after disabling it, want 0", n)
	}
	c.json("DELETE", "/api/v1/devices/"+dev.ID, lan.Token, nil, nil, 200)
	eventually("the disabled device to be kept out", func() bool { return connect(dev.ID, dev.Secret) != nil })
	awaitReady(t, c)

	// The daemon starts again with the disabled loaxad record, and also
	// when the files cannot be written: it keeps the previous ones.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "passwd"))
	if err := os.RemoveAll(filepath.Join(dir, "conf.d")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d"), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err = Start(ctx, Options{Config: cfg, Logger: testLogger(t), Clock: clock})
	if err != nil {
		d = nil
		t.Fatalf("the daemon refused to start: %v", err)
	}
	c.base = "http://" + d.HTTPAddr()
	if n := readMetric(t, c.base, "loaxa_mosquitto_sync_failures_total"); n != 1 {
		t.Fatalf("loaxa_mosquitto_sync_failures_total = %v, want 1", n)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "passwd"))
	if !bytes.Equal(before, after) {
		t.Fatalf("a failed rewrite changed passwd:\n%s\nto\n%s", before, after)
	}
	awaitReady(t, c)
}

// secDeviceFetchesOthersAudio: a device downloads the audio of its own
// station's airings only, not another unit's programme nor a draft, by
// hash.
func secDeviceFetchesOthersAudio(t *testing.T) {
	f := startDaemon(t)
	var dev struct{ ID, Secret string }
	f.c.json("POST", "/api/v1/stations/14755/devices", f.lan, map[string]string{"id": "14755-01"}, &dev, 201)
	upload := func(token, unit string, d time.Duration) (id, sha string) {
		var p struct{ ID, SHA256 string }
		if code := f.c.upload(token, map[string]string{"unit": unit, "month": "2026-12", "title": "Bản tin " + unit}, wav(d), &p); code != 201 {
			t.Fatalf("upload for %s: %d", unit, code)
		}
		return p.ID, p.SHA256
	}
	own, ownSHA := upload(f.lan, "380", time.Second)
	f.c.json("POST", "/api/v1/programmes/"+own+"/approve", f.minh, nil, nil, 200)
	other, otherSHA := upload(f.other, "381", 2*time.Second)
	f.c.json("POST", "/api/v1/programmes/"+other+"/approve", f.admin, nil, nil, 200)
	_, draftSHA := upload(f.lan, "380", 3*time.Second)

	fetch := func(sha string) int {
		req, _ := http.NewRequest("GET", f.c.base+"/audio/"+sha, nil)
		req.SetBasicAuth(dev.ID, dev.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := fetch(ownSHA); code != 200 {
		t.Fatalf("the audio of its own airings: %d", code)
	}
	for what, sha := range map[string]string{"district 381's programme": otherSHA, "a draft of its own district": draftSHA, "audio that does not exist": strings.Repeat("ab", 32)} {
		if code := fetch(sha); code != 404 {
			t.Errorf("the device fetched %s: %d, want 404", what, code)
		}
	}
	if n := readMetric(t, f.c.base, "loaxa_api_device_audio_refused_total"); n != 3 {
		t.Fatalf("loaxa_api_device_audio_refused_total = %v, want 3", n)
	}
	// Tokens are unchanged: an operator of 381 may listen to 380's.
	if code := f.c.do("GET", "/audio/"+ownSHA, f.other, nil, "", nil); code != 200 {
		t.Fatalf("a token fetching audio: %d", code)
	}
}

// mqttConnect is an MQTT 3.1.1 CONNECT packet.
func mqttConnect(clientID, user, password string) []byte {
	str := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		return append(b, s...)
	}
	var body []byte
	body = str(body, "MQTT")
	body = append(body, 4, 0xC2, 0, 60) // level 4; user, password, clean session; keep-alive 60 s
	body = str(body, clientID)
	body = str(body, user)
	body = str(body, password)
	pk := []byte{0x10}
	for n := len(body); ; {
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 0x80
		}
		pk = append(pk, b)
		if n == 0 {
			break
		}
	}
	return append(pk, body...)
}

// secMQTTConnectFlood: 16 workers send CONNECTs with bad passwords for 2 s
// (a device's id, and made-up ones). The broker checks only the first few
// of each address and user, closes the rest unchecked, and writes no line
// per attempt: one summary line (at Close here, the interval being a
// minute). The daemon's own session is not disturbed.
func secMQTTConnectFlood(t *testing.T) {
	var log lineLog
	f := startDaemonLogged(t, nil, log.logger())
	var dev struct{ ID, Secret string }
	f.c.json("POST", "/api/v1/stations/14755/devices", f.lan, map[string]string{"id": "14755-01"}, &dev, 201)
	addr := f.d.BrokerAddr()
	before := len(log.lines("component=broker"))

	const workers, flood = 16, 2 * time.Second
	var attempts, connacks, closed atomic.Int64
	stop := time.Now().Add(flood)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				user := dev.ID
				if w%2 == 1 {
					user = fmt.Sprintf("x%d-%d", w, i)
				}
				conn, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					continue
				}
				attempts.Add(1)
				_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = conn.Write(mqttConnect("dev-"+user, user, "not the secret"))
				var ack [4]byte
				if _, err := io.ReadFull(conn, ack[:]); err == nil && ack[0] == 0x20 {
					if ack[3] == 0 {
						t.Errorf("a bad password got in as %s", user)
					}
					connacks.Add(1)
				} else {
					closed.Add(1)
				}
				conn.Close()
			}
		}()
	}
	wg.Wait()
	checked := metricOr0(t, f.c.base, `loaxa_broker_auth_failures_total{reason="wrong_secret"}`) +
		metricOr0(t, f.c.base, `loaxa_broker_auth_failures_total{reason="unknown_device"}`)
	throttled := metricOr0(t, f.c.base, "loaxa_broker_auth_throttled_total")
	t.Logf("%d attempts in %s: %d refused with a CONNACK (%v checked), %d closed unchecked (%v throttled)",
		attempts.Load(), flood, connacks.Load(), checked, closed.Load(), throttled)
	// Every attempt without a CONNACK was throttled, but for the odd
	// checked one whose CONNACK a loaded machine did not deliver in time.
	if throttled == 0 || int64(throttled) > closed.Load() || closed.Load()-int64(throttled) > workers {
		t.Fatalf("throttled %v, closed without a CONNACK %d: want every attempt past the first few closed unchecked", throttled, closed.Load())
	}
	// Five free failures per address and user, then waits of 1, 2, 4…
	// s: within 2 s a few rounds of checks (each round at most one per
	// worker, those admitted before the first of them failed), whatever
	// the number of attempts.
	if checked > 3*workers || float64(connacks.Load()) > checked {
		t.Fatalf("%v CONNECTs were checked (%d CONNACKs), want at most %d", checked, connacks.Load(), 3*workers)
	}
	if attempts.Load() < 100 {
		t.Fatalf("only %d attempts: the flood did not flood", attempts.Load())
	}
	if got := log.lines("component=broker")[before:]; len(got) > 2 {
		t.Fatalf("%d log lines during the flood, want at most 2:\n%s", len(got), strings.Join(got[:min(len(got), 10)], "\n"))
	}
	awaitReady(t, f.c)
	if err := f.d.Close(); err != nil {
		t.Fatal(err)
	}
	sum := log.lines("broker refused connections")
	if len(sum) != 1 || !strings.Contains(sum[0], fmt.Sprintf("throttled=%d", int64(throttled))) ||
		!strings.Contains(sum[0], fmt.Sprintf("refused=%d", int64(checked))) {
		t.Fatalf("summary lines %q, want one with refused=%v throttled=%v", sum, checked, throttled)
	}
}

// secSlowLoris: a client that sends its body a byte now and then is cut
// after http.read_timeout (here 1 s), on the sign-in form as on an upload,
// where the body must keep coming at http.min_body_rate; one that stops
// reading a download is cut after http.write_timeout (1 s).
func secSlowLoris(t *testing.T) {
	f := startDaemonWith(t, func(c *configs.Config) {
		c.HTTP.ReadTimeout = time.Second
		c.HTTP.MinBodyRate = 1024
		c.HTTP.WriteTimeout = time.Second
	})
	host := strings.TrimPrefix(f.c.base, "http://")
	for _, tc := range []struct {
		name, head, kind string
	}{
		// With a sign-in CSRF cookie, so that the form is read.
		{"POST /login", "POST /login HTTP/1.1\r\nHost: " + host + "\r\nCookie: loaxa_login_csrf=" + strings.Repeat("c", 43) +
			"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n", "read_timeout"},
		{"POST /api/v1/programmes", "POST /api/v1/programmes HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + f.lan +
			"\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 10000000\r\n\r\n", "min_rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			series := `loaxa_http_slow_clients_total{kind="` + tc.kind + `"}`
			was := metricOr0(t, f.c.base, series)
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			if _, err := io.WriteString(conn, tc.head); err != nil {
				t.Fatal(err)
			}
			// A byte now, then one every 5 s from a goroutine; the server
			// must end the connection long before the second.
			cut := make(chan error, 1)
			go func() {
				_ = conn.SetReadDeadline(time.Now().Add(4 * time.Second))
				_, err := io.Copy(io.Discard, conn) // until the server closes it
				cut <- err
			}()
			for i := 0; ; i++ {
				if _, err := conn.Write([]byte{'a'}); err != nil {
					break // closed by the server
				}
				select {
				case err := <-cut:
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("the connection was still open after %s", time.Since(start).Round(time.Millisecond))
					}
					if d := time.Since(start); d > 3*time.Second {
						t.Fatalf("cut after %s, want about 1 s", d)
					}
					if n := metricOr0(t, f.c.base, series); n != was+1 {
						t.Fatalf("%s = %v, want %v", series, n, was+1)
					}
					return
				case <-time.After(5 * time.Second):
				}
				if i > 1 {
					t.Fatal("the connection outlived two bytes at 5 s intervals")
				}
			}
		})
	}
	t.Run("a download left unread", func(t *testing.T) {
		var p struct{ SHA256 string }
		// Ten minutes of 8 kHz audio, 9.6 MB: more than the sockets hold.
		if code := f.c.upload(f.lan, map[string]string{"unit": "380", "month": "2026-12", "title": "Dài"}, wav(10*time.Minute), &p); code != 201 {
			t.Fatalf("upload: %d", code)
		}
		series := `loaxa_http_slow_clients_total{kind="write_timeout"}`
		was := metricOr0(t, f.c.base, series)
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.(*net.TCPConn).SetReadBuffer(4096)
		if _, err := io.WriteString(conn, "GET /audio/"+p.SHA256+" HTTP/1.1\r\nHost: "+host+"\r\nAuthorization: Bearer "+f.lan+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		awaitFor(t, 15*time.Second, "the unread download to be cut", func() bool { return metricOr0(t, f.c.base, series) > was })
	})
}
