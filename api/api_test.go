package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"mime/multipart"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/broadcast/audio/audiotest"
	"github.com/loaxa/loaxa/scheduler"
	"github.com/loaxa/loaxa/storage"
	"go.yaml.in/yaml/v3"
)

// fakePlanner stands in for the scheduler, which needs a broker: it plans
// one airing per station below the programme's unit, at a fixed time.
type fakePlanner struct {
	store   *storage.Store
	touched []string
}

func (p *fakePlanner) PlanProgramme(ctx context.Context, prog broadcast.Programme, actor string) (scheduler.PlanResult, error) {
	stations, err := p.store.Stations(prog.UnitPath)
	if err != nil {
		return scheduler.PlanResult{}, err
	}
	start := time.Date(2026, 12, 12, 6, 0, 0, 0, ict)
	var plan []*broadcast.Airing
	for _, st := range stations {
		plan = append(plan, &broadcast.Airing{ID: broadcast.NewID(start) + st.ID[len(st.ID)-2:], Programme: prog.ID, Station: st.ID, Month: prog.Month,
			Kind: broadcast.KindPremiere, Title: prog.Title, Audio: prog.Audio, Start: start, NotAfter: start.Add(15 * time.Minute), Status: broadcast.StatusPlanned})
	}
	if err := p.store.PutAirings(ctx, plan, nil); err != nil {
		return scheduler.PlanResult{}, err
	}
	return scheduler.PlanResult{Stations: len(stations), Planned: len(plan)}, nil
}

func (p *fakePlanner) Emergency(context.Context, broadcast.Programme, string) (scheduler.EmergencyResult, error) {
	return scheduler.EmergencyResult{}, nil
}

func (p *fakePlanner) Touch(stations ...string) { p.touched = append(p.touched, stations...) }

var ict = time.FixedZone("ICT", 7*3600)

type heardDevice struct{ Device, Station string }

// apiRig is the API's handlers on a real bbolt store, without a broker or
// the rest of the daemon.
type apiRig struct {
	t     testing.TB
	srv   *Server
	store *storage.Store
	plan  *fakePlanner
	admin string
}

func newRig(t testing.TB) *apiRig {
	t.Helper()
	now := time.Date(2026, 12, 10, 8, 0, 0, 0, ict)
	dir := t.TempDir()
	st, err := storage.Open(dir, storage.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	path, err := Bootstrap(context.Background(), st, dir, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	admin, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	plan := &fakePlanner{store: st}
	srv, err := New(Options{Store: st, Planner: plan, Policy: broadcast.DefaultPolicy(), Location: ict,
		Now: func() time.Time { return now }, TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// The daemon adds the live device states from its hub; no device is
	// heard here.
	ServeDeviceStates(srv, func() []heardDevice { return nil }, func(d heardDevice) string { return d.Station })
	return &apiRig{t: t, srv: srv, store: st, plan: plan, admin: strings.TrimSpace(string(admin))}
}

// do sends a request through the handlers and decodes a JSON answer into
// out (if not nil); it returns the status.
func (r *apiRig) do(method, path, token, contentType string, body io.Reader, out any) int {
	r.t.Helper()
	req := httptest.NewRequest(method, path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	r.srv.Handler().ServeHTTP(w, req)
	if out != nil && w.Code < 300 {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			r.t.Fatalf("%s %s: %v: %s", method, path, err, w.Body)
		}
	}
	return w.Code
}

func (r *apiRig) json(method, path, token string, in, out any, want int) {
	r.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	if got := r.do(method, path, token, "application/json", body, out); got != want {
		r.t.Fatalf("%s %s: %d, want %d", method, path, got, want)
	}
}

func (r *apiRig) importUnits() {
	r.t.Helper()
	csv, err := os.ReadFile("../configs/data/thanh-hoa-units-2025-07.csv")
	if err != nil {
		r.t.Fatal(err)
	}
	if code := r.do("POST", "/api/v1/units/import", r.admin, "text/csv", bytes.NewReader(csv), nil); code != 200 {
		r.t.Fatalf("import: %d", code)
	}
}

func (r *apiRig) token(name, role, unit string) string {
	var out struct{ Token string }
	r.json("POST", "/api/v1/tokens", r.admin, map[string]string{"name": name, "role": role, "unit": unit}, &out, 201)
	return out.Token
}

func (r *apiRig) upload(token string, fields map[string]string, audio []byte, out any) int {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		_ = mw.WriteField(k, fields[k])
	}
	fw, _ := mw.CreateFormFile("audio", "programme.wav")
	_, _ = fw.Write(audio)
	mw.Close()
	return r.do("POST", "/api/v1/programmes", token, mw.FormDataContentType(), &b, out)
}

// Every route the server registers is in docs/openapi.yaml, and every
// operation there is a route: a route added without its description, or a
// description left behind, fails here.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	r := newRig(t)
	raw, err := os.ReadFile(filepath.Join("..", "docs", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                               `yaml:"openapi"`
		Paths   map[string]map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
	}
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			if op["responses"] == nil {
				t.Errorf("%s %s has no responses", method, path)
			}
			described[strings.ToUpper(method)+" "+path] = true
		}
	}
	registered := map[string]bool{}
	for _, p := range r.srv.Routes() {
		if !strings.Contains(p, " ") {
			continue // the catch-all that answers 404 for unknown /api/ paths
		}
		registered[p] = true
	}
	for _, p := range slices.Sorted(maps.Keys(registered)) {
		if !described[p] {
			t.Errorf("route %s is not described in docs/openapi.yaml", p)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(described)) {
		if !registered[p] {
			t.Errorf("docs/openapi.yaml describes %s, which the server does not serve", p)
		}
	}
}

// A pass through each group of routes with a real store: access, units,
// programmes, airings, evidence.
func TestHandlers(t *testing.T) {
	r := newRig(t)
	r.importUnits()

	// Access: who a token is, and what its role keeps it from.
	lan := r.token("Lan", "operator", "14758")
	minh := r.token("Minh", "operator", "38")
	auditor := r.token("Kiểm toán", "auditor", "")
	var me struct {
		Name, Role string
		UnitPath   string `json:"unit_path"`
	}
	r.json("GET", "/api/v1/me", lan, nil, &me, 200)
	if me.Name != "Lan" || me.Role != "operator" || me.UnitPath != "38/14758" {
		t.Errorf("me: %+v", me)
	}
	r.json("POST", "/api/v1/tokens", lan, map[string]string{"name": "x", "role": "admin"}, nil, 403)
	r.json("GET", "/api/v1/me", "lxa_not-a-token", nil, nil, 401)

	// Units: the two-level tree, scoped to the token.
	var units struct{ Units []broadcast.Unit }
	r.json("GET", "/api/v1/units?parent=38", r.admin, nil, &units, 200)
	if len(units.Units) != 166 {
		t.Errorf("%d communes under 38, want Thanh Hoa's 166", len(units.Units))
	}
	r.json("GET", "/api/v1/stations/14797", lan, nil, nil, 403) // another commune
	var dev struct{ ID, Secret string }
	r.json("POST", "/api/v1/stations/14758/devices", lan, map[string]string{"id": "14758-01"}, &dev, 201)
	if dev.Secret == "" {
		t.Error("no secret for the new device")
	}

	// Programmes: upload, the four-eyes rule, approval plans.
	var prog struct{ ID, Status string }
	if code := r.upload(lan, map[string]string{"unit": "14758", "month": "2026-12", "title": "Chuyển đổi số"}, audiotest.WAV(2*time.Second), &prog); code != 201 || prog.Status != "draft" {
		t.Fatalf("upload: %d %+v", code, prog)
	}
	r.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", lan, nil, nil, 403) // the uploader
	r.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", minh, nil, nil, 200)

	// Airings: what the planner planned, and an operator's cancellation.
	var list struct{ Airings []broadcast.Airing }
	r.json("GET", "/api/v1/airings?station=14758", lan, nil, &list, 200)
	if len(list.Airings) != 1 {
		t.Fatalf("%d airings at 14758, want the fake planner's 1", len(list.Airings))
	}
	var cancelled broadcast.Airing
	r.json("POST", "/api/v1/airings/"+list.Airings[0].ID+"/cancel", lan, nil, &cancelled, 200)
	if cancelled.Status != broadcast.StatusCancelled || cancelled.CancelledAt.IsZero() || !slices.Contains(r.plan.touched, "14758") {
		t.Errorf("cancel: %s at %v, touched %v", cancelled.Status, cancelled.CancelledAt, r.plan.touched)
	}

	// Evidence: verification covers the records every change left.
	var verify audit.Result
	r.json("GET", "/api/v1/audit/verify", auditor, nil, &verify, 200)
	if !verify.OK || verify.Records == 0 || verify.Airings != 1 {
		t.Errorf("verify: %+v", verify)
	}
	r.json("GET", "/api/v1/audit/verify", lan, nil, nil, 403)
	var ops struct{ Entries []broadcast.OpEntry }
	r.json("GET", "/api/v1/oplog", auditor, nil, &ops, 200)
	actions := map[string]bool{}
	for _, o := range ops.Entries {
		actions[o.Action] = true
	}
	for _, a := range []string{"units.import", "device.add", "programme.upload", "programme.approve", "airing.cancel", "records.write"} {
		if !actions[a] {
			t.Errorf("the operations log has no %s: %v", a, slices.Sorted(maps.Keys(actions)))
		}
	}
}
