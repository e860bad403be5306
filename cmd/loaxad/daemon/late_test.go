package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
)

// TestLateEvidenceAfterTheSeal: December is sealed on 9 January (station
// 14755: nothing aired); then the station's device, back online, reports
// that it played an airing of 2 December. The event is logged and the
// airing counts now, but December's report keeps the sealed figure and
// shows the late evidence in its addendum; December's bundle still
// recomputes the sealed figures offline.
func TestLateEvidenceAfterTheSeal(t *testing.T) {
	f := startDaemon(t)
	dev, priv, prog, a := signingDeviceAndAiring(t, f)
	var province struct{ Token string }
	f.c.json("POST", "/api/v1/tokens", f.admin, map[string]string{"name": "Kiểm toán tỉnh", "role": "auditor"}, &province, 201)

	// 9 January: December and its grace are over.
	if err := f.d.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.DataDir = f.dir
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	clock := newShiftedClock(time.Date(2027, 1, 9, 8, 0, 0, 0, time.FixedZone("ICT", 7*3600)))
	d, err := Start(ctx, Options{Config: cfg, Logger: testLogger(t), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	f.d, f.clock, f.c.base = d, clock, "http://"+d.HTTPAddr()

	var sealed struct {
		Op   struct{ Seq uint64 }
		Seal audit.SealRecord
	}
	f.c.json("POST", "/api/v1/audit/seal?period=2026-12", province.Token, nil, &sealed, 201)
	type report struct {
		Rows []struct {
			Station, Status string
			Aired           int
		}
		Addendum []struct {
			Station, Status, Text string
			Aired                 int
			Sealed                struct{ Aired int }
			Entries               []uint64
		}
	}
	var before report
	f.c.json("GET", "/api/v1/compliance?period=2026-12&unit=14755", f.auditor, nil, &before, 200)
	if len(before.Rows) != 1 || before.Rows[0].Aired != 0 || before.Rows[0].Status != audit.NonCompliant || len(before.Addendum) != 0 {
		t.Fatalf("December as sealed: %+v", before)
	}

	// The device reports its play of the airing's start, a month late.
	publishPlay(t, f, dev.ID, dev.Secret, priv, a, prog.SHA256)
	entries := waitForAsRun(t, d.Store(), 2)
	// The entry and its airing change in one transaction.
	var now broadcast.Airing
	f.c.json("GET", "/api/v1/airings/"+a.ID, f.lan, nil, &now, 200)
	if now.Status != broadcast.StatusAired {
		t.Fatalf("the late play did not count: airing %s is %s", a.ID, now.Status)
	}

	var after report
	f.c.json("GET", "/api/v1/compliance?period=2026-12&unit=14755", f.auditor, nil, &after, 200)
	if len(after.Rows) != 1 || after.Rows[0].Aired != 0 || after.Rows[0].Status != audit.NonCompliant {
		t.Fatalf("the late evidence changed the sealed figures: %+v", after.Rows)
	}
	if len(after.Addendum) != 1 || after.Addendum[0].Station != "14755" || after.Addendum[0].Aired != 1 || after.Addendum[0].Sealed.Aired != 0 ||
		len(after.Addendum[0].Entries) != 2 || after.Addendum[0].Entries[1] != entries[1].Seq || after.Addendum[0].Text == "" {
		t.Fatalf("addendum: %+v", after.Addendum)
	}
	// The documents show it too.
	resp := bundleGet(t, f, "/api/v1/compliance?period=2026-12&unit=14755&format=html&lang=en", f.auditor)
	html, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(html, []byte("ADDENDUM: EVIDENCE RECEIVED AFTER THE SEAL")) {
		t.Fatalf("the HTML report has no addendum:\n%s", html)
	}

	// December's bundle ends at its grace: the late entries are not in it,
	// and its figures are the sealed ones.
	path := filepath.Join(t.TempDir(), "december.tar.gz")
	bundleSave(t, bundleGet(t, f, "/api/v1/audit/bundle?period=2026-12", f.auditor), path)
	bf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.CheckBundleFigures(bf, "")
	bf.Close()
	if err != nil || !c.Result.OK || len(c.Unsealed) != 0 {
		t.Fatalf("December's bundle: %v %+v", err, c.Result)
	}
	for _, fc := range c.Figures {
		if !fc.Match {
			t.Fatalf("station %s: recomputed %s, sealed %v", fc.Station, fc.Figure, fc.Sealed)
		}
	}
}

// publishPlay sends started and finished for airing a as a device that
// played it on time and was offline since: signed, with its credentials.
func publishPlay(t *testing.T, f fixture, device, secret string, key ed25519.PrivateKey, a broadcast.Airing, sha string) {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + f.d.BrokerAddr()).
		SetClientID("dev-" + device).SetUsername(device).SetPassword(secret).
		SetCleanSession(true).SetKeepAlive(30 * time.Second).SetConnectTimeout(5 * time.Second)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as %s: %v", device, tok.Error())
	}
	defer c.Disconnect(100)
	for i, kind := range []broadcast.EventType{broadcast.EventStarted, broadcast.EventFinished} {
		ev := broadcast.Event{V: 1, ID: broadcast.NewID(a.Start), Device: device, Seq: uint64(i + 1), Airing: a.ID, Rev: 1, Event: kind, At: a.Start, ClockSynced: true}
		if kind == broadcast.EventFinished {
			ev.At = a.Start.Add(2 * time.Second)
			ev.StartedAt, ev.PlayedMS, ev.SHA256 = a.Start, 2000, sha
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
