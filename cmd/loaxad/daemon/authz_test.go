package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/configs"
)

// TestAuthorisationMatrix asks every route of api/server.go as every kind of
// caller — no token, a bad token, admin, an operator and an auditor of
// district 380, an auditor of the whole province, a device with its HTTP
// Basic credentials, a device with a wrong secret and a disabled one —
// about a resource of the caller's own unit (380, station 14755) and of
// another (381, station 14809) where the route has a unit, and checks each
// answer against docs/api.md's: 401 without valid credentials, 403 for a role or
// unit that may not, otherwise the route's success (201 for creations, 200
// for the rest). Every call gets a fresh target of its own, made by an
// administrator or another operator, so that the order of the cases does
// not matter and a success is a real one (an approval that is not
// self-approval, a move to a free minute inside broadcasting hours).
//
// Where docs/api.md is silent the code's documented choices are asserted and
// named in the route's note: bundles, seals and the whole-log verify need a
// token of the whole tree (api/bundle.go, docs/security.md); auditors may seal;
// seals and the operations log are the whole log's; audio is fetched by any
// token whatever its unit, and by a device only when an airing of its
// station plays it (docs/security.md: 404 otherwise). Tokens are listed and revoked
// by admins (docs/security.md).
//
// Every bad-token and wrong-secret call is a failed authentication from
// the one loopback address: the throttle (http.auth_failures) is lifted
// here, and tested in security_access_test.go.
func TestAuthorisationMatrix(t *testing.T) {
	m := newMatrix(t)
	n := 0
	for _, r := range matrixRoutes() {
		for _, who := range r.who {
			if !slices.ContainsFunc(m.callers, func(c mxCaller) bool { return c.name == who }) {
				t.Fatalf("%s: no caller %q", r.route, who)
			}
		}
		sides := []string{""}
		if r.unit {
			sides = []string{ownUnit, otherUnit}
		}
		for _, side := range sides {
			for _, c := range m.callers {
				name := r.route + "/" + c.name
				if side != "" {
					name += "/" + side
				}
				want := r.want(c, side)
				n++
				t.Run(name, func(t *testing.T) { m.check(t, r, c, side, want) })
			}
		}
	}
	t.Logf("%d cases", n)
}

const (
	ownUnit   = "own-unit"   // district 380, station 14755: the scoped tokens' own
	otherUnit = "other-unit" // district 381, station 14809: outside them
)

// mxCaller is one kind of caller.
type mxCaller struct {
	name   string
	bearer string    // Authorization: Bearer
	basic  [2]string // HTTP Basic device id and secret
	token  bool      // bearer is a valid token: refusals are 403, not 401
	scoped bool      // the token is for district 380
}

// mxRoute is one route of api/server.go and who docs/api.md lets call it.
type mxRoute struct {
	route   string
	unit    bool // asked about the own and the other unit's resource
	open    bool // needs no credentials: everyone gets success
	anyUnit bool // scoped tokens may reach the other unit's resource too
	success int
	// deviceOther is what the device gets for the other unit's resource,
	// when it is not what everyone else gets (0).
	deviceOther int
	who         []string // callers allowed, by mxCaller.name
	note        string   // the documented choice asserted, where docs/api.md is silent
	req         func(t *testing.T, m *matrix, side string) mxReq
}

type mxReq struct {
	method, path string
	body         []byte
	contentType  string
}

// want is docs/api.md's answer to c about the side's resource.
func (r mxRoute) want(c mxCaller, side string) int {
	switch {
	case r.open:
		return r.success
	case side == otherUnit && c.name == "device" && r.deviceOther != 0:
		return r.deviceOther
	case !slices.Contains(r.who, c.name):
		if c.token {
			return http.StatusForbidden
		}
		return http.StatusUnauthorized
	case side == otherUnit && c.scoped && !r.anyUnit:
		return http.StatusForbidden
	}
	return r.success
}

var (
	mxAnyToken = []string{"admin", "operator", "auditor", "province-auditor"}
	mxWriters  = []string{"admin", "operator"}
	mxReaders  = []string{"admin", "auditor", "province-auditor"}
	mxAdmin    = []string{"admin"}
	mxTree     = []string{"admin", "province-auditor"}
	mxAudio    = []string{"admin", "operator", "auditor", "province-auditor", "device"}
)

func matrixRoutes() []mxRoute {
	get := func(path string) func(*testing.T, *matrix, string) mxReq {
		return func(*testing.T, *matrix, string) mxReq { return mxReq{method: "GET", path: path} }
	}
	return []mxRoute{
		{route: "GET /healthz", open: true, success: 200, req: get("/healthz")},
		{route: "GET /readyz", open: true, success: 200, req: get("/readyz")},
		{route: "GET /metrics", open: true, success: 200, note: "metrics_public is true by default", req: get("/metrics")},

		{route: "POST /api/v1/tokens", unit: true, success: 201, who: mxAdmin, req: func(t *testing.T, m *matrix, side string) mxReq {
			return m.jsonReq("POST", "/api/v1/tokens", map[string]string{"name": m.unique("matrix"), "role": "operator", "unit": m.unit(side)})
		}},
		{route: "GET /api/v1/tokens", success: 200, who: mxAdmin, note: "the tokens of the admin's unit and below, never a secret", req: get("/api/v1/tokens")},
		{route: "DELETE /api/v1/tokens/{id}", unit: true, success: 200, who: mxAdmin, note: "admin; the target is a fresh operator token of the side's unit", req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "DELETE", path: "/api/v1/tokens/" + m.token(t, side)}
		}},
		{route: "POST /api/v1/units/import", success: 200, who: mxAdmin, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "POST", path: "/api/v1/units/import", body: m.unitsCSV, contentType: "text/csv"}
		}},
		{route: "GET /api/v1/me", success: 200, who: mxAnyToken, note: "api/me.go: a token's own identity, whatever its unit", req: get("/api/v1/me")},
		{route: "GET /api/v1/units", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/units?parent=" + m.unit(side)}
		}},
		{route: "GET /api/v1/units?parent={ancestor}", success: 200, who: mxAnyToken, note: "a scoped token sees the way down to its unit", req: get("/api/v1/units?parent=38")},
		{route: "GET /api/v1/stations", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/stations?unit=" + m.unit(side)}
		}},
		{route: "GET /api/v1/stations/{id}", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/stations/" + m.station(side)}
		}},
		{route: "POST /api/v1/stations/{id}/devices", unit: true, success: 201, who: mxWriters, req: func(t *testing.T, m *matrix, side string) mxReq {
			return m.jsonReq("POST", "/api/v1/stations/"+m.station(side)+"/devices", map[string]string{"id": m.deviceID(side)})
		}},
		{route: "GET /api/v1/devices/status", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/devices/status?station=" + m.station(side)}
		}},
		{route: "GET /api/v1/devices/status?unit=", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/devices/status?unit=" + m.unit(side)}
		}},
		{route: "DELETE /api/v1/devices/{id}", unit: true, success: 200, who: mxWriters, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "DELETE", path: "/api/v1/devices/" + m.device(t, side)}
		}},

		{route: "POST /api/v1/programmes", unit: true, success: 201, who: mxWriters, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxMultipart("/api/v1/programmes", map[string]string{"unit": m.unit(side), "month": "2026-12", "title": m.unique("Bản tin")}, m.audio(side))
		}},
		{route: "GET /api/v1/programmes", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/programmes?month=2026-12&unit=" + m.unit(side)}
		}},
		{route: "GET /api/v1/programmes/{id}", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/programmes/" + m.draft(t, side)}
		}},
		{route: "POST /api/v1/programmes/{id}/approve", unit: true, success: 200, who: mxWriters, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "POST", path: "/api/v1/programmes/" + m.draft(t, side) + "/approve"}
		}},
		{route: "POST /api/v1/programmes/{id}/withdraw", unit: true, success: 200, who: mxWriters, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "POST", path: "/api/v1/programmes/" + m.approved(t, side) + "/withdraw"}
		}},

		{route: "GET /api/v1/airings", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/airings?month=2026-12&station=" + m.station(side)}
		}},
		{route: "GET /api/v1/airings/{id}", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/airings/" + m.airing(t, side)}
		}},
		{route: "PATCH /api/v1/airings/{id}", unit: true, success: 200, who: mxWriters, req: func(t *testing.T, m *matrix, side string) mxReq {
			return m.jsonReq("PATCH", "/api/v1/airings/"+m.airing(t, side), map[string]string{"start": m.freeMinute()})
		}},
		{route: "POST /api/v1/airings/{id}/cancel", unit: true, success: 200, who: mxWriters, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "POST", path: "/api/v1/airings/" + m.airing(t, side) + "/cancel"}
		}},

		{route: "POST /api/v1/emergency", unit: true, success: 201, who: mxWriters, req: func(t *testing.T, m *matrix, side string) mxReq {
			// The commune's unit, so that each emergency reaches one station.
			return mxMultipart("/api/v1/emergency", map[string]string{"unit": m.station(side), "title": m.unique("Cảnh báo lũ")}, m.audio(side))
		}},

		{route: "GET /api/v1/asrun", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/asrun?station=" + m.station(side)}
		}},
		{route: "GET /api/v1/asrun?device=", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/asrun?format=csv&device=" + m.devices[side]}
		}},
		{route: "GET /api/v1/compliance", unit: true, success: 200, who: mxAnyToken, req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/compliance?period=2026-12&unit=" + m.unit(side)}
		}},
		{route: "GET /api/v1/audit/verify", success: 200, who: mxTree, note: "checks the whole log, every unit's entries, at a cost in CPU: a token of the whole tree only", req: get("/api/v1/audit/verify")},
		{route: "GET /api/v1/audit/bundle", unit: true, success: 200, who: mxReaders, note: "api/bundle.go: a token of the whole tree gets the whole log, a unit's auditor its unit's bundle (other units' entries as hashes only)", req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/api/v1/audit/bundle?period=2026-12&unit=" + m.unit(side)}
		}},
		{route: "POST /api/v1/audit/seal", success: 201, who: mxTree, note: "api/bundle.go: admin or an auditor of the whole tree; a seal writes no record", req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "POST", path: "/api/v1/audit/seal?period=" + m.unsealedMonth()}
		}},
		{route: "POST /api/v1/audit/purge", success: 409, who: mxAdmin, note: "api/purge.go: admin only; nothing in this store is past the retention, so the admin's answer is the 409 saying until when evidence is kept", req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "POST", path: "/api/v1/audit/purge?before=2026-12"}
		}},
		{route: "GET /api/v1/audit/seals", success: 200, who: mxReaders, note: "api/bundle.go: admin, auditor: every seal", req: get("/api/v1/audit/seals")},
		{route: "GET /api/v1/oplog", success: 200, who: mxReaders, note: "api/evidence.go: a scoped token reads the entries of its units only (api_test.go checks which)", req: get("/api/v1/oplog")},
		{route: "GET /api/v1/backup", success: 200, who: mxAdmin, note: "an admin of the whole tree", req: get("/api/v1/backup")},

		{route: "GET /audio/{sha256}", unit: true, anyUnit: true, success: 200, deviceOther: 404, who: mxAudio, note: "any token, whatever its unit; a device only the audio of its station's airings", req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "GET", path: "/audio/" + m.sha[side]}
		}},
		{route: "HEAD /audio/{sha256}", unit: true, anyUnit: true, success: 200, deviceOther: 404, who: mxAudio, note: "any token, whatever its unit; a device only the audio of its station's airings", req: func(t *testing.T, m *matrix, side string) mxReq {
			return mxReq{method: "HEAD", path: "/audio/" + m.sha[side]}
		}},
		{route: "GET /api/{unregistered}", open: true, success: 404, note: "the /api/ catch-all answers 404 before any authentication", req: get("/api/v1/no-such-endpoint")},
	}
}

// matrix is the daemon, the callers and the setup of fresh targets.
type matrix struct {
	f        fixture
	callers  []mxCaller
	communes map[string][]broadcast.Station // stations below 380 and below 381
	devices  map[string]string              // an enabled device at 14755 and at 14809
	sha      map[string]string              // a programme's audio in each unit
	unitsCSV []byte

	seq, minute, month atomic.Int64
	rotate             map[string]*atomic.Int64
}

func newMatrix(t *testing.T) *matrix {
	f := startDaemonWith(t, func(cfg *configs.Config) { cfg.HTTP.AuthFailures = 1 << 30 })
	m := &matrix{f: f, devices: map[string]string{}, sha: map[string]string{}, communes: map[string][]broadcast.Station{},
		rotate: map[string]*atomic.Int64{ownUnit: new(atomic.Int64), otherUnit: new(atomic.Int64)}}
	c := f.c

	var province struct{ Token string }
	c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Kiểm toán tỉnh", "role": "auditor"}, &province, 201)
	var dev, off struct{ ID, Secret string }
	c.json("POST", "/api/v1/stations/14755/devices", f.admin, map[string]string{"id": "14755-mx"}, &dev, 201)
	c.json("POST", "/api/v1/stations/14755/devices", f.admin, map[string]string{"id": "14755-mx-off"}, &off, 201)
	c.json("DELETE", "/api/v1/devices/"+off.ID, f.admin, nil, nil, 200)
	c.json("POST", "/api/v1/stations/14809/devices", f.admin, map[string]string{"id": "14809-mx"}, nil, 201)
	m.devices[ownUnit], m.devices[otherUnit] = dev.ID, "14809-mx"

	m.callers = []mxCaller{
		{name: "no-token"},
		{name: "bad-token", bearer: "lxa_" + strings.Repeat("A", 32)},
		{name: "admin", bearer: f.admin, token: true},
		{name: "operator", bearer: f.lan, token: true, scoped: true},
		{name: "auditor", bearer: f.auditor, token: true, scoped: true},
		{name: "province-auditor", bearer: province.Token, token: true},
		{name: "device", basic: [2]string{dev.ID, dev.Secret}},
		{name: "device-wrong-secret", basic: [2]string{dev.ID, dev.Secret + "x"}},
		{name: "device-disabled", basic: [2]string{off.ID, off.Secret}},
	}

	for side, unit := range map[string]string{ownUnit: "380", otherUnit: "381"} {
		var list struct{ Stations []broadcast.Station }
		c.json("GET", "/api/v1/stations?unit="+unit, f.admin, nil, &list, 200)
		if len(list.Stations) == 0 {
			t.Fatalf("no stations below %s", unit)
		}
		m.communes[side] = list.Stations
		var p struct{ ID, SHA256 string }
		if code := c.upload(m.uploader(side), map[string]string{"unit": unit, "month": "2026-12", "title": "Âm thanh"}, m.audio(side), &p); code != 201 {
			t.Fatalf("upload for %s: %d", unit, code)
		}
		m.sha[side] = p.SHA256
		// Approved, the audio is in the schedule of every station of the
		// district: the device of 14755 may fetch 380's, not 381's.
		c.json("POST", "/api/v1/programmes/"+p.ID+"/approve", f.admin, nil, nil, 200)
	}
	if m.sha[ownUnit] == m.sha[otherUnit] {
		t.Fatal("the two units' audio must differ")
	}

	// Re-importing a few of the units the daemon started with changes
	// nothing: the import is idempotent.
	csvFile, err := os.Open(testConfig(t).UnitsCSV)
	if err != nil {
		t.Fatal(err)
	}
	defer csvFile.Close()
	var head bytes.Buffer
	sc := bufio.NewScanner(csvFile)
	for i := 0; i < 4 && sc.Scan(); i++ {
		head.WriteString(sc.Text() + "\n")
	}
	m.unitsCSV = head.Bytes()
	return m
}

// check makes the case's request and compares the answer with want: the
// status, and for a refusal docs/api.md's error shape and code.
func (m *matrix) check(t *testing.T, r mxRoute, c mxCaller, side string, want int) {
	q := r.req(t, m, side)
	var body io.Reader
	if q.body != nil {
		body = bytes.NewReader(q.body)
	}
	req, err := http.NewRequest(q.method, m.f.c.base+q.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if q.contentType != "" {
		req.Header.Set("Content-Type", q.contentType)
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.basic[0] != "" {
		req.SetBasicAuth(c.basic[0], c.basic[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", q.method, q.path, err)
	}
	if resp.StatusCode != want {
		note := ""
		if r.note != "" {
			note = " (" + r.note + ")"
		}
		t.Fatalf("%s %s as %s: %d %.300s; want %d%s", q.method, q.path, c.name, resp.StatusCode, bytes.TrimSpace(b), want, note)
	}
	codes := map[int]string{401: broadcast.EUnauthorized, 403: broadcast.EForbidden, 404: broadcast.ENotFound, 409: broadcast.EConflict}
	code, refused := codes[want]
	if !refused {
		var e apiError
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			t.Errorf("a success with an error in it: %.300s", b)
		}
		return
	}
	if want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate")
	}
	if q.method == "HEAD" {
		return // no body to check
	}
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
		t.Errorf("the answer %.300s is not docs/api.md's error with code %q: %v", b, code, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error answered as %q", ct)
	}
}

func (m *matrix) client(t *testing.T) client { return client{t: t, base: m.f.c.base} }

func (m *matrix) unit(side string) string {
	if side == otherUnit {
		return "381"
	}
	return "380"
}

func (m *matrix) station(side string) string {
	if side == otherUnit {
		return "14809" // Phường Bắc Sơn, Thị xã Bỉm Sơn
	}
	return "14755" // Phường Hàm Rồng, Thành phố Thanh Hóa
}

// uploader is an operator of the side's unit other than the matrix's own
// operator (Lan), so that Lan's approvals are never self-approval.
func (m *matrix) uploader(side string) string {
	if side == otherUnit {
		return m.f.other
	}
	return m.f.minh
}

// audio differs between the units, so that each unit's blob is its own.
func (m *matrix) audio(side string) []byte {
	if side == otherUnit {
		return wav(2 * time.Second)
	}
	return wav(time.Second)
}

func (m *matrix) unique(prefix string) string {
	return fmt.Sprintf("%s %d", prefix, m.seq.Add(1))
}

func (m *matrix) deviceID(side string) string {
	return fmt.Sprintf("%s-mx%d", m.station(side), m.seq.Add(1))
}

func (m *matrix) jsonReq(method, path string, v any) mxReq {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return mxReq{method: method, path: path, body: b, contentType: "application/json"}
}

func mxMultipart(path string, fields map[string]string, audio []byte) mxReq {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("audio", "audio.wav")
	_, _ = fw.Write(audio)
	_ = mw.Close()
	return mxReq{method: "POST", path: path, body: b.Bytes(), contentType: mw.FormDataContentType()}
}

// token is a fresh operator token of the side's unit, made by the admin.
func (m *matrix) token(t *testing.T, side string) string {
	var tok struct{ ID string }
	m.client(t).json("POST", "/api/v1/tokens", m.f.admin, map[string]string{"name": m.unique("thu hồi"), "role": "operator", "unit": m.unit(side)}, &tok, 201)
	return tok.ID
}

// device adds a fresh device to the side's station.
func (m *matrix) device(t *testing.T, side string) string {
	id := m.deviceID(side)
	m.client(t).json("POST", "/api/v1/stations/"+m.station(side)+"/devices", m.f.admin, map[string]string{"id": id}, nil, 201)
	return id
}

// draft uploads a fresh draft programme for a commune of the side's
// district, taking the communes in turn so that no station's month runs out
// of slots when the drafts are approved.
func (m *matrix) draft(t *testing.T, side string) string {
	communes := m.communes[side]
	st := communes[int(m.rotate[side].Add(1))%len(communes)]
	var p struct{ ID string }
	fields := map[string]string{"unit": st.Unit, "month": "2026-12", "title": m.unique("Bản tin")}
	if code := m.client(t).upload(m.uploader(side), fields, m.audio(side), &p); code != 201 {
		t.Fatalf("setup: upload a draft for %s: %d", st.Unit, code)
	}
	return p.ID
}

// approved is a fresh draft approved by the administrator.
func (m *matrix) approved(t *testing.T, side string) string {
	id := m.draft(t, side)
	m.client(t).json("POST", "/api/v1/programmes/"+id+"/approve", m.f.admin, nil, nil, 200)
	return id
}

// airing is the last airing of a freshly approved programme: far enough
// ahead to be outside the freeze window.
func (m *matrix) airing(t *testing.T, side string) string {
	id := m.approved(t, side)
	var list struct{ Airings []broadcast.Airing }
	m.client(t).json("GET", "/api/v1/airings?programme="+id, m.f.admin, nil, &list, 200)
	if len(list.Airings) == 0 {
		t.Fatalf("setup: programme %s got no airings", id)
	}
	last := slices.MaxFunc(list.Airings, func(a, b broadcast.Airing) int { return a.Start.Compare(b.Start) })
	if last.Start.Sub(m.f.clock.Now()) < 2*time.Hour {
		t.Fatalf("setup: airing %s starts at %s, too soon to move", last.ID, last.Start)
	}
	return last.ID
}

// freeMinute is a start no airing has: planned airings sit on the 06:00
// and 17:00 slots, moved ones each on a minute of their own between 07:00
// and 17:00 from 20 December on, inside broadcasting hours and the month.
func (m *matrix) freeMinute() string {
	k := int(m.minute.Add(1))
	return time.Date(2026, 12, 20+k/600, 7, k%600, 0, 0, time.FixedZone("ICT", 7*3600)).Format(time.RFC3339)
}

// unsealedMonth is a month over and not sealed yet: November 2026, then
// the months before it.
func (m *matrix) unsealedMonth() string {
	return time.Date(2026, time.Month(12-m.month.Add(1)), 1, 0, 0, 0, 0, time.UTC).Format("2006-01")
}
