package daemon

// Resilience: what the station protocol promises when the network,
// the broker or the daemon fails. Each test runs against the embedded broker
// and against Mosquitto, started with the files devices.WriteMosquittoConfig
// writes (skipped only where Mosquitto is not installed):
//
//   - TestResilienceOfflineThreeDays: a device cut off for three days plays
//     its airings from its cache; on reconnect every event is logged once.
//   - TestResilienceSIGKILLDuringEventBurst: loaxad, a real process, killed
//     mid-burst loses nothing a device had a receipt for; the rest arrives
//     after the restart.
//   - TestResilienceBrokerRestart: events produced while the broker was down
//     arrive, once, after it is back; TestResilienceBrokerRestartLosesQueue:
//     so do those Mosquitto had acknowledged and lost in its restart.
//   - TestResilienceDeviceIsolation: a device cannot speak or listen for
//     another, and a forged signature never counts.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/configs"
	"github.com/loaxa/loaxa/devices"
	"github.com/loaxa/loaxa/devices/agent"
	"github.com/loaxa/loaxa/devices/agent/agenttest"
	"github.com/loaxa/loaxa/devices/mosquittotest"
	"github.com/loaxa/loaxa/storage"
)

// ---------------------------------------------------------------------------
// 1. Three days without a network.

// TestResilienceOfflineThreeDays: a device gets its week (snapshot and
// audio), loses its link (MQTT and HTTP) for three days of fake time during
// which it plays four airings from its cache, and gets it back. Every event
// it made offline then reaches the as-run log exactly once, the airings are
// aired, the month's compliance counts them, and receipts empty its outbox.
func TestResilienceOfflineThreeDays(t *testing.T) {
	eachBroker(t, func(t *testing.T, b resBroker) {
		r := newResRig(t, b, resRigOptions{cutHTTP: true, tweak: func(c *configs.Config) {
			// The evidence of an offline device arrives when it reconnects,
			// three days late. With the default 30 min grace the daemon
			// would judge the airings missed meanwhile and plan make-ups;
			// late evidence still turns them aired, but the make-ups would
			// muddle what this test checks.
			c.Policy.Grace = 96 * time.Hour
		}})
		dev := r.addDevice("14755", "14755-01", true)
		link := newNetCut(t, r.brokerUp())
		r.programme("14755", "2026-12", wav(2*time.Second))

		// The four airings of the month fall in the three days offline.
		targets := []time.Time{
			time.Date(2026, 12, 2, 7, 0, 0, 0, ict), time.Date(2026, 12, 2, 18, 0, 0, 0, ict),
			time.Date(2026, 12, 3, 7, 0, 0, 0, ict), time.Date(2026, 12, 4, 7, 0, 0, 0, ict),
		}
		planned := r.airings("14755")
		if len(planned) != len(targets) {
			t.Fatalf("%d airings planned at 14755, want %d", len(planned), len(targets))
		}
		var airings []broadcast.Airing
		for i, a := range planned {
			airings = append(airings, r.move(a.ID, targets[i]))
		}

		ag := r.startAgent(dev, link.Addr())
		r.await("the device to hold its week: every airing ready, every event confirmed", func() bool {
			st := ag.Stats()
			if !st.Connected || st.Outbox != 0 || st.CacheBytes == 0 {
				return false
			}
			for _, a := range airings {
				if da := r.airing(a.ID).Devices[dev.cfg.Device]; da == nil || da.Status != broadcast.StatusReady {
					return false
				}
			}
			return true
		})
		online := ag.Stats()

		// The link goes down, MQTT and HTTP alike.
		link.Cut()
		r.httpCut.Cut()
		r.await("the device to notice it is offline", func() bool { return !ag.Stats().Connected })
		for _, a := range airings {
			r.playOffline(ag, a)
		}
		offline := ag.Stats()
		if made := offline.NextSeq - online.NextSeq; made < 2*uint64(len(airings)) || offline.Outbox != int(made) {
			t.Fatalf("offline the device made %d events and holds %d unconfirmed, want at least %d (started and finished for each airing), all unconfirmed",
				made, offline.Outbox, 2*len(airings))
		}
		if n := len(r.asrun(dev.cfg.Device)); uint64(n) != online.NextSeq-1 {
			t.Fatalf("the as-run log has %d entries of the device while it was offline, want the %d from before", n, online.NextSeq-1)
		}
		for _, a := range airings {
			if got := r.airing(a.ID); got.Status == broadcast.StatusAired {
				t.Fatalf("airing %s is aired while its device is offline", a.ID)
			}
		}
		t.Logf("offline until %s: %d events in the outbox", r.clock.Now().Format(time.RFC3339), offline.Outbox)

		// Three days later the link is back.
		link.Restore()
		r.httpCut.Restore()
		r.await("receipts to empty the outbox", func() bool { st := ag.Stats(); return st.Connected && st.Outbox == 0 })

		final := ag.Stats()
		entries := r.asrun(dev.cfg.Device)
		checkExactlyOnce(t, entries, dev.cfg.Device, final.NextSeq-1)
		checkReceiptHash(t, entries, dev.cfg.Device, final.NextSeq-1, final.LogHash)
		for _, a := range airings {
			got := r.airing(a.ID)
			if got.Status != broadcast.StatusAired {
				t.Errorf("airing %s at %s is %s after the device reconnected, want aired", a.ID, a.Start.Format(time.RFC3339), got.Status)
			}
			var started, finished int
			for _, e := range entries {
				if e.Airing != a.ID {
					continue
				}
				ev, _, err := broadcast.DecodeEvent(e.Payload)
				if err != nil {
					t.Fatalf("entry %d: %v", e.Seq, err)
				}
				switch ev.Event {
				case broadcast.EventStarted:
					started++
					// Played on time by the device's clock, not when the
					// evidence arrived.
					if !ev.At.Equal(a.Start) {
						t.Errorf("airing %s started at %v, want %v", a.ID, ev.At, a.Start)
					}
				case broadcast.EventFinished:
					finished++
				}
			}
			if started != 1 || finished != 1 {
				t.Errorf("airing %s: %d started and %d finished events logged, want 1 and 1", a.ID, started, finished)
			}
		}
		if row := r.compliance("2026-12", "380")["14755"]; row.Aired != len(airings) || row.Status != "compliant" {
			t.Errorf("compliance of 14755: %+v, want compliant with %d aired", row, len(airings))
		}
		r.verify()
	})
}

// ---------------------------------------------------------------------------
// 2. SIGKILL during a burst.

// TestResilienceSIGKILLDuringEventBurst runs loaxad as a process, twenty
// devices at one station play the same airing, and the daemon is killed with
// SIGKILL in the burst of their finished events: once it has logged a
// quarter of them, or once a device has its receipt, whichever it sees
// first, while the others' are still on their way. The crash image (opened before
// the restart, so that no re-sent event can fill a hole) must hold every
// event a device had a receipt for, with the hash the receipt named; after
// the restart every event of every device is logged exactly once and the
// chain verifies.
//
// It uses real time: the process cannot share a fake clock. The airing is
// moved to a few seconds ahead.
func TestResilienceSIGKILLDuringEventBurst(t *testing.T) {
	eachBroker(t, func(t *testing.T, b resBroker) {
		now := time.Now().In(ict)
		month := now.Format("2006-01")
		if time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, ict).Sub(now) < 2*time.Hour {
			t.Skip("skipping: less than two hours left in the month; an airing cannot be planned and moved within it")
		}
		bin := buildLoaxad(t)
		dir := t.TempDir()
		dataDir := filepath.Join(dir, "data")
		httpPort, mqttPort := mosquittotest.FreePort(t), mosquittotest.FreePort(t)
		units, err := filepath.Abs("../../../configs/data/thanh-hoa-units-2025-03.csv")
		if err != nil {
			t.Fatal(err)
		}
		mqttUser, mqttPass := "loaxad", broadcast.NewSecret()
		mqttConf := fmt.Sprintf("  embedded:\n    enabled: true\n    listen: 127.0.0.1:%d\n", mqttPort)
		if b == resMosquitto {
			mqttConf = fmt.Sprintf("  embedded:\n    enabled: false\n  url: tcp://127.0.0.1:%d\n  username: %s\n  password: %q\n", mqttPort, mqttUser, mqttPass)
		}
		// All day, and no freeze: the airing is moved to a few seconds from
		// now, whenever the test runs.
		yaml := fmt.Sprintf(`data_dir: %s
http:
  listen: 127.0.0.1:%d
  public_url: http://127.0.0.1:%d
  metrics_public: true
mqtt:
%spolicy:
  broadcast_hours: "00:00-24:00"
  freeze: 0s
log:
  level: debug
units_csv: %s
`, dataDir, httpPort, httpPort, mqttConf, units)
		confFile := filepath.Join(dir, "loaxad.yaml")
		if err := os.WriteFile(confFile, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := configs.Parse(confFile, []byte(yaml))
		if err != nil {
			t.Fatalf("the test's configuration: %v", err)
		}

		p := startLoaxad(t, bin, confFile, fmt.Sprintf("http://127.0.0.1:%d", httpPort))
		c := client{t: t, base: p.base}
		adminRaw, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		admin := strings.TrimSpace(string(adminRaw))
		var lan, minh struct{ Token string }
		c.json("POST", "/api/v1/tokens", admin, map[string]string{"name": "Lan", "role": "operator", "unit": "380"}, &lan, 201)
		c.json("POST", "/api/v1/tokens", admin, map[string]string{"name": "Minh", "role": "operator", "unit": "380"}, &minh, 201)

		const n = 20
		var devs []resDevice
		var registry []broadcast.Device
		for i := 1; i <= n; i++ {
			d := registerDevice(t, c, lan.Token, "14755", fmt.Sprintf("14755-%02d", i), true)
			devs = append(devs, d)
			registry = append(registry, broadcast.Device{ID: d.cfg.Device, Station: "14755", SecretHash: broadcast.HashSecret(d.cfg.Secret)})
		}
		brokerAddr := fmt.Sprintf("127.0.0.1:%d", mqttPort)
		if b == resMosquitto {
			// loaxad holds its database open, so the Mosquitto files are
			// written from what the API returned, as an installer would.
			mdir := t.TempDir()
			if err := devices.WriteMosquittoConfig(mdir, registry, mqttUser, mqttPass, cfg.MQTT.TopicRoot); err != nil {
				t.Fatal(err)
			}
			m := startMosquitto(t, mdir, mqttPort)
			t.Cleanup(p.stop) // before Mosquitto goes (cleanups run last first)
			brokerAddr = m.addr
		}
		awaitReady(t, c)

		var prog struct{ ID string }
		if code := c.upload(lan.Token, map[string]string{"unit": "14755", "month": month, "title": "Bản tin an toàn giao thông"}, wav(time.Second), &prog); code != 201 {
			t.Fatalf("upload: %d", code)
		}
		c.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", minh.Token, nil, nil, 200)
		var list struct{ Airings []broadcast.Airing }
		c.json("GET", "/api/v1/airings?station=14755&month="+month, lan.Token, nil, &list, 200)
		if len(list.Airings) == 0 {
			t.Fatal("no airing planned at 14755")
		}
		airing := list.Airings[0]

		var agents []*resAgent
		for _, d := range devs {
			cfg := d.cfg
			cfg.Broker = "tcp://" + brokerAddr
			agents = append(agents, runAgent(t, cfg, agent.Options{ReconnectMax: 200 * time.Millisecond}))
		}
		t.Cleanup(func() { stopAll(agents) })
		awaitFor(t, 30*time.Second, "every device to be ready with nothing unconfirmed", func() bool {
			for _, ag := range agents {
				if st := ag.Stats(); !st.Connected || st.Outbox != 0 || st.CacheBytes == 0 {
					return false
				}
			}
			var a broadcast.Airing
			c.json("GET", "/api/v1/airings/"+airing.ID, lan.Token, nil, &a, 200)
			for _, d := range devs {
				if da := a.Devices[d.cfg.Device]; da == nil || da.Status != broadcast.StatusReady {
					return false
				}
			}
			return true
		})
		revs := make([]uint64, n)
		for i, ag := range agents {
			revs[i] = ag.Stats().Rev
		}
		at := time.Now().Add(5 * time.Second).Truncate(time.Second)
		c.json("PATCH", "/api/v1/airings/"+airing.ID, lan.Token, map[string]string{"start": at.Format(time.RFC3339)}, &airing, 200)
		awaitFor(t, 10*time.Second, "every device to get the moved airing", func() bool {
			for i, ag := range agents {
				if ag.Stats().Rev <= revs[i] {
					return false
				}
			}
			return true
		})
		if time.Until(at) < time.Second {
			t.Fatalf("the devices got the moved airing %v before it starts; too late to be sure they play it on time", time.Until(at))
		}
		before := make([]uint64, n)
		for i, ag := range agents {
			before[i] = ag.Stats().NextSeq
		}

		// Twenty devices start, then finish, at the same second. Kill
		// loaxad as soon as it has logged a quarter of the finished events
		// (its debug log says so, a few ms before a device could know), or
		// as soon as one device has the receipt for its finished event,
		// whichever comes first: the receipts go out in the batches that
		// the group commit makes, within milliseconds of each other.
		var logged atomic.Int64
		p.out.watch(func(line string) {
			if strings.Contains(line, `msg="event logged"`) && strings.Contains(line, "event=finished") {
				logged.Add(1)
			}
		})
		trigger := "the first receipt for a finished event"
		deadline := time.Now().Add(time.Until(at) + 20*time.Second)
	burst:
		for {
			if logged.Load() >= n/4 {
				trigger = fmt.Sprintf("the daemon's log line for its %d. finished event", n/4)
				break
			}
			for i, ag := range agents {
				if st := ag.Stats(); st.NextSeq >= before[i]+2 && st.Outbox == 0 {
					break burst
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("no device got a receipt for its finished event in time")
			}
			time.Sleep(200 * time.Microsecond)
		}
		p.kill()
		p.out.watch(nil)
		killedAt := time.Now()

		// What the devices hold now is all they will ever get from the
		// dead process (the embedded broker died with it; Mosquitto has no
		// one to send receipts). Let what was in flight settle.
		receipts := settledReceipts(t, agents)
		full, partial := 0, 0
		for i, rc := range receipts {
			switch {
			case rc.upto >= before[i]+1:
				full++
			default:
				partial++
			}
		}
		t.Logf("killed on %s, %v after the airing's end: %d devices had the receipt for their finished event, %d did not",
			trigger, killedAt.Sub(at.Add(time.Second)).Round(time.Millisecond), full, partial)
		if partial == 0 {
			t.Logf("note: every receipt was out before the kill; this run did not catch the burst in the middle")
		}

		// The crash image, before anything can be re-sent into it.
		st, err := storage.Open(dataDir, storage.Options{Policy: Policy(cfg)})
		if err != nil {
			t.Fatalf("open the crash image: %v", err)
		}
		var image []broadcast.AsRunEntry
		err = st.AsRun(0, func(e broadcast.AsRunEntry) error { image = append(image, e); return nil })
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		for i, rc := range receipts {
			dev := devs[i].cfg.Device
			if rc.upto == 0 {
				continue
			}
			bySeq := map[uint64]int{}
			for _, e := range image {
				if e.Device == dev {
					bySeq[e.DeviceSeq]++
				}
			}
			for s := uint64(1); s <= rc.upto; s++ {
				if bySeq[s] != 1 {
					t.Errorf("device %s had a receipt up to seq %d, but the crash image holds seq %d %d times", dev, rc.upto, s, bySeq[s])
				}
			}
			checkReceiptHash(t, image, dev, rc.upto, rc.hash)
		}
		if t.Failed() {
			t.FailNow()
		}

		// The same process again, on the same data and ports.
		p.start()
		awaitReady(t, c)
		awaitFor(t, 30*time.Second, "every device's outbox to empty after the restart", func() bool {
			for _, ag := range agents {
				if st := ag.Stats(); st.Outbox != 0 {
					return false
				}
			}
			return true
		})
		var asrun struct{ Entries []broadcast.AsRunEntry }
		c.json("GET", "/api/v1/asrun", admin, nil, &asrun, 200)
		for i, ag := range agents {
			st := ag.Stats()
			dev := devs[i].cfg.Device
			checkExactlyOnce(t, asrun.Entries, dev, st.NextSeq-1)
			checkReceiptHash(t, asrun.Entries, dev, st.NextSeq-1, st.LogHash)
			finished := 0
			for _, e := range asrun.Entries {
				if e.Device == dev && e.Airing == airing.ID && e.Event == broadcast.EventFinished {
					finished++
				}
			}
			if finished != 1 {
				t.Errorf("device %s: %d finished events for airing %s, want 1", dev, finished, airing.ID)
			}
		}
		var a broadcast.Airing
		c.json("GET", "/api/v1/airings/"+airing.ID, lan.Token, nil, &a, 200)
		aired := 0
		for _, da := range a.Devices {
			if da.Status == broadcast.StatusAired {
				aired++
			}
		}
		if a.Status != broadcast.StatusAired || aired != n {
			t.Errorf("airing %s is %s with %d devices aired, want aired by all %d", a.ID, a.Status, aired, n)
		}
		verifyChain(t, c, admin, len(asrun.Entries))
	})
}

// ---------------------------------------------------------------------------
// 3. The broker restarts.

// TestResilienceBrokerRestart: the broker goes away with a device connected
// and ready, the device plays an airing meanwhile, and the broker comes back
// with nothing (Mosquitto with persistence off, as loaxad configures it,
// killed with SIGKILL; for the embedded broker the whole daemon, closed
// gracefully, since it cannot restart its broker alone). The events made
// while it was down arrive afterwards, exactly once.
func TestResilienceBrokerRestart(t *testing.T) {
	eachBroker(t, func(t *testing.T, b resBroker) {
		r := newResRig(t, b, resRigOptions{})
		dev := r.addDevice("14755", "14755-01", true)
		addr := r.brokerUp()
		r.programme("14755", "2026-12", wav(2*time.Second))
		planned := r.airings("14755")
		if len(planned) == 0 {
			t.Fatal("no airing planned")
		}
		a := r.move(planned[0].ID, time.Date(2026, 12, 1, 7, 0, 0, 0, ict))

		ag := r.startAgent(dev, addr)
		r.await("the device to be ready with nothing unconfirmed", func() bool {
			st := ag.Stats()
			da := r.airing(a.ID).Devices[dev.cfg.Device]
			return st.Connected && st.Outbox == 0 && da != nil && da.Status == broadcast.StatusReady
		})
		before := ag.Stats()

		switch b {
		case resMosquitto:
			r.mosq.kill()
		case resEmbedded:
			if err := r.closeDaemon(); err != nil {
				t.Fatalf("graceful close: %v", err)
			}
		}
		r.await("the device to lose the broker", func() bool { return !ag.Stats().Connected })
		r.playOffline(ag, a)
		down := ag.Stats()
		if made := down.NextSeq - before.NextSeq; made != 2 || down.Outbox != 2 {
			t.Fatalf("while the broker was down the device made %d events and holds %d unconfirmed, want started and finished, both unconfirmed", made, down.Outbox)
		}

		switch b {
		case resMosquitto:
			r.mosq.start()
		case resEmbedded:
			r.startDaemon()
		}
		r.awaitReady()
		r.awaitOutboxEmpty(ag)

		final := ag.Stats()
		entries := r.asrun(dev.cfg.Device)
		checkExactlyOnce(t, entries, dev.cfg.Device, final.NextSeq-1)
		checkReceiptHash(t, entries, dev.cfg.Device, final.NextSeq-1, final.LogHash)
		if got := r.airing(a.ID); got.Status != broadcast.StatusAired {
			t.Errorf("airing %s is %s, want aired", a.ID, got.Status)
		}
		r.verify()
	})
}

// TestResilienceBrokerRestartLosesQueue: Mosquitto only. The daemon is
// down (closed gracefully: its session, subscriptions included, stays on
// the broker), so the events a device publishes meanwhile are acknowledged
// by Mosquitto and queued for the daemon's session, which is where they are
// when Mosquitto is killed, without persistence. The device had no receipt
// for them, so once the broker and the daemon are back it sends them again:
// they arrive, exactly once. (With the embedded broker the queue lives and
// dies with the daemon: TestResilienceSIGKILLDuringEventBurst.)
func TestResilienceBrokerRestartLosesQueue(t *testing.T) {
	mosquittotest.Binary(t)
	r := newResRig(t, resMosquitto, resRigOptions{})
	dev := r.addDevice("14755", "14755-01", true)
	addr := r.brokerUp()
	r.programme("14755", "2026-12", wav(2*time.Second))
	a := r.move(r.airings("14755")[0].ID, time.Date(2026, 12, 1, 7, 0, 0, 0, ict))
	ag := r.startAgent(dev, addr)
	r.await("the device to be ready with nothing unconfirmed", func() bool {
		st := ag.Stats()
		da := r.airing(a.ID).Devices[dev.cfg.Device]
		return st.Connected && st.Outbox == 0 && da != nil && da.Status == broadcast.StatusReady
	})
	before := ag.Stats()

	if err := r.closeDaemon(); err != nil {
		t.Fatal(err)
	}
	// An observer with the daemon's credentials (not its client id) sees
	// what the broker took from the device.
	observed := make(chan []byte, 16)
	obs := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("resilience-observer").
		SetUsername(r.cfg.MQTT.Username).SetPassword(r.cfg.MQTT.Password).SetCleanSession(true).SetAutoReconnect(false))
	if tok := obs.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	tok := obs.Subscribe(r.cfg.MQTT.TopicRoot+"/dev/"+dev.cfg.Device+"/events", 1, func(_ paho.Client, m paho.Message) {
		select { // a handler must not block paho
		case observed <- append([]byte(nil), m.Payload()...):
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer subscribe: %v", tok.Error())
	}
	r.playOffline(ag, a) // offline from the daemon only: the broker is there
	for range 2 {
		select {
		case <-observed:
		case <-time.After(10 * time.Second):
			t.Fatal("the broker did not pass on the device's started and finished events")
		}
	}
	obs.Disconnect(100)
	if st := ag.Stats(); st.NextSeq-before.NextSeq != 2 || st.Outbox != 2 {
		t.Fatalf("the device made %d events and holds %d unconfirmed, want started and finished, both unconfirmed", st.NextSeq-before.NextSeq, st.Outbox)
	}

	// The broker dies with the events queued for the daemon.
	r.mosq.kill()
	r.await("the device to lose the broker", func() bool { return !ag.Stats().Connected })
	r.mosq.start()
	r.startDaemon()
	r.awaitReady()
	r.awaitOutboxEmpty(ag)

	final := ag.Stats()
	entries := r.asrun(dev.cfg.Device)
	checkExactlyOnce(t, entries, dev.cfg.Device, final.NextSeq-1)
	checkReceiptHash(t, entries, dev.cfg.Device, final.NextSeq-1, final.LogHash)
	if got := r.airing(a.ID); got.Status != broadcast.StatusAired {
		t.Errorf("airing %s is %s, want aired", a.ID, got.Status)
	}
	r.verify()
}

// ---------------------------------------------------------------------------
// 4. One device cannot pass for another; a forged signature never counts.

// TestResilienceDeviceIsolation, at the daemon's level on each broker:
//   - device A cannot read device B's snapshot or receipts;
//   - an event A publishes on B's topic never reaches the as-run log, even
//     one that would be valid from B (B signs nothing, so only the broker
//     stands in the way);
//   - an event with a bad signature for a real airing (signed with another
//     key, or altered after signing) is not logged, does not air the airing,
//     and counts in loaxa_devices_events_rejected_total{reason="bad_signature"};
//     the same event properly signed then airs it.
func TestResilienceDeviceIsolation(t *testing.T) {
	eachBroker(t, func(t *testing.T, b resBroker) {
		r := newResRig(t, b, resRigOptions{})
		devA := r.addDevice("14755", "14755-01", true)
		devB := r.addDevice("14758", "14758-01", false)
		brokerURL := "tcp://" + r.brokerUp()
		root := r.cfg.MQTT.TopicRoot
		topic := func(dev resDevice, kind string) string { return root + "/dev/" + dev.cfg.Device + "/" + kind }

		a := dialDevice(t, brokerURL, devA)
		bb := dialDevice(t, brokerURL, devB)
		// A tries to listen on B's topics; each would have B's retained
		// snapshot (published when B was added) at once.
		for _, k := range []string{"schedule", "cmd"} {
			if err := a.subscribe(topic(devB, k)); err != nil {
				t.Logf("A subscribing to B's %s: %v", k, err)
			}
		}
		for _, k := range []string{"schedule", "cmd"} {
			if err := bb.subscribe(topic(devB, k)); err != nil {
				t.Fatalf("B subscribing to its own %s: %v", k, err)
			}
		}
		if err := a.subscribe(topic(devA, "schedule")); err != nil {
			t.Fatalf("A subscribing to its own schedule: %v", err)
		}
		r.programme("380", "2026-12", wav(2*time.Second))
		airingA, airingB := r.airings("14755")[0], r.airings("14758")[0]
		r.await("both devices to get their snapshot with the month's airings", func() bool {
			return hasSnapshotWith(a.on(topic(devA, "schedule")), airingA.ID) && hasSnapshotWith(bb.on(topic(devB, "schedule")), airingB.ID)
		})

		// B's own event, with its receipt.
		evB := func(seq uint64) (broadcast.Event, []byte) {
			ev := broadcast.Event{V: 1, ID: broadcast.NewID(r.clock.Now()), Device: devB.cfg.Device, Seq: seq, Airing: airingB.ID,
				Rev: 1, Event: broadcast.EventReceived, At: r.clock.Now(), ClockSynced: true}
			payload, err := broadcast.SignEvent(ev, nil)
			if err != nil {
				t.Fatal(err)
			}
			return ev, payload
		}
		genuine1, p1 := evB(1)
		bb.publish(t, topic(devB, "events"), p1)
		r.await("B's receipt for seq 1", func() bool { return receiptUpto(bb.on(topic(devB, "cmd"))) >= 1 })
		// A round trip on A's connection, so that anything the broker sent A
		// before B had its receipt has been read.
		if err := a.subscribe(topic(devA, "cmd")); err != nil {
			t.Fatalf("A subscribing to its own cmd: %v", err)
		}
		for _, k := range []string{"schedule", "cmd"} {
			if got := a.on(topic(devB, k)); len(got) > 0 {
				t.Errorf("device A read %d messages on B's %s topic: %s", len(got), k, got[0])
			}
		}

		// A publishes, on B's topic, an event that would be valid from B.
		// The embedded broker disconnects A for it, Mosquitto acknowledges
		// and drops it; either way the broker has dealt with it before B
		// publishes its own seq 2, and the daemon takes a device's events
		// in order: had it arrived, it would hold seq 2.
		forged, pf := evB(2)
		a.publishAndForget(t, topic(devB, "events"), pf)
		genuine2, p2 := evB(2)
		bb.publish(t, topic(devB, "events"), p2)
		// Wait for the log, not for B's receipt: had the forgery taken seq 2,
		// B's own would be refused and never get one.
		r.await("B's seq 2 in the as-run log", func() bool {
			for _, e := range r.asrun(devB.cfg.Device) {
				if e.DeviceSeq == 2 {
					return true
				}
			}
			return false
		})
		entries := r.asrun(devB.cfg.Device)
		checkExactlyOnce(t, entries, devB.cfg.Device, 2)
		for _, e := range entries {
			ev, _, err := broadcast.DecodeEvent(e.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[uint64]string{1: genuine1.ID, 2: genuine2.ID}[ev.Seq]; ev.ID != want {
				t.Errorf("B's seq %d in the as-run log is event %s, want B's own %s (A's forgery was %s)", ev.Seq, ev.ID, want, forged.ID)
			}
		}
		for _, e := range r.asrunAll() {
			if bytes.Contains(e.Payload, []byte(forged.ID)) {
				t.Errorf("A's forged event reached the as-run log as entry %d", e.Seq)
			}
		}

		// A forged signature for a real airing of A's station.
		keyA, err := agent.LoadKeyFile(devA.cfg.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		_, stranger, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		finished := func() broadcast.Event {
			return broadcast.Event{V: 1, ID: broadcast.NewID(r.clock.Now()), Device: devA.cfg.Device, Seq: 1, Airing: airingA.ID, Rev: 1,
				Event: broadcast.EventFinished, At: airingA.Start.Add(2 * time.Second), StartedAt: airingA.Start,
				PlayedMS: airingA.Audio.DurationMS, SHA256: airingA.Audio.SHA256, ClockSynced: true}
		}
		sign := func(ev broadcast.Event, key ed25519.PrivateKey) []byte {
			p, err := broadcast.SignEvent(ev, key)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		byStranger := finished()
		altered := finished()
		pAltered := sign(altered, keyA)
		tampered := bytes.Replace(pAltered, fmt.Appendf(nil, `"played_ms":%d`, altered.PlayedMS), fmt.Appendf(nil, `"played_ms":%d`, altered.PlayedMS+1), 1)
		if bytes.Equal(tampered, pAltered) {
			t.Fatal("the test failed to alter the signed body")
		}
		rejected0 := r.metric(`loaxa_devices_events_rejected_total{reason="bad_signature"}`)
		a.close() // the embedded broker has cut it off for its forgery anyway
		a2 := dialDevice(t, brokerURL, devA)
		a2.publish(t, topic(devA, "events"), sign(byStranger, stranger))
		a2.publish(t, topic(devA, "events"), tampered)
		// Until both are refused, or either got in.
		r.await("the daemon to deal with both forgeries", func() bool {
			return r.metric(`loaxa_devices_events_rejected_total{reason="bad_signature"}`) >= rejected0+2 ||
				len(r.asrun(devA.cfg.Device)) > 0 || r.airing(airingA.ID).Devices[devA.cfg.Device] != nil
		})
		if got := r.asrun(devA.cfg.Device); len(got) != 0 {
			t.Errorf("events with a bad signature were logged: %d entries of A", len(got))
		}
		if got := r.airing(airingA.ID); got.Status == broadcast.StatusAired || got.Devices[devA.cfg.Device] != nil {
			t.Errorf("a forged finished event counted: airing %s is %s, device record %+v", airingA.ID, got.Status, got.Devices[devA.cfg.Device])
		}
		// The same event, properly signed, once the play is over, is what
		// airs it.
		r.advanceTo(airingA.End().Add(time.Minute))
		good := finished()
		a2.publish(t, topic(devA, "events"), sign(good, keyA))
		r.await("the genuine event to air the airing", func() bool { return r.airing(airingA.ID).Status == broadcast.StatusAired })
		entries = r.asrun(devA.cfg.Device)
		if len(entries) != 1 || !bytes.Contains(entries[0].Payload, []byte(good.ID)) {
			t.Errorf("A's as-run entries: %d, want exactly the genuine event %s", len(entries), good.ID)
		}
		if got := r.metric(`loaxa_devices_events_rejected_total{reason="bad_signature"}`); got != rejected0+2 {
			t.Errorf("bad_signature rejections: %v, want %v", got, rejected0+2)
		}
		r.verify()
	})
}

// ---------------------------------------------------------------------------
// The harness.

type resBroker string

const (
	resEmbedded  resBroker = "embedded"
	resMosquitto resBroker = "mosquitto"
)

// eachBroker runs fn as a subtest against each broker.
func eachBroker(t *testing.T, fn func(t *testing.T, b resBroker)) {
	for _, b := range []resBroker{resEmbedded, resMosquitto} {
		t.Run(string(b), func(t *testing.T) {
			if b == resMosquitto {
				mosquittotest.Binary(t) // skips where it is not installed
			}
			fn(t, b)
		})
	}
}

// resRig is the real daemon in-process on fixed loopback ports (so that a
// restarted daemon or broker comes back where the devices look for it),
// with a fake clock it shares with the devices, starting on 1 December 2026.
type resRig struct {
	t       *testing.T
	broker  resBroker
	ctx     context.Context
	clock   *agenttest.FakeClock
	cfg     configs.Config
	d       *Daemon
	c       client
	admin   string
	lan     string
	minh    string
	mosq    *mosqProc
	httpCut *netCut // between the devices and the daemon's HTTP, with cutHTTP
	agents  []*resAgent
}

type resRigOptions struct {
	cutHTTP bool // devices reach the daemon's HTTP (audio) through a netCut
	tweak   func(*configs.Config)
}

func newResRig(t *testing.T, b resBroker, o resRigOptions) *resRig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	r := &resRig{t: t, broker: b, ctx: ctx, clock: agenttest.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, ict)), cfg: testConfig(t)}
	r.cfg.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", mosquittotest.FreePort(t))
	if b == resMosquitto {
		r.cfg.MQTT.Embedded.Enabled = false
		r.cfg.MQTT.URL = fmt.Sprintf("tcp://127.0.0.1:%d", mosquittotest.FreePort(t))
		r.cfg.MQTT.Username, r.cfg.MQTT.Password = "loaxad", broadcast.NewSecret()
	} else {
		r.cfg.MQTT.Embedded.Listen = fmt.Sprintf("127.0.0.1:%d", mosquittotest.FreePort(t))
	}
	if o.cutHTTP {
		r.httpCut = newNetCut(t, "")
		r.cfg.HTTP.PublicURL = "http://" + r.httpCut.Addr()
	}
	if o.tweak != nil {
		o.tweak(&r.cfg)
	}
	t.Cleanup(func() { r.shutdown(); cancel() })
	r.startDaemon()
	adminRaw, err := os.ReadFile(filepath.Join(r.cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	r.admin = strings.TrimSpace(string(adminRaw))
	var lan, minh struct{ Token string }
	r.c.json("POST", "/api/v1/tokens", r.admin, map[string]string{"name": "Lan", "role": "operator", "unit": "380"}, &lan, 201)
	r.c.json("POST", "/api/v1/tokens", r.admin, map[string]string{"name": "Minh", "role": "operator", "unit": "380"}, &minh, 201)
	r.lan, r.minh = lan.Token, minh.Token
	return r
}

func (r *resRig) startDaemon() {
	r.t.Helper()
	d, err := Start(r.ctx, Options{Config: r.cfg, Logger: testLogger(r.t), Clock: r.clock})
	if err != nil {
		r.t.Fatal(err)
	}
	r.d = d
	r.c = client{t: r.t, base: "http://" + d.HTTPAddr()}
	if r.httpCut != nil {
		r.httpCut.SetTarget(d.HTTPAddr())
	}
}

func (r *resRig) closeDaemon() error {
	if r.d == nil {
		return nil
	}
	err := r.d.Close()
	r.d = nil
	return err
}

// shutdown stops the devices, then the daemon; idempotent.
func (r *resRig) shutdown() {
	stopAll(r.agents)
	r.agents = nil
	_ = r.closeDaemon()
}

// addDevice registers a device (signed: with a fresh key) and returns its
// agent configuration, without a broker.
func (r *resRig) addDevice(station, id string, signed bool) resDevice {
	r.t.Helper()
	return registerDevice(r.t, r.c, r.lan, station, id, signed)
}

// brokerUp makes the broker serve the devices added so far and returns its
// address. Mosquitto starts now, with the password file and ACL loaxad
// writes for them.
func (r *resRig) brokerUp() string {
	r.t.Helper()
	if r.broker == resEmbedded {
		r.awaitReady()
		return r.d.BrokerAddr()
	}
	devs, err := r.d.Store().Devices("")
	if err != nil {
		r.t.Fatal(err)
	}
	dir := r.t.TempDir()
	if err := devices.WriteMosquittoConfig(dir, devs, r.cfg.MQTT.Username, r.cfg.MQTT.Password, r.cfg.MQTT.TopicRoot); err != nil {
		r.t.Fatal(err)
	}
	u, err := url.Parse(r.cfg.MQTT.URL)
	if err != nil {
		r.t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	r.mosq = startMosquitto(r.t, dir, port)
	r.t.Cleanup(r.shutdown) // devices and daemon before Mosquitto
	r.awaitReady()
	return r.mosq.addr
}

// awaitReady waits for the daemon to be connected and subscribed.
func (r *resRig) awaitReady() { r.t.Helper(); awaitReady(r.t, r.c) }

// programme uploads a programme for unit and month and has it approved.
func (r *resRig) programme(unit, month string, audio []byte) string {
	r.t.Helper()
	var prog struct{ ID string }
	if code := r.c.upload(r.lan, map[string]string{"unit": unit, "month": month, "title": "Chuyển đổi số tháng 12/2026"}, audio, &prog); code != 201 {
		r.t.Fatalf("upload: %d", code)
	}
	r.c.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", r.minh, nil, nil, 200)
	return prog.ID
}

func (r *resRig) airings(station string) []broadcast.Airing {
	r.t.Helper()
	var list struct{ Airings []broadcast.Airing }
	r.c.json("GET", "/api/v1/airings?station="+station+"&month=2026-12", r.lan, nil, &list, 200)
	return list.Airings
}

func (r *resRig) airing(id string) broadcast.Airing {
	r.t.Helper()
	var a broadcast.Airing
	r.c.json("GET", "/api/v1/airings/"+id, r.lan, nil, &a, 200)
	return a
}

func (r *resRig) move(id string, start time.Time) broadcast.Airing {
	r.t.Helper()
	var a broadcast.Airing
	r.c.json("PATCH", "/api/v1/airings/"+id, r.lan, map[string]string{"start": start.Format(time.RFC3339)}, &a, 200)
	return a
}

func (r *resRig) asrun(device string) []broadcast.AsRunEntry {
	r.t.Helper()
	var out struct{ Entries []broadcast.AsRunEntry }
	r.c.json("GET", "/api/v1/asrun?device="+device, r.admin, nil, &out, 200)
	return out.Entries
}

func (r *resRig) asrunAll() []broadcast.AsRunEntry {
	r.t.Helper()
	var out struct{ Entries []broadcast.AsRunEntry }
	r.c.json("GET", "/api/v1/asrun", r.admin, nil, &out, 200)
	return out.Entries
}

func (r *resRig) compliance(period, unit string) map[string]complianceRow {
	r.t.Helper()
	var rep struct{ Rows []complianceRow }
	r.c.json("GET", "/api/v1/compliance?period="+period+"&unit="+unit, r.lan, nil, &rep, 200)
	out := map[string]complianceRow{}
	for _, row := range rep.Rows {
		out[row.Station] = row
	}
	return out
}

func (r *resRig) verify() {
	r.t.Helper()
	verifyChain(r.t, r.c, r.admin, len(r.asrunAll()))
}

// metric reads one sample from /metrics (public in the default config).
func (r *resRig) metric(series string) float64 {
	r.t.Helper()
	return readMetric(r.t, r.c.base, series)
}

func (r *resRig) await(what string, cond func() bool) {
	r.t.Helper()
	awaitFor(r.t, 20*time.Second, what, cond)
}

func (r *resRig) advanceTo(at time.Time) {
	if d := at.Sub(r.clock.Now()); d > 0 {
		r.clock.Step(d)
	}
}

// awaitOutboxEmpty waits for the device to be connected with every event
// confirmed. A device re-sends its outbox when it reconnects and then every
// ResendInterval (a minute of its clock). If it reconnects before the daemon
// has subscribed again, the broker (whose sessions are gone) has no one to
// give the first re-send to; the periodic one is the fallback, so the clock
// moves on a minute whenever nothing has happened for a while.
func (r *resRig) awaitOutboxEmpty(ag *resAgent) {
	r.t.Helper()
	nudges := 0
	deadline := time.Now().Add(30 * time.Second)
	quiet := time.Now()
	for {
		if st := ag.Stats(); st.Connected && st.Outbox == 0 {
			break
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the outbox still holds %d events after the broker came back", ag.Stats().Outbox)
		}
		if time.Since(quiet) > 3*time.Second {
			nudges++
			r.clock.Step(time.Minute)
			quiet = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	if nudges > 0 {
		r.t.Logf("the events arrived after %d periodic re-sends: the re-send on reconnect went to a broker on which the daemon had not subscribed yet", nudges)
	}
}

// startAgent runs a device against broker (host:port) on the rig's clock.
func (r *resRig) startAgent(dev resDevice, broker string) *resAgent {
	r.t.Helper()
	cfg := dev.cfg
	cfg.Broker = "tcp://" + broker
	ag := runAgent(r.t, cfg, agent.Options{Clock: r.clock, ReconnectMax: 200 * time.Millisecond})
	r.agents = append(r.agents, ag)
	return ag
}

// playOffline moves the clock to the airing's start and through its audio,
// waiting for the device to play it.
func (r *resRig) playOffline(ag *resAgent, a broadcast.Airing) {
	r.t.Helper()
	r.advanceTo(a.Start)
	r.await(fmt.Sprintf("the device to start airing %s at %s", a.ID, a.Start.Format(time.RFC3339)), func() bool { return ag.Stats().Playing == a.ID })
	r.advanceTo(a.Start.Add(a.Audio.Duration() + time.Second))
	// The null player arms its timer from its own goroutine, possibly only
	// after the step above: step on, a second at a time, until it ends.
	deadline := time.Now().Add(20 * time.Second)
	for last := time.Now(); ag.Stats().Playing != ""; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("airing %s still plays at %v", a.ID, r.clock.Now())
		}
		if time.Since(last) > 200*time.Millisecond {
			r.clock.Step(time.Second)
			last = time.Now()
		}
	}
}

// resDevice is a registered device: its agent configuration (no broker yet).
type resDevice struct{ cfg agent.Config }

func registerDevice(t *testing.T, c client, token, station, id string, signed bool) resDevice {
	t.Helper()
	req := map[string]string{"id": id}
	cfg := agent.Config{Device: id, DataDir: t.TempDir(), Player: []string{"null"}}
	if signed {
		cfg.KeyFile = filepath.Join(t.TempDir(), "key")
		pub, err := agent.WriteKeyFile(cfg.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		req["public_key"] = agent.PublicKeyString(pub)
	}
	var dev struct{ ID, Secret string }
	c.json("POST", "/api/v1/stations/"+station+"/devices", token, req, &dev, 201)
	cfg.Secret = dev.Secret
	return resDevice{cfg: cfg}
}

// resAgent is a running agent.
type resAgent struct {
	*agent.Agent
	cancel context.CancelFunc
	done   chan struct{}
}

func runAgent(t *testing.T, cfg agent.Config, opts agent.Options) *resAgent {
	t.Helper()
	opts.Logger = testLogger(t).With("device", cfg.Device)
	ag, err := agent.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &resAgent{Agent: ag, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ra.done)
		if err := ag.Run(ctx); err != nil {
			t.Errorf("agent %s: %v", cfg.Device, err)
		}
	}()
	t.Cleanup(ra.stop)
	return ra
}

func (a *resAgent) stop() {
	a.cancel()
	<-a.done
}

// stopAll stops agents side by side: each may wait a few seconds for a
// broker that is gone.
func stopAll(agents []*resAgent) {
	for _, a := range agents {
		a.cancel()
	}
	for _, a := range agents {
		<-a.done
	}
}

func awaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func awaitReady(t *testing.T, c client) {
	t.Helper()
	awaitFor(t, 30*time.Second, "the daemon to be connected to its broker (/readyz)", func() bool {
		resp, err := http.Get(c.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func readMetric(t *testing.T, base, series string) float64 {
	t.Helper()
	v, ok := scanMetric(t, base, series)
	if !ok {
		t.Fatalf("/metrics has no %s", series)
	}
	return v
}

// scanMetric reads one series from /metrics, and whether it is there.
func scanMetric(t *testing.T, base, series string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f, true
		}
	}
	return 0, false
}

func verifyChain(t *testing.T, c client, token string, entries int) {
	t.Helper()
	var v struct {
		OK       bool
		Entries  int
		Problems []any
	}
	c.json("GET", "/api/v1/audit/verify", token, nil, &v, 200)
	if !v.OK || v.Entries != entries {
		t.Errorf("audit verify: %+v, want ok over %d entries", v, entries)
	}
}

// checkExactlyOnce asserts that the device's seqs 1..upto are each in the
// as-run log exactly once, and nothing beyond.
func checkExactlyOnce(t *testing.T, entries []broadcast.AsRunEntry, device string, upto uint64) {
	t.Helper()
	count := map[uint64]int{}
	for _, e := range entries {
		if e.Device == device {
			count[e.DeviceSeq]++
		}
	}
	var missing, twice, beyond []uint64
	for s := uint64(1); s <= upto; s++ {
		switch count[s] {
		case 0:
			missing = append(missing, s)
		case 1:
		default:
			twice = append(twice, s)
		}
	}
	for s := range count {
		if s == 0 || s > upto {
			beyond = append(beyond, s)
		}
	}
	slices.Sort(beyond)
	if len(missing)+len(twice)+len(beyond) > 0 {
		t.Errorf("device %s, seqs 1..%d: missing %v, logged more than once %v, unexpected %v", device, upto, missing, twice, beyond)
	}
}

// checkReceiptHash asserts that the receipt a device holds names the chain
// hash of the entry with its seq upto.
func checkReceiptHash(t *testing.T, entries []broadcast.AsRunEntry, device string, upto uint64, hash string) {
	t.Helper()
	if upto == 0 {
		return
	}
	for _, e := range entries {
		if e.Device == device && e.DeviceSeq == upto {
			if e.Hash.String() != hash {
				t.Errorf("device %s holds a receipt up to seq %d with log hash %q; the entry's hash is %s", device, upto, hash, e.Hash)
			}
			return
		}
	}
	t.Errorf("device %s holds a receipt up to seq %d, which is not in the log", device, upto)
}

// resReceipt is what a device holds from its last receipt.
type resReceipt struct {
	upto uint64
	hash string
}

// settledReceipts waits until no device's receipt state has changed for
// half a second and returns it. Events up to upto are out of the outbox:
// seqs are consecutive from 1 and the outbox holds what is unconfirmed.
func settledReceipts(t *testing.T, agents []*resAgent) []resReceipt {
	t.Helper()
	read := func() []resReceipt {
		out := make([]resReceipt, len(agents))
		for i, ag := range agents {
			st := ag.Stats()
			out[i] = resReceipt{upto: st.NextSeq - 1 - uint64(st.Outbox), hash: st.LogHash}
		}
		return out
	}
	last, since := read(), time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for time.Since(since) < 500*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("the devices' receipts do not settle")
		}
		time.Sleep(10 * time.Millisecond)
		if now := read(); !slices.Equal(now, last) {
			last, since = now, time.Now()
		}
	}
	return last
}

// netCut is a TCP proxy a test can cut, as a device's link drops: Cut
// closes every connection through it and refuses new ones until Restore.
type netCut struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	down   bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func newNetCut(t testing.TB, target string) *netCut {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &netCut{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *netCut) Addr() string { return p.ln.Addr().String() }

func (p *netCut) SetTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

func (p *netCut) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *netCut) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func (p *netCut) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down, target := p.down, p.target
		p.mu.Unlock()
		if down || target == "" {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.pipe(c, target)
	}
}

func (p *netCut) pipe(c net.Conn, target string) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	copyClose := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	wg.Add(2)
	go copyClose(up, c)
	go copyClose(c, up)
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// mosqProc is a Mosquitto that a test can kill and start again on the same
// port and files (mosquittotest.Start's process lives until the test ends).
// Its configuration is loaxad's, with persistence off: a restart loses every
// session, retained message and queued message.
type mosqProc struct {
	t      testing.TB
	bin    string
	conf   string
	addr   string
	out    *resLog
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func startMosquitto(t testing.TB, dir string, port int) *mosqProc {
	t.Helper()
	m := &mosqProc{t: t, bin: mosquittotest.Binary(t), conf: filepath.Join(dir, devices.MosquittoConf),
		addr: fmt.Sprintf("127.0.0.1:%d", port), out: &resLog{}}
	b, err := os.ReadFile(m.conf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("\nlistener 1883\n")) || !bytes.Contains(b, []byte("\npersistence false\n")) {
		t.Fatalf("mosquitto.conf lacks the default listener or persistence false:\n%s", b)
	}
	b = bytes.Replace(b, []byte("\nlistener 1883\n"), fmt.Appendf(nil, "\nlistener %d 127.0.0.1\n", port), 1)
	if os.Geteuid() == 0 {
		b = append(b, "user root\n"...) // as root it would drop to a user who cannot read the temp dir
	}
	if err := os.WriteFile(m.conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.kill()
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", m.out)
		}
	})
	m.start()
	return m
}

// start runs Mosquitto and waits until it takes connections.
func (m *mosqProc) start() {
	m.t.Helper()
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stdout, cmd.Stderr = m.out, m.out
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.mu.Lock()
	m.cmd, m.exited = cmd, exited
	m.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			m.t.Fatalf("mosquitto exited:\n%s", m.out)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto does not listen on %s:\n%s", m.addr, m.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends Mosquitto with SIGKILL, as a crash would; idempotent.
func (m *mosqProc) kill() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// resLog collects a process's output while it runs, and hands each complete
// line to a watcher if one is set.
type resLog struct {
	mu      sync.Mutex
	b       bytes.Buffer
	watcher func(line string)
	partial []byte
}

func (l *resLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.watcher != nil {
		l.partial = append(l.partial, p...)
		for {
			i := bytes.IndexByte(l.partial, '\n')
			if i < 0 {
				break
			}
			l.watcher(string(l.partial[:i]))
			l.partial = l.partial[i+1:]
		}
	}
	return l.b.Write(p)
}

func (l *resLog) watch(fn func(line string)) {
	l.mu.Lock()
	l.watcher, l.partial = fn, nil
	l.mu.Unlock()
}

func (l *resLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// loaxadProc is loaxad as a real process: the only way to SIGKILL it.
type loaxadProc struct {
	t      *testing.T
	bin    string
	conf   string
	base   string
	out    *resLog
	cmd    *exec.Cmd
	exited chan struct{}
}

// buildLoaxad builds ./cmd/loaxad into the test's temp dir, with the race
// detector when the test has it (it then reuses the test's build cache, and
// the process is checked for races too).
func buildLoaxad(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		// CI puts Go in /usr/local/go without always adding it to PATH.
		goTool = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(t.TempDir(), "loaxad")
	args := []string{"build", "-o", bin}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	start := time.Now()
	cmd := exec.Command(goTool, append(args, "github.com/loaxa/loaxa/cmd/loaxad")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("built loaxad (%s) in %v", strings.Join(args[3:], " "), time.Since(start).Round(time.Millisecond))
	return bin
}

func startLoaxad(t *testing.T, bin, conf, base string) *loaxadProc {
	t.Helper()
	p := &loaxadProc{t: t, bin: bin, conf: conf, base: base, out: &resLog{}}
	t.Cleanup(func() {
		p.stop()
		out := p.out.String()
		if strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("loaxad reported a data race:\n%s", out)
		} else if t.Failed() {
			t.Logf("loaxad output:\n%s", out)
		}
	})
	p.start()
	return p
}

func (p *loaxadProc) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin, "--config", p.conf)
	// Only the file configures it: no LOAXA_ variable from the caller's
	// shell.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOAXA_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	fmt.Fprintf(p.out, "=== loaxad start at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start loaxad: %v", err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	exited := p.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(p.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			p.t.Fatalf("loaxad exited at start:\n%s", p.out)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("loaxad does not answer on %s:\n%s", p.base, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *loaxadProc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	fmt.Fprintf(p.out, "=== loaxad killed at %s\n", time.Now().Format(time.RFC3339Nano))
	p.cmd = nil
}

// stop asks for a graceful shutdown (SIGTERM), killing after 15 s.
func (p *loaxadProc) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.t.Errorf("loaxad did not stop within 15 s of SIGTERM")
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// rawDevice is a bare MQTT client with a device's credentials, for what the
// agent would never send.
type rawDevice struct {
	c    paho.Client
	mu   sync.Mutex
	msgs map[string][][]byte
	lost chan struct{}
}

func dialDevice(t *testing.T, brokerURL string, dev resDevice) *rawDevice {
	t.Helper()
	d := &rawDevice{msgs: map[string][][]byte{}, lost: make(chan struct{})}
	var once sync.Once
	opts := paho.NewClientOptions().AddBroker(brokerURL).
		SetClientID("dev-" + dev.cfg.Device).SetUsername(dev.cfg.Device).SetPassword(dev.cfg.Secret).
		SetCleanSession(true).SetKeepAlive(30 * time.Second).SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).SetAutoReconnect(false).SetOrderMatters(true).
		SetDefaultPublishHandler(d.record).
		SetConnectionLostHandler(func(paho.Client, error) { once.Do(func() { close(d.lost) }) })
	d.c = paho.NewClient(opts)
	if tok := d.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as device %s: %v", dev.cfg.Device, tok.Error())
	}
	t.Cleanup(d.close)
	return d
}

func (d *rawDevice) record(_ paho.Client, m paho.Message) {
	d.mu.Lock()
	d.msgs[m.Topic()] = append(d.msgs[m.Topic()], append([]byte(nil), m.Payload()...))
	d.mu.Unlock()
}

func (d *rawDevice) on(topic string) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.msgs[topic])
}

func (d *rawDevice) subscribe(topic string) error {
	tok := d.c.Subscribe(topic, 1, d.record)
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("no SUBACK for %s", topic)
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		if code := st.Result()[topic]; code >= 0x80 {
			return fmt.Errorf("refused with SUBACK code %#x", code)
		}
	}
	return nil
}

func (d *rawDevice) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	if tok := d.c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish on %s: %v", topic, tok.Error())
	}
}

// publishAndForget publishes at QoS 1 and waits until the broker has dealt
// with it: acknowledged it, or cut the connection for it.
func (d *rawDevice) publishAndForget(t *testing.T, topic string, payload []byte) {
	t.Helper()
	tok := d.c.Publish(topic, 1, false, payload)
	select {
	case <-tok.Done():
	case <-d.lost:
	case <-time.After(10 * time.Second):
		t.Fatalf("the broker neither acknowledged the publish on %s nor cut the connection", topic)
	}
}

func (d *rawDevice) close() { d.c.Disconnect(100) }

func hasSnapshotWith(payloads [][]byte, airing string) bool {
	for _, p := range payloads {
		if s, err := broadcast.DecodeSnapshot(p); err == nil {
			for _, it := range s.Items {
				if it.Airing == airing {
					return true
				}
			}
		}
	}
	return false
}

func receiptUpto(payloads [][]byte) uint64 {
	var upto uint64
	for _, p := range payloads {
		var c struct {
			Type    string `json:"type"`
			UptoSeq uint64 `json:"upto_seq"`
		}
		if json.Unmarshal(p, &c) == nil && c.Type == broadcast.CmdReceipt {
			upto = max(upto, c.UptoSeq)
		}
	}
	return upto
}
