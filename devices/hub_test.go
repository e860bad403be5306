package devices

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

func TestHubEmbedded(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	b, user, pass := startBroker(t, fx.store)
	testHubEndToEnd(t, fx, "tcp://"+b.Addr(), user, pass)
}

// asRun returns the as-run entries of one device.
func asRun(t *testing.T, fx *fixture, device string) []broadcast.AsRunEntry {
	t.Helper()
	var out []broadcast.AsRunEntry
	if err := fx.store.AsRun(0, func(e broadcast.AsRunEntry) error {
		if e.Device == device {
			out = append(out, e)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// testHubEndToEnd runs the hub against a broker at url with the real store,
// devices simulated by paho clients. Shared by the embedded broker and
// Mosquitto.
func testHubEndToEnd(t *testing.T, fx *fixture, url, user, pass string) {
	parent := t // connections that outlive a subtest
	env := startHub(t, fx, url, user, pass, func(o *HubOptions) { o.SeqGapTimeout = 300 * time.Millisecond })
	h := env.hub
	ctx := context.Background()
	a := mustConnectDevice(t, url, fx.a)
	rejected := func(reason string) float64 { return toFloat64(h.m.eventsRejected.WithLabelValues(reason)) }

	// Each step leaves the next seq of device a here; a rejected event
	// uses no seq.
	next := uint64(1)

	t.Run("logged once, receipted each time", func(t *testing.T) {
		payload := sign(t, fx.a, finished(fx.a, next, airingA))
		for range 3 {
			a.sendEvent(t, payload)
		}
		var receipts []broadcast.Command
		for range 3 {
			receipts = append(receipts, a.nextCmd(t, broadcast.CmdReceipt))
		}
		entries := asRun(t, fx, fx.a.ID)
		if len(entries) != 1 {
			t.Fatalf("%d as-run entries after 3 deliveries, want 1", len(entries))
		}
		e := entries[0]
		if string(e.Payload) != string(payload) || e.DeviceSeq != next || e.Station != fx.a.Station {
			t.Errorf("entry = %+v, want the exact payload of seq %d at station %s", e, next, fx.a.Station)
		}
		for _, r := range receipts {
			if r.UptoSeq != next || r.LogHash != e.Hash.String() {
				t.Errorf("receipt %+v, want upto_seq %d log_hash %s", r, next, e.Hash)
			}
		}
		if got := toFloat64(h.m.eventsLogged); got != 1 {
			t.Errorf("events logged = %v, want 1", got)
		}
		if got := toFloat64(h.m.eventsDuplicate); got != 2 {
			t.Errorf("duplicates = %v, want 2", got)
		}
		waitFor(t, 5*time.Second, "receipts counted", func() bool { return toFloat64(h.m.receiptsSent) == 3 })
		next++
	})

	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	t.Run("rejections", func(t *testing.T) {
		// Built per case, with the seq the device is at: a rejected event
		// leaves its seq free for the next one.
		at := func(seq uint64, change func(*broadcast.Event)) broadcast.Event {
			ev := finished(fx.a, seq, airingA)
			change(&ev)
			return ev
		}
		forged := fx.a
		forged.Key = forger
		cases := []struct {
			name, reason string
			payload      func(seq uint64) []byte
		}{
			{"malformed JSON", broadcast.RejectMalformed, func(uint64) []byte { return []byte(`{"body":{"v":1,`) }},
			{"not an envelope", broadcast.RejectMalformed, func(uint64) []byte { return []byte(`[1,2,3]`) }},
			{"wrong v", broadcast.RejectVersion, func(seq uint64) []byte {
				return sign(t, fx.a, at(seq, func(e *broadcast.Event) { e.V = 2 }))
			}},
			{"oversized", broadcast.RejectTooLarge, func(uint64) []byte {
				return []byte(`{"body":{},"sig":"` + strings.Repeat("A", broadcast.MaxEventPayload) + `"}`)
			}},
			{"finished without sha256", broadcast.RejectSchema, func(seq uint64) []byte {
				return sign(t, fx.a, at(seq, func(e *broadcast.Event) { e.SHA256 = "" }))
			}},
			{"forged signature", broadcast.RejectSignature, func(seq uint64) []byte { return sign(t, forged, finished(fx.a, seq, airingA)) }},
			{"unsigned from a device with a key", broadcast.RejectSignature, func(seq uint64) []byte {
				return mustPayload(t, testDevice{Device: fx.a.Device}, finished(fx.a, seq, airingA))
			}},
			{"another device's event", broadcast.RejectDevice, func(seq uint64) []byte { return sign(t, fx.b, finished(fx.b, seq, airingB)) }},
			{"far-future seq", broadcast.RejectSeq, func(seq uint64) []byte {
				return sign(t, fx.a, finished(fx.a, seq+defaultMaxSeqAhead+1, airingA))
			}},
			{"seq reused by another event", broadcast.RejectSeq, func(seq uint64) []byte {
				return sign(t, fx.a, finished(fx.a, seq-1, airingA)) // a new event id
			}},
		}
		for _, tc := range cases {
			before := rejected(tc.reason)
			entriesBefore := len(asRun(t, fx, fx.a.ID))
			a.sendEvent(t, tc.payload(next))
			waitFor(t, 5*time.Second, tc.name+" rejected as "+tc.reason, func() bool { return rejected(tc.reason) == before+1 })
			if n := len(asRun(t, fx, fx.a.ID)); n != entriesBefore {
				t.Errorf("%s: the as-run log grew from %d to %d entries", tc.name, entriesBefore, n)
			}
			if !strings.Contains(env.logs.String(), "reason="+tc.reason) {
				t.Errorf("%s: no log line with reason=%s", tc.name, tc.reason)
			}
			// The hub goes on: the next valid event is logged and receipted.
			a.sendEvent(t, sign(t, fx.a, finished(fx.a, next, airingA)))
			if r := a.nextCmd(t, broadcast.CmdReceipt); r.UptoSeq != next {
				t.Fatalf("after %s: receipt upto_seq %d, want %d", tc.name, r.UptoSeq, next)
			}
			next++
		}
		a.noCmd(t, 50*time.Millisecond) // no receipt for any rejected payload
		if !strings.Contains(env.logs.String(), "device="+fx.a.ID) {
			t.Error("rejections are not logged with the device")
		}
	})

	t.Run("events for no airing of the station", func(t *testing.T) {
		// Authentic, so logged and receipted; refused, they would hold back
		// every later receipt of the device.
		for _, c := range []struct{ airing, why string }{
			{"01JNOSUCHAIRING00000000000", broadcast.UnmatchedUnknownAiring},
			{airingB, broadcast.UnmatchedOtherStation},
		} {
			ev := finished(fx.a, next, airingA)
			ev.Airing = c.airing
			a.sendEvent(t, sign(t, fx.a, ev))
			if r := a.nextCmd(t, broadcast.CmdReceipt); r.UptoSeq != next {
				t.Fatalf("%s: receipt upto_seq %d, want %d", c.why, r.UptoSeq, next)
			}
			entries := asRun(t, fx, fx.a.ID)
			if e := entries[len(entries)-1]; e.DeviceSeq != next || e.Airing != c.airing || e.Unmatched != c.why {
				t.Errorf("%s: last entry %+v", c.why, e)
			}
			if got := toFloat64(h.m.eventsUnmatched.WithLabelValues(c.why)); got != 1 {
				t.Errorf("unmatched %s = %v, want 1", c.why, got)
			}
			if !strings.Contains(env.logs.String(), "why="+c.why) {
				t.Errorf("no log line with why=%s", c.why)
			}
			next++
		}
		if a2, err := fx.store.Airing(airingB); err != nil || len(a2.Devices) != 0 {
			t.Errorf("station b's airing took device a's event: %+v, %v", a2, err)
		}
		a.sendEvent(t, sign(t, fx.a, finished(fx.a, next, airingA)))
		if r := a.nextCmd(t, broadcast.CmdReceipt); r.UptoSeq != next {
			t.Fatalf("after the unmatched: receipt upto_seq %d, want %d", r.UptoSeq, next)
		}
		next++
	})

	t.Run("unsigned device, then disabled while connected", func(t *testing.T) {
		u := mustConnectDevice(t, url, fx.u)
		u.sendEvent(t, mustPayload(t, fx.u, finished(fx.u, 1, airingA)))
		if r := u.nextCmd(t, broadcast.CmdReceipt); r.UptoSeq != 1 {
			t.Fatalf("receipt upto_seq %d, want 1", r.UptoSeq)
		}
		signed := fx.u
		signed.Key = forger
		before := rejected(broadcast.RejectSignature)
		u.sendEvent(t, mustPayload(t, signed, finished(fx.u, 2, airingA)))
		waitFor(t, 5*time.Second, "signed event of a keyless device rejected", func() bool { return rejected(broadcast.RejectSignature) == before+1 })

		// The broker checks credentials only on connect; the hub checks
		// every event.
		if err := fx.store.DisableDevice(ctx, fx.u.ID, t0, nil); err != nil {
			t.Fatal(err)
		}
		u.sendEvent(t, mustPayload(t, fx.u, finished(fx.u, 2, airingA)))
		waitFor(t, 5*time.Second, "event of a disabled device rejected", func() bool { return rejected(broadcast.RejectDisabled) == 1 })
		if n := len(asRun(t, fx, fx.u.ID)); n != 1 {
			t.Errorf("%d entries of the disabled device, want 1", n)
		}
	})

	t.Run("status, last will and online", func(t *testing.T) {
		synced := true
		a.sendStatus(t, broadcast.DeviceStatus{V: 1, Device: fx.a.ID, State: "online", At: t0, Agent: "loaxa-station/0.3.0",
			Rev: 7, Outbox: 2, CacheBytes: 1 << 20, ClockOffsetMS: -120, ClockSynced: &synced, Volume: 80, Playing: airingA})
		waitFor(t, 5*time.Second, "device a online", func() bool { s, _ := h.Status(fx.a.ID); return s.Online })
		s, _ := h.Status(fx.a.ID)
		if s.Rev != 7 || s.Outbox != 2 || s.ClockOffset != -120*time.Millisecond || s.ClockSynced == nil || !*s.ClockSynced ||
			s.Volume != 80 || s.Playing != airingA || s.Agent != "loaxa-station/0.3.0" || s.Station != fx.a.Station || s.LastSeen.IsZero() {
			t.Errorf("status = %+v", s)
		}
		expectOnline(t, env, fx.a.ID)
		if got := toFloat64(h.m.online); got != 1 {
			t.Errorf("online devices = %v, want 1", got)
		}

		// A device that loses power: the broker publishes its last will.
		a.cut()
		waitFor(t, 10*time.Second, "device a offline by its last will", func() bool { s, _ := h.Status(fx.a.ID); return !s.Online })
		if got := toFloat64(h.m.online); got != 0 {
			t.Errorf("online devices = %v, want 0", got)
		}
		a = mustConnectDevice(parent, url, fx.a)
		a.sendStatus(t, broadcast.DeviceStatus{V: 1, Device: fx.a.ID, State: "online", At: t0, Rev: 7})
		expectOnline(t, env, fx.a.ID)

		// Statuses are checked like events.
		before := toFloat64(h.m.statusesRejected.WithLabelValues(broadcast.RejectDevice))
		a.sendStatus(t, broadcast.DeviceStatus{V: 1, Device: fx.b.ID, State: "offline"})
		waitFor(t, 5*time.Second, "status for another device rejected", func() bool {
			return toFloat64(h.m.statusesRejected.WithLabelValues(broadcast.RejectDevice)) == before+1
		})
		if s, _ := h.Status(fx.a.ID); !s.Online {
			t.Error("a forged status changed device a")
		}
		if _, ok := h.Status(fx.b.ID); ok {
			t.Error("a status of device b on a's topic created b")
		}
		if len(h.Statuses()) == 0 {
			t.Error("Statuses is empty")
		}
	})

	t.Run("snapshot and commands", func(t *testing.T) {
		snap := broadcast.Snapshot{Device: fx.a.ID, Station: fx.a.Station, Rev: 8, IssuedAt: t0,
			Items: []broadcast.Item{broadcast.ItemOf(testAiring(airingA, fx.a.Station), "http://example.invalid/audio")}}
		if err := h.PublishSnapshot(ctx, snap); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-a.scheds:
			if got.Rev != 8 || len(got.Items) != 1 || got.Items[0].Airing != airingA {
				t.Errorf("device got snapshot %+v", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("device a got no snapshot")
		}
		// Retained: a device that connects later gets it at once.
		a.client.Disconnect(100)
		a = mustConnectDevice(parent, url, fx.a)
		select {
		case got := <-a.scheds:
			if got.Rev != 8 {
				t.Errorf("retained snapshot rev %d, want 8", got.Rev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no retained snapshot")
		}
		if got := toFloat64(h.m.snapshots); got != 1 {
			t.Errorf("snapshots published = %v, want 1", got)
		}
		if err := h.PublishSnapshot(ctx, broadcast.Snapshot{Device: fx.a.ID}); err == nil {
			t.Error("a snapshot without rev was published")
		}
		if err := h.PublishSnapshot(ctx, broadcast.Snapshot{Device: "a/b", Rev: 1}); err == nil {
			t.Error("a snapshot for an invalid device id was published")
		}

		item := snap.Items[0]
		item.Kind, item.Priority = broadcast.KindEmergency, broadcast.PriorityEmergency
		if err := h.PlayNow(ctx, fx.a.ID, item); err != nil {
			t.Fatal(err)
		}
		if c := a.nextCmd(t, broadcast.CmdPlayNow); c.Item == nil || c.Item.Airing != airingA || c.V != 1 {
			t.Errorf("play_now = %+v", c)
		}
		if err := h.Stop(ctx, fx.a.ID); err != nil {
			t.Fatal(err)
		}
		a.nextCmd(t, broadcast.CmdStop)
		if err := h.Ping(ctx, fx.a.ID); err != nil {
			t.Fatal(err)
		}
		a.nextCmd(t, broadcast.CmdPing)
		if err := h.Ping(ctx, "no such/device"); err == nil {
			t.Error("ping to an invalid device id succeeded")
		}
	})

	t.Run("seq gap", func(t *testing.T) {
		b := mustConnectDevice(t, url, fx.b)
		base := asRunMax(t, fx, fx.b.ID)
		b.sendEvent(t, sign(t, fx.b, finished(fx.b, base+2, airingB)))
		waitFor(t, 5*time.Second, "gap reported", func() bool { return toFloat64(h.m.seqGaps) == 1 })
		if s, _ := h.Status(fx.b.ID); !s.LostEvents || s.SeqUpto != base || s.SeqMax != base+2 {
			t.Errorf("status after a gap = %+v", s)
		}
		if !strings.Contains(env.logs.String(), "device fault") {
			t.Error("the gap is not logged as a device fault")
		}
		if base == 0 {
			b.noCmd(t, 50*time.Millisecond) // nothing to confirm while seq 1 is missing
		}
		b.sendEvent(t, sign(t, fx.b, finished(fx.b, base+1, airingB)))
		if r := b.nextCmd(t, broadcast.CmdReceipt); r.UptoSeq != base+2 {
			t.Errorf("receipt after the gap filled: upto_seq %d, want %d", r.UptoSeq, base+2)
		}
		waitFor(t, 5*time.Second, "gap cleared", func() bool { s, _ := h.Status(fx.b.ID); return !s.LostEvents })
		if got := toFloat64(h.m.seqGaps); got != 1 {
			t.Errorf("seq gaps = %v, want 1", got)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		if !h.Connected() || toFloat64(h.m.connected) != 1 {
			t.Error("hub not connected")
		}
		// What testutil.GatherAndLint does; see gatherAndLint.
		problems, n, err := gatherAndLint(env.reg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("metric %s: %s", p.Metric, p.Text)
		}
		if n < 14 {
			t.Errorf("gathered %d metric families, want all 14", n)
		}
	})
}

func asRunMax(t *testing.T, fx *fixture, device string) uint64 {
	t.Helper()
	st, err := fx.store.DeviceSeq(device)
	if err != nil {
		t.Fatal(err)
	}
	return st.Max
}

func expectOnline(t *testing.T, env *hubEnv, device string) {
	t.Helper()
	for {
		select {
		case d := <-env.online:
			if d == device {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("OnOnline was not called for %s", device)
		}
	}
}

func mustPayload(t *testing.T, d testDevice, ev broadcast.Event) []byte {
	t.Helper()
	p, err := broadcast.SignEvent(ev, d.Key)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewHubOptions(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	ok := HubOptions{BrokerURL: "tcp://127.0.0.1:1", Events: eventLog{fx.store}, Devices: fx.store}
	if _, err := NewHub(ok); err != nil {
		t.Fatalf("minimal options: %v", err)
	}
	for name, tweak := range map[string]func(*HubOptions){
		"no broker":      func(o *HubOptions) { o.BrokerURL = "" },
		"no event log":   func(o *HubOptions) { o.Events = nil },
		"no registry":    func(o *HubOptions) { o.Devices = nil },
		"wildcard root":  func(o *HubOptions) { o.TopicRoot = "loaxa/+" },
		"negative pool":  func(o *HubOptions) { o.Workers = -1 },
		"empty level":    func(o *HubOptions) { o.TopicRoot = "loaxa//v1" },
		"trailing slash": func(o *HubOptions) { o.TopicRoot = "loaxa/" },
	} {
		o := ok
		tweak(&o)
		if _, err := NewHub(o); err == nil {
			t.Errorf("%s: NewHub succeeded", name)
		}
	}
}

// TestHubStopsWithoutBroker checks that Run returns on cancel even if the
// broker never answered.
func TestHubStopsWithoutBroker(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	h, err := NewHub(HubOptions{BrokerURL: "tcp://127.0.0.1:1", Events: eventLog{fx.store}, Devices: fx.store, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	if h.Connected() {
		t.Error("connected to nothing")
	}
	pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := h.Ping(pctx, fx.a.ID); err == nil {
		t.Error("ping without a broker succeeded")
	}
	pcancel()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if err := h.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
}

// gatedLog holds the first append until the gate opens.
type gatedLog struct {
	eventLog
	entered chan struct{}
	gate    chan struct{}
	once    *sync.Once
}

func (g gatedLog) AppendEvent(ctx context.Context, r EventRecord) (Appended, error) {
	g.once.Do(func() {
		close(g.entered)
		<-g.gate
	})
	return g.eventLog.AppendEvent(ctx, r)
}

// TestHubRedeliversAfterRestart stops the hub while events wait in its
// queue: they were never acknowledged to the broker, so the next process,
// with the same client id, gets them again and logs them.
func TestHubRedeliversAfterRestart(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	b, user, pass := startBroker(t, fx.store)
	url := "tcp://" + b.Addr()
	gl := gatedLog{eventLog: eventLog{fx.store}, entered: make(chan struct{}), gate: make(chan struct{}), once: &sync.Once{}}
	h1, err := NewHub(HubOptions{BrokerURL: url, Username: user, Password: pass, ClientID: "loaxad-restart", TopicRoot: testRoot,
		Events: gl, Devices: fx.store, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h1.Run(ctx) }()
	waitFor(t, 10*time.Second, "first hub connected", h1.Connected)

	a := mustConnectDevice(t, url, fx.a)
	const n = 5
	var payloads [][]byte // a device's outbox: it re-sends the same bytes
	for seq := uint64(1); seq <= n; seq++ {
		p := sign(t, fx.a, finished(fx.a, seq, airingA))
		payloads = append(payloads, p)
		a.sendEvent(t, p)
	}
	<-gl.entered // the one worker holds seq 1; 2..5 wait in its queue
	waitFor(t, 5*time.Second, "events queued", func() bool { return toFloat64(h1.m.queued) == n-1 })
	cancel()
	time.Sleep(50 * time.Millisecond)
	close(gl.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := len(asRun(t, fx, fx.a.ID)); got != 1 {
		t.Fatalf("%d entries after the first hub, want 1 (the event it was handling)", got)
	}

	env := startHub(t, fx, url, user, pass, func(o *HubOptions) { o.ClientID = "loaxad-restart" })
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(env.logs.String())
		}
	})
	// The broker redelivers the unacknowledged events to the same session.
	// Mochi does not always (about 1 run in 12 under -race): the device's
	// outbox is what the design relies on, so when the broker's copy does
	// not come, the device's re-send must still log each event once.
	redelivered := func() bool { return len(asRun(t, fx, fx.a.ID)) == n }
	deadline := time.Now().Add(3 * time.Second)
	for !redelivered() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !redelivered() {
		t.Log("the broker did not redeliver every queued event; the device re-sends its outbox")
		for _, p := range payloads {
			a.sendEvent(t, p)
		}
	}
	waitFor(t, 10*time.Second, "the queued events logged by the next hub", redelivered)
	for {
		if r := a.nextCmd(t, broadcast.CmdReceipt); r.UptoSeq == n {
			break
		}
	}
	if got := toFloat64(env.hub.m.eventsLogged); got != n-1 {
		t.Errorf("the next hub logged %v events, want %d", got, n-1)
	}
}
