package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/loaxa/loaxa/audit"
	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/devices/agent/agenttest"
	"github.com/loaxa/loaxa/storage"
)

// evidenceRig is the real daemon on the embedded broker, on a fake clock
// the test moves, with one signing device at Phường Hàm Rồng (14755) that
// the test drives by hand: a hostile device says what it likes.
type evidenceRig struct {
	t        *testing.T
	clock    *agenttest.FakeClock
	d        *Daemon
	c        client
	dir      string
	admin    string
	lan      string
	device   string
	key      ed25519.PrivateKey
	mq       mqtt.Client
	seq      uint64
	audioSHA string
	airings  []broadcast.Airing // 14755's December, by start
}

func newEvidenceRig(t *testing.T) *evidenceRig {
	cfg := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &evidenceRig{t: t, clock: agenttest.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, ict)), dir: cfg.DataDir}
	d, err := Start(ctx, Options{Config: cfg, Logger: testLogger(t), Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	r.d, r.c = d, client{t: t, base: "http://" + d.HTTPAddr()}
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	r.admin = strings.TrimSpace(string(admin))
	var lan, minh struct{ Token string }
	r.c.json("POST", "/api/v1/tokens", strings.TrimSpace(string(admin)), map[string]string{"name": "Lan", "role": "operator", "unit": "380"}, &lan, 201)
	r.c.json("POST", "/api/v1/tokens", strings.TrimSpace(string(admin)), map[string]string{"name": "Minh", "role": "operator", "unit": "380"}, &minh, 201)
	r.lan = lan.Token

	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	r.key = priv
	var dev struct{ ID, Secret string }
	r.c.json("POST", "/api/v1/stations/14755/devices", r.lan, map[string]string{"id": "14755-01", "public_key": base64.StdEncoding.EncodeToString(pub)}, &dev, 201)
	r.device = dev.ID

	var prog struct{ ID, SHA256 string }
	if code := r.c.upload(r.lan, map[string]string{"unit": "380", "month": "2026-12", "title": "Chuyển đổi số tháng 12/2026"}, wav(2*time.Second), &prog); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	r.c.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", minh.Token, nil, nil, 200)
	r.audioSHA = prog.SHA256
	r.airings = r.stationAirings()
	if len(r.airings) < 4 {
		t.Fatalf("%d airings planned at 14755, want 4", len(r.airings))
	}

	awaitReady(t, r.c)
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + d.BrokerAddr()).
		SetClientID("dev-" + dev.ID).SetUsername(dev.ID).SetPassword(dev.Secret).
		SetCleanSession(true).SetKeepAlive(30 * time.Second).SetConnectTimeout(5 * time.Second)
	r.mq = mqtt.NewClient(opts)
	if tok := r.mq.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as %s: %v", dev.ID, tok.Error())
	}
	t.Cleanup(func() { r.mq.Disconnect(100) })
	return r
}

func (r *evidenceRig) stationAirings() []broadcast.Airing {
	var list struct{ Airings []broadcast.Airing }
	r.c.json("GET", "/api/v1/airings?station=14755", r.lan, nil, &list, 200)
	out := slices.DeleteFunc(list.Airings, func(a broadcast.Airing) bool { return a.Kind == broadcast.KindMakeup })
	slices.SortFunc(out, func(a, b broadcast.Airing) int { return a.Start.Compare(b.Start) })
	return out
}

func (r *evidenceRig) airing(id string) broadcast.Airing {
	var a broadcast.Airing
	r.c.json("GET", "/api/v1/airings/"+id, r.lan, nil, &a, 200)
	return a
}

// finished publishes the device's signed report of a whole play of a
// starting at started, and returns the as-run entry that logged it.
func (r *evidenceRig) finished(a broadcast.Airing, started time.Time) broadcast.AsRunEntry {
	r.t.Helper()
	r.seq++
	ev := broadcast.Event{V: 1, ID: broadcast.NewID(r.clock.Now()), Device: r.device, Seq: r.seq, Airing: a.ID, Rev: 1,
		Event: broadcast.EventFinished, At: started.Add(a.Audio.Duration()), StartedAt: started, PlayedMS: a.Audio.DurationMS,
		SHA256: r.audioSHA, ClockSynced: true}
	payload, err := broadcast.SignEvent(ev, r.key)
	if err != nil {
		r.t.Fatal(err)
	}
	if tok := r.mq.Publish("loaxa/v1/dev/"+r.device+"/events", 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatalf("publish: %v", tok.Error())
	}
	for _, e := range waitForAsRun(r.t, r.d.Store(), int(r.seq)) {
		if e.Device == r.device && e.DeviceSeq == r.seq {
			return e
		}
	}
	r.t.Fatalf("event seq %d is not in the as-run log", r.seq)
	return broadcast.AsRunEntry{}
}

// stepTo moves the fake clock to at.
func (r *evidenceRig) stepTo(at time.Time) {
	if d := at.Sub(r.clock.Now()); d > 0 {
		r.clock.Step(d)
	}
}

// TestEvidenceCannotBeBent is what a hostile device and the operators'
// edits can no longer do to the proof: a finished event for an airing days
// away, a play of a cancelled airing, a play at a moved airing's old time,
// two plays of one airing; and then what a person with the database file
// can no longer do unseen: change a programme, an airing, a device's key or
// a unit.
func TestEvidenceCannotBeBent(t *testing.T) {
	r := newEvidenceRig(t)
	future, cancelled, moved, twice := r.airings[0], r.airings[1], r.airings[2], r.airings[3]

	// 1. On 1 December, a finished event claiming the first airing's
	// planned start, days ahead: logged, marked, counted for nothing.
	if !future.Start.After(r.clock.Now().Add(time.Hour)) {
		t.Fatalf("the first airing starts %v, not in the future of %v", future.Start, r.clock.Now())
	}
	e := r.finished(future, future.Start)
	if e.Unmatched != broadcast.UnmatchedFuture {
		t.Errorf("a play %v ahead was logged as %q, want %q", future.Start.Sub(e.ReceivedAt), e.Unmatched, broadcast.UnmatchedFuture)
	}
	if a := r.airing(future.ID); a.Status == broadcast.StatusAired || a.Devices[r.device] != nil {
		t.Errorf("the future claim changed the airing: %s %+v", a.Status, a.Devices[r.device])
	}
	if n := readMetric(t, r.c.base, `loaxa_devices_events_unmatched_total{reason="future"}`); n != 1 {
		t.Errorf("future events counted: %v, want 1", n)
	}

	// 2. An operator cancels the second airing; the device, offline, never
	// heard and plays it at its time: kept, shown, not counted.
	r.c.json("POST", "/api/v1/airings/"+cancelled.ID+"/cancel", r.lan, nil, nil, 200)
	// 3. And moves the third a day later; the device plays it at the old
	// time.
	newStart := moved.Start.Add(24 * time.Hour)
	for slices.ContainsFunc(r.airings, func(a broadcast.Airing) bool {
		return a.ID != moved.ID && a.Overlaps(&broadcast.Airing{Start: newStart, Audio: moved.Audio})
	}) {
		newStart = newStart.Add(time.Hour)
	}
	r.c.json("PATCH", "/api/v1/airings/"+moved.ID, r.lan, map[string]time.Time{"start": newStart}, nil, 200)

	r.stepTo(cancelled.End().Add(time.Minute))
	if e := r.finished(cancelled, cancelled.Start); e.Unmatched != "" {
		t.Fatalf("a plausible play of a cancelled airing was logged as %q", e.Unmatched)
	}
	a := r.airing(cancelled.ID)
	if d := a.Devices[r.device]; a.Status != broadcast.StatusCancelled || d == nil || d.Status != broadcast.StatusCancelled || d.Reason != broadcast.ReasonPlayedAfterCancel {
		t.Errorf("played after its cancellation: airing %s, device %+v; want cancelled, %s", a.Status, d, broadcast.ReasonPlayedAfterCancel)
	}

	r.stepTo(moved.End().Add(time.Minute))
	r.finished(moved, moved.Start)
	a = r.airing(moved.ID)
	if d := a.Devices[r.device]; a.Status == broadcast.StatusAired || d == nil || d.Reason != broadcast.ReasonLateStart {
		t.Errorf("played at its old time: airing %s, device %+v; want not aired, %s", a.Status, d, broadcast.ReasonLateStart)
	}

	// 4. Two plays of one airing: the first counts, the second is flagged.
	r.stepTo(twice.End().Add(time.Minute))
	r.finished(twice, twice.Start)
	r.finished(twice, twice.Start.Add(time.Minute))
	a = r.airing(twice.ID)
	if d := a.Devices[r.device]; a.Status != broadcast.StatusAired || d == nil || !d.DoublePlay || !d.StartedAt.Equal(twice.Start) {
		t.Errorf("two plays: airing %s, device %+v; want aired, flagged, the first start kept", a.Status, d)
	}
	// The first airing's time has come and gone: the future claim still
	// counts for nothing.
	if a := r.airing(future.ID); a.Status == broadcast.StatusAired {
		t.Errorf("the future claim aired the airing once its time passed")
	}

	// The daemon's own verification of all this agrees with it.
	var verify audit.Result
	r.c.json("GET", "/api/v1/audit/verify", r.admin, nil, &verify, 200)
	if !verify.OK || verify.Records == 0 || verify.Airings == 0 {
		t.Fatalf("verify: %+v", verify)
	}

	// A person with the file. The device's key as stored (base64 in its
	// JSON record), the unit's name, a programme's title, an airing's
	// audio hash (a 64-byte string in the binary record, after its length).
	pub := r.key.Public().(ed25519.PublicKey)
	if err := r.d.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(filepath.Join(r.dir, storage.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if p := verifyCopy(t, db, nil); len(p) > 0 {
		t.Fatalf("the untouched copy: %+v", p)
	}
	// A letter of the key's base64 changes case: still base64, another key.
	key64 := []byte(base64.StdEncoding.EncodeToString(pub))
	letter := bytes.IndexFunc(key64, func(c rune) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' })
	for _, tc := range []struct {
		record string
		find   []byte
		at     int  // the byte of find to change
		mask   byte // how it changes (xor)
	}{
		{"device/" + r.device, key64, letter, 0x20},
		{"unit/14755", []byte(`"code":"14755","name":"`), len(`"code":"14755","name":"`), 0x01},
		{"station/14755", []byte(`"id":"14755","unit":"14755","name":"`), len(`"id":"14755","unit":"14755","name":"`), 0x01},
		{"programme/", []byte(`"title":"Chuyển đổi số tháng 12/2026"`), len(`"title":"`), 0x01},
		{"airing/", append([]byte{64}, r.audioSHA...), 10, 0x01},
	} {
		t.Run(tc.record, func(t *testing.T) {
			problems := verifyCopy(t, db, func(b []byte) int { return flipAll(b, tc.find, tc.at, tc.mask) })
			named := slices.ContainsFunc(problems, func(p audit.Problem) bool {
				return p.Log == "records" && strings.HasPrefix(p.Record, tc.record) && strings.Contains(p.Problem, "changed outside loaxa")
			})
			if !named {
				t.Errorf("a byte changed in %s is not named: %+v", tc.record, problems)
			}
		})
	}
}

// flipAll changes byte at of every copy of find in b, xor mask (bbolt
// leaves stale copies of pages in free space: a person editing the file
// would change every copy), and returns how many it changed.
func flipAll(b, find []byte, at int, mask byte) int {
	n := 0
	for i := 0; ; {
		j := bytes.Index(b[i:], find)
		if j < 0 {
			return n
		}
		b[i+j+at] ^= mask
		n++
		i += j + 1
	}
}

// verifyCopy writes a copy of db, changed by tamper (nil: untouched), and
// returns what the records' verification finds in it.
func verifyCopy(t *testing.T, db []byte, tamper func([]byte) int) []audit.Problem {
	t.Helper()
	db = bytes.Clone(db)
	if tamper != nil && tamper(db) == 0 {
		t.Fatal("nothing to change: the bytes are not in the file")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, storage.DBFile), db, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logs, err := audit.VerifyLogs(context.Background(), st, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := audit.VerifyRecords(context.Background(), st, broadcast.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	return append(logs.Problems, rec.Problems...)
}
