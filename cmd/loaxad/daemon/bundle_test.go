package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/storage"
)

// TestEvidenceBundle is the evidence path end to end: a device's signed
// events reach the as-run log through the embedded broker, an auditor
// downloads the month's bundle and verifies it offline; the month before is
// sealed; and a byte changed in the database file behind the daemon's back
// is named by the verification the API runs.
func TestEvidenceBundle(t *testing.T) {
	f := startDaemon(t)
	var province struct{ Token string }
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Kiểm toán tỉnh", "role": "auditor"}, &province, 201)

	// A device with a key, and a real airing for it to report on.
	dev, priv, prog, a := signingDeviceAndAiring(t, f)
	airing := a.ID

	publishSignedEvents(t, f, dev.ID, dev.Secret, priv, airing, prog.SHA256)
	entries := waitForAsRun(t, f.d.Store(), 4)

	// The bundle over HTTP, verified offline.
	path := filepath.Join(t.TempDir(), "december.tar.gz")
	resp := bundleGet(t, f, "/api/v1/audit/bundle?period=2026-12", province.Token)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/gzip" || !strings.Contains(resp.Header.Get("Content-Disposition"), "loaxa-evidence-2026-12.tar.gz") {
		t.Fatalf("bundle: %d %v", resp.StatusCode, resp.Header)
	}
	bundleSave(t, resp, path)
	res, err := audit.VerifyBundleFile(path)
	if err != nil || !res.OK || res.Entries != uint64(len(entries)) || res.Head != entries[len(entries)-1].Hash || res.OpEntries == 0 {
		t.Fatalf("verify the downloaded bundle: %v %+v", err, res)
	}
	// What a person reads in it.
	bf, _ := os.Open(path)
	_, m, err := audit.CheckBundle(bf, "")
	bf.Close()
	if err != nil || m.Period != "2026-12" || m.AsRun.FirstSeq != 1 || m.AsRun.Entries != 4 || m.Devices != 1 || m.Complete {
		t.Fatalf("manifest: %v %+v", err, m)
	}

	// Who gets bundles: auditors, of their unit or the whole tree.
	for _, tc := range []struct {
		token, query string
		want         int
	}{
		{f.admin, "period=2026-H2&unit=380", 200},
		{f.auditor, "period=2026-12", 200},            // an auditor of district 380: its bundle
		{f.auditor, "period=2026-12&unit=14755", 200}, // of a commune of it
		{f.auditor, "period=2026-12&unit=381", 403},   // of another district
		{f.lan, "period=2026-12", 403},                // an operator
		{"", "period=2026-12", 401},
		{province.Token, "period=2026-13", 422},
		{province.Token, "period=2026-12&unit=99999999", 404},
	} {
		resp := bundleGet(t, f, "/api/v1/audit/bundle?"+tc.query, tc.token)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("bundle %s: %d, want %d", tc.query, resp.StatusCode, tc.want)
		}
	}

	// The API's own verification agrees.
	var verify audit.Result
	f.c.json("GET", "/api/v1/audit/verify", province.Token, nil, &verify, 200)
	if !verify.OK || verify.Entries != 4 {
		t.Fatalf("verify: %+v", verify)
	}

	// Sealing: December is running (the clock says 10 December), November
	// is over; a month is sealed once.
	var e apiError
	f.c.json("POST", "/api/v1/audit/seal?period=2026-12", province.Token, nil, &e, 409)
	if !strings.Contains(e.Error.Message, "can be sealed from 2027-01-08") {
		t.Errorf("sealing a running month: %+v", e)
	}
	f.c.json("POST", "/api/v1/audit/seal?period=2026-11", f.auditor, nil, nil, 403)
	f.c.json("POST", "/api/v1/audit/seal?period=2026-11", f.lan, nil, nil, 403)
	f.c.json("POST", "/api/v1/audit/seal?period=2026-H2", province.Token, nil, nil, 422)
	var sealed struct {
		Op   struct{ Seq uint64 }
		Seal audit.SealRecord
	}
	f.c.json("POST", "/api/v1/audit/seal?period=2026-11", province.Token, nil, &sealed, 201)
	if sealed.Op.Seq == 0 || sealed.Seal.Period != "2026-11" || sealed.Seal.AsRun.Entries != 0 || sealed.Seal.AsRunHead.Seq != 4 {
		t.Fatalf("seal: %+v", sealed)
	}
	f.c.json("POST", "/api/v1/audit/seal?period=2026-11", f.admin, nil, &e, 409)
	var seals struct{ Seals []json.RawMessage }
	f.c.json("GET", "/api/v1/audit/seals", f.auditor, nil, &seals, 200)
	if len(seals.Seals) != 1 {
		t.Fatalf("seals: %s", seals.Seals)
	}
	if sealed.Seal.Figures == nil || sealed.Seal.Figures.Stations == 0 {
		t.Fatalf("the seal records no figures: %+v", sealed.Seal)
	}
	resp = bundleGet(t, f, "/api/v1/audit/bundle?period=2026-11", f.admin)
	bundleSave(t, resp, path)
	if res, err := audit.VerifyBundleFile(path); err != nil || !res.OK {
		t.Fatalf("the sealed month's bundle: %v %+v", err, res)
	}
	// District 380's auditor gets its own sealed November: its stations'
	// figures, recomputed offline, are the sealed ones.
	resp = bundleGet(t, f, "/api/v1/audit/bundle?period=2026-11", f.auditor)
	bundleSave(t, resp, path)
	bf, _ = os.Open(path)
	nov, err := audit.CheckBundleFigures(bf, "")
	bf.Close()
	if err != nil || !nov.Result.OK || len(nov.Sealed) != 1 || len(nov.Figures) == 0 || len(nov.Figures) >= sealed.Seal.Figures.Stations {
		t.Fatalf("district 380's sealed November: %v %+v sealed %v, %d figures", err, nov.Result, nov.Sealed, len(nov.Figures))
	}
	for _, fc := range nov.Figures {
		if !fc.Match || fc.Required != 4 || fc.Aired != 0 || fc.Status != audit.NonCompliant {
			t.Fatalf("station %s's November: %+v, sealed %+v", fc.Station, fc.Figure, fc.Sealed)
		}
	}

	// Tampering with a copy of the database: one byte of one entry's
	// payload, where a person with the file and a hex editor would change
	// it.
	victim := entries[1]
	if err := f.d.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(filepath.Join(f.dir, storage.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	// bbolt copies pages on write, so stale copies of the payload may
	// linger in free pages: change every copy.
	// One ULID character for another.
	at := bytes.Index(victim.Payload, []byte(`"id":"`)) + len(`"id":"`) + 20
	if flipAll(db, victim.Payload, at, 0x01) == 0 {
		t.Fatal("the entry's payload is not in the database file")
	}
	copyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(copyDir, storage.DBFile), db, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(copyDir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err = audit.VerifyLogs(context.Background(), st, 0)
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, p := range res.Problems {
		if p.Log == "asrun" && p.Entry == victim.Seq {
			named = append(named, p.Problem)
		}
	}
	if res.OK || len(named) == 0 || !strings.Contains(strings.Join(named, "; "), "altered") {
		t.Fatalf("a changed byte in entry %d: %+v", victim.Seq, res.Problems)
	}
	t.Logf("entry %d named: %s", victim.Seq, strings.Join(named, "; "))
}

// signingDeviceAndAiring registers device 14755-07 with a key of its own,
// has Lan upload and Minh approve a programme of Hàm Rồng for December,
// and returns the device, its key, the programme and its first airing.
func signingDeviceAndAiring(t *testing.T, f fixture) (dev struct{ ID, Secret string }, key ed25519.PrivateKey, prog struct{ ID, SHA256 string }, a broadcast.Airing) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	f.c.json("POST", "/api/v1/stations/14755/devices", f.lan, map[string]string{"id": "14755-07", "public_key": base64.StdEncoding.EncodeToString(pub)}, &dev, 201)
	if code := f.c.upload(f.lan, map[string]string{"unit": "14755", "month": "2026-12", "title": "Chuyển đổi số"}, wav(2*time.Second), &prog); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	f.c.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", f.minh, nil, nil, 200)
	var list struct{ Airings []broadcast.Airing }
	f.c.json("GET", "/api/v1/airings?station=14755", f.lan, nil, &list, 200)
	if len(list.Airings) == 0 {
		t.Fatal("no airings planned")
	}
	return dev, key, prog, list.Airings[0]
}

// publishSignedEvents sends received, ready, started and finished for an airing as
// the device would: signed, on its events topic, with its credentials.
func publishSignedEvents(t *testing.T, f fixture, device, secret string, key ed25519.PrivateKey, airing, sha string) {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + f.d.BrokerAddr()).
		SetClientID("dev-" + device).SetUsername(device).SetPassword(secret).
		SetCleanSession(true).SetKeepAlive(30 * time.Second).SetConnectTimeout(5 * time.Second)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as %s: %v", device, tok.Error())
	}
	defer c.Disconnect(100)
	now := f.clock.Now()
	for i, kind := range []broadcast.EventType{broadcast.EventReceived, broadcast.EventReady, broadcast.EventStarted, broadcast.EventFinished} {
		ev := broadcast.Event{V: 1, ID: broadcast.NewID(now), Device: device, Seq: uint64(i + 1), Airing: airing, Rev: 1, Event: kind, At: now, ClockSynced: true}
		if kind == broadcast.EventFinished {
			ev.StartedAt, ev.PlayedMS, ev.SHA256 = now, 2000, sha
		}
		payload, err := broadcast.SignEvent(ev, key)
		if err != nil {
			t.Fatal(err)
		}
		if tok := c.Publish("loaxa/v1/dev/"+device+"/events", 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", kind, tok.Error())
		}
	}
}

// waitForAsRun waits until the as-run log holds n entries and returns them.
func waitForAsRun(t *testing.T, st *storage.Store, n int) []broadcast.AsRunEntry {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got []broadcast.AsRunEntry
		if err := st.AsRun(0, func(e broadcast.AsRunEntry) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d as-run entries after 20 s, want %d", len(got), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func bundleGet(t *testing.T, f fixture, path, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", f.c.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func bundleSave(t *testing.T, resp *http.Response, path string) {
	t.Helper()
	defer resp.Body.Close()
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
