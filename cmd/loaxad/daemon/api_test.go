package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/configs"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// startDaemon runs the real daemon on free ports with Thanh Hoa's units and
// returns an API client, the admin token and two operator tokens of
// district 380 plus one of district 381 and an auditor of 380.
type fixture struct {
	c                                     client
	d                                     *Daemon
	clock                                 shiftedClock
	admin, lan, minh, other, auditor, dir string
}

func startDaemon(t *testing.T) fixture { t.Helper(); return startDaemonWith(t, nil) }

// startDaemonWith is startDaemon with the configuration changed by edit
// first (nil changes nothing).
func startDaemonWith(t *testing.T, edit func(*configs.Config)) fixture {
	t.Helper()
	return startDaemonLogged(t, edit, testLogger(t))
}

// startDaemonLogged is startDaemonWith logging to log.
func startDaemonLogged(t *testing.T, edit func(*configs.Config), log *slog.Logger) fixture {
	t.Helper()
	cfg := testConfig(t)
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	clock := newShiftedClock(time.Date(2026, 12, 10, 8, 0, 0, 0, time.FixedZone("ICT", 7*3600)))
	d, err := Start(ctx, Options{Config: cfg, Logger: log, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{c: client{t: t, base: "http://" + d.HTTPAddr()}, d: d, clock: clock, admin: strings.TrimSpace(string(admin)), dir: cfg.DataDir}
	for _, tk := range []struct {
		dst              *string
		name, role, unit string
	}{{&f.lan, "Lan", "operator", "380"}, {&f.minh, "Minh", "operator", "380"}, {&f.other, "Hoa", "operator", "381"}, {&f.auditor, "Sở TT&TT", "auditor", "380"}} {
		var out struct{ Token string }
		f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": tk.name, "role": tk.role, "unit": tk.unit}, &out, 201)
		*tk.dst = out.Token
	}
	return f
}

type apiError struct {
	Error struct{ Code, Message, Field string }
}

func TestUploadRefusesWhatIsNotAudioAndKeepsNothing(t *testing.T) {
	f := startDaemon(t)
	good := wav(2 * time.Second)
	fields := map[string]string{"unit": "380", "month": "2026-12", "title": "Chuyển đổi số"}
	for name, tc := range map[string]struct {
		audio []byte
		code  int
		want  string
	}{
		"png":       {append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0}, 200)...), 415, "unsupported"},
		"text":      {[]byte("Kính gửi các đồng chí, đây không phải là âm thanh."), 415, "unsupported"},
		"truncated": {good[:len(good)/3], 422, "invalid"},
		"empty":     {nil, 422, "invalid"},
	} {
		t.Run(name, func(t *testing.T) {
			var e apiError
			if code := f.c.upload(f.lan, fields, tc.audio, &e); code != tc.code || e.Error.Code != tc.want || e.Error.Field != "audio" {
				t.Fatalf("status %d %+v, want %d %s on field audio", code, e, tc.code, tc.want)
			}
		})
	}
	var list struct{ Programmes []any }
	f.c.json("GET", "/api/v1/programmes", f.lan, nil, &list, 200)
	if len(list.Programmes) != 0 {
		t.Fatalf("refused uploads left %d programmes", len(list.Programmes))
	}
	rep, err := f.d.Store().Check()
	if err != nil || len(rep.OrphanBlobs) != 0 {
		t.Fatalf("refused uploads left blobs: %+v %v", rep, err)
	}
	if spooled, _ := filepath.Glob(filepath.Join(f.dir, "upload-*")); len(spooled) != 0 {
		t.Fatalf("refused uploads left spooled files: %v", spooled)
	}
	// A bad field is named.
	var e apiError
	bad := map[string]string{"unit": "380", "month": "12/2026", "title": "x"}
	if code := f.c.upload(f.lan, bad, good, &e); code != 422 || e.Error.Field != "month" {
		t.Fatalf("a bad month: %d %+v", code, e)
	}
}

func TestAuthorisation(t *testing.T) {
	f := startDaemon(t)
	fields := map[string]string{"unit": "380", "month": "2026-12", "title": "Chuyển đổi số"}
	var e apiError
	if code := f.c.upload("", fields, wav(time.Second), &e); code != 401 || e.Error.Code != "unauthorized" {
		t.Errorf("no token: %d %+v", code, e)
	}
	if code := f.c.upload("lxa_not-a-token", fields, wav(time.Second), &e); code != 401 {
		t.Errorf("bad token: %d", code)
	}
	if code := f.c.upload(f.auditor, fields, wav(time.Second), &e); code != 403 {
		t.Errorf("auditor uploads: %d", code)
	}
	if code := f.c.upload(f.other, fields, wav(time.Second), &e); code != 403 {
		t.Errorf("operator of 381 uploads for 380: %d", code)
	}
	f.c.json("POST", "/api/v1/tokens", f.lan, map[string]string{"name": "x", "role": "admin"}, &e, 403)
	f.c.json("POST", "/api/v1/stations/14755/devices", f.other, map[string]string{"id": "14755-09"}, &e, 403)
	f.c.json("POST", "/api/v1/stations/14755/devices", f.lan, map[string]string{"id": "bad/id"}, &e, 422)
	f.c.json("POST", "/api/v1/stations/14755/devices", f.lan, map[string]string{"id": "14755-09", "colour": "red"}, &e, 400)
	f.c.json("GET", "/api/v1/backup", f.lan, nil, &e, 403)
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "x", "role": "king"}, &e, 422)
}

func TestMoveAiringRules(t *testing.T) {
	f := startDaemon(t)
	var prog struct{ ID string }
	if code := f.c.upload(f.lan, map[string]string{"unit": "14755", "month": "2026-12", "title": "Bản tin"}, wav(10*time.Minute), &prog); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	f.c.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", f.minh, nil, nil, 200)
	// Who acted, by the names their tokens had, beside the ids.
	var p struct {
		broadcast.Programme
		UnitName string `json:"unit_name"`
	}
	f.c.json("GET", "/api/v1/programmes/"+prog.ID, f.lan, nil, &p, 200)
	if p.UploaderName != "Lan" || p.ApproverName != "Minh" || p.UploadedBy == "" || p.ApprovedBy == "" {
		t.Errorf("uploaded by %q (%s), approved by %q (%s)", p.UploaderName, p.UploadedBy, p.ApproverName, p.ApprovedBy)
	}
	if p.UnitName != "Phường Hàm Rồng" {
		t.Errorf("unit %s named %q", p.Unit, p.UnitName)
	}
	var list struct{ Airings []broadcast.Airing }
	f.c.json("GET", "/api/v1/airings?station=14755", f.lan, nil, &list, 200)
	if len(list.Airings) != 4 {
		t.Fatalf("%d airings, want 4", len(list.Airings))
	}
	a, b := list.Airings[0], list.Airings[1]
	ict := time.FixedZone("ICT", 7*3600)
	move := func(id string, start time.Time, want int) apiError {
		var e apiError
		f.c.json("PATCH", "/api/v1/airings/"+id, f.lan, map[string]string{"start": start.Format(time.RFC3339)}, &e, want)
		return e
	}
	if e := move(b.ID, a.Start.Add(5*time.Minute), 409); !strings.Contains(e.Error.Message, "overlap") {
		t.Errorf("overlap: %+v", e)
	}
	if e := move(b.ID, time.Date(2026, 12, 20, 22, 0, 0, 0, ict), 409); !strings.Contains(e.Error.Message, "broadcasting hours") {
		t.Errorf("outside hours: %+v", e)
	}
	if e := move(b.ID, time.Date(2026, 12, 20, 20, 55, 0, 0, ict), 409); !strings.Contains(e.Error.Message, "broadcasting hours") {
		t.Errorf("ends after hours: %+v", e)
	}
	move(b.ID, time.Date(2027, 1, 5, 9, 0, 0, 0, ict), 409)
	move(b.ID, time.Date(2026, 12, 1, 9, 0, 0, 0, ict), 422) // in the past
	// Into the freeze window is the operator's call; out of it is not.
	soon := f.clock.Now().Add(10 * time.Minute).Truncate(time.Minute)
	move(b.ID, soon, 200)
	if e := move(b.ID, soon.Add(2*time.Hour), 409); !strings.Contains(e.Error.Message, "freeze") {
		t.Errorf("frozen: %+v", e)
	}
	var c broadcast.Airing
	f.c.json("POST", "/api/v1/airings/"+b.ID+"/cancel", f.lan, nil, &c, 200)
	if c.Status != broadcast.StatusCancelled {
		t.Errorf("cancel: %s", c.Status)
	}
	f.c.json("POST", "/api/v1/airings/"+b.ID+"/cancel", f.lan, nil, nil, 409)

	var ops struct{ Entries []broadcast.OpEntry }
	f.c.json("GET", "/api/v1/oplog", f.auditor, nil, &ops, 200)
	actions := map[string]int{}
	for _, o := range ops.Entries {
		actions[o.Action]++
	}
	if actions["programme.upload"] != 1 || actions["programme.approve"] != 1 || actions["airing.move"] != 1 || actions["airing.cancel"] != 1 {
		t.Errorf("operations log: %v", actions)
	}
	for _, o := range ops.Entries {
		if !strings.HasPrefix(o.Unit, "38/380") {
			t.Errorf("district 380's auditor reads %s %s of unit %q", o.Action, o.Subject, o.Unit)
		}
	}
	// Another district's auditor reads none of it; the admin reads all, the
	// unit import of the whole tree too.
	var other struct{ Token string }
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Phòng VH 381", "role": "auditor", "unit": "381"}, &other, 201)
	var theirs, all struct{ Entries []broadcast.OpEntry }
	f.c.json("GET", "/api/v1/oplog", other.Token, nil, &theirs, 200)
	for _, o := range theirs.Entries {
		if !strings.HasPrefix(o.Unit, "38/381") {
			t.Errorf("district 381's auditor reads %s %s of unit %q", o.Action, o.Subject, o.Unit)
		}
	}
	f.c.json("GET", "/api/v1/oplog", f.admin, nil, &all, 200)
	seen := map[string]bool{}
	for _, o := range all.Entries {
		seen[o.Action] = true
	}
	if len(all.Entries) <= len(ops.Entries) || !seen["units.import"] || !seen["airing.move"] {
		t.Errorf("the admin reads %d entries (%v), the 380 auditor %d", len(all.Entries), seen, len(ops.Entries))
	}
	if len(theirs.Entries) == 0 {
		t.Error("the 381 auditor does not see the creation of a 381 token")
	}
}

// Every metric the daemon registers follows Prometheus' naming rules, and
// /metrics serves them.
func TestMetricsLint(t *testing.T) {
	f := startDaemon(t)
	problems, err := testutil.GatherAndLint(f.d.metrics)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	resp, err := http.Get(f.c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"loaxa_devices_", "loaxa_scheduler_snapshots_published_total", "loaxa_api_requests_total", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
