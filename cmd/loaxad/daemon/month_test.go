package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/devices/agent"
	"github.com/loaxa/loaxa/devices/agent/agenttest"
)

// TestSimulatedMonth runs December 2026 in a few seconds: the real daemon,
// the embedded broker and real agents share a fake clock that the test
// moves from one airing to the next. Hàm Rồng's device is always on; Đông
// Thọ's is off for the premiere and comes back; Nam Ngạn's never plays. The
// month must be met where it could be (make-ups) and be at risk, then
// non-compliant, where it could not.
func TestSimulatedMonth(t *testing.T) {
	if testing.Short() {
		t.Skip("the simulated month takes a while; run without -short")
	}
	ict := time.FixedZone("ICT", 7*3600)
	clock := agenttest.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, ict))
	cfg := testConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	d, err := Start(ctx, Options{Config: cfg, Logger: testLogger(t), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	admin, _ := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	c := client{t: t, base: "http://" + d.HTTPAddr()}
	root := strings.TrimSpace(string(admin))
	var lan, minh struct{ Token string }
	c.json("POST", "/api/v1/tokens", root, map[string]string{"name": "Lan", "role": "operator", "unit": "380"}, &lan, 201)
	c.json("POST", "/api/v1/tokens", root, map[string]string{"name": "Minh", "role": "operator", "unit": "380"}, &minh, 201)

	const on, late, never = "14755", "14758", "14761"
	stations := []string{on, late, never}
	cfgs := map[string]agent.Config{}
	for _, st := range stations {
		keyFile := filepath.Join(t.TempDir(), "key")
		pub, err := agent.WriteKeyFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		var dev struct{ ID, Secret string }
		c.json("POST", "/api/v1/stations/"+st+"/devices", lan.Token, map[string]string{"id": st + "-01", "public_key": agent.PublicKeyString(pub)}, &dev, 201)
		cfgs[st] = agent.Config{Device: dev.ID, Secret: dev.Secret, KeyFile: keyFile, DataDir: t.TempDir(), Player: []string{"null"}, Broker: "tcp://" + d.BrokerAddr()}
	}
	var wg sync.WaitGroup
	agentCtx, stopAgents := context.WithCancel(ctx)
	defer func() { stopAgents(); wg.Wait() }()
	running := map[string]bool{}
	startAgent := func(st string) {
		ag, err := agent.New(cfgs[st], agent.Options{Clock: clock, Logger: testLogger(t).With("device", cfgs[st].Device)})
		if err != nil {
			t.Fatal(err)
		}
		running[st] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ag.Run(agentCtx); err != nil {
				t.Errorf("agent %s: %v", st, err)
			}
		}()
	}
	startAgent(on)

	var prog struct{ ID string }
	if code := c.upload(lan.Token, map[string]string{"unit": "380", "month": "2026-12", "title": "Chuyển đổi số tháng 12/2026"}, wav(2*time.Second), &prog); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	c.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", minh.Token, nil, nil, 200)

	airings := func(st string) []broadcast.Airing {
		var list struct{ Airings []broadcast.Airing }
		c.json("GET", "/api/v1/airings?station="+st+"&month=2026-12", lan.Token, nil, &list, 200)
		return list.Airings
	}
	// waitFor polls the API (real time) until the airing reaches one of the
	// statuses: the daemon and the agents work at their own pace after
	// every move of the clock.
	waitFor := func(id string, want ...broadcast.Status) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var a broadcast.Airing
			c.json("GET", "/api/v1/airings/"+id, lan.Token, nil, &a, 200)
			for _, w := range want {
				if a.Status == w {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("airing %s at %s (%s) is %s at %v, want %v", id, a.Station, a.Kind, a.Status, clock.Now(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitMakeup := func(replaces string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			for _, a := range airings(late) {
				if a.Kind == broadcast.KindMakeup && a.Replaces == replaces {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no make-up replaces the missed airing %s", replaces)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	advanceTo := func(at time.Time) {
		if at.After(clock.Now()) {
			clock.Step(at.Sub(clock.Now()))
		}
	}
	p := broadcast.DefaultPolicy()
	for {
		// The next airing of a station whose device plays.
		var next []broadcast.Airing
		for _, st := range []string{on, late} {
			for _, a := range airings(st) {
				if a.Start.After(clock.Now()) && (len(next) == 0 || a.Start.Before(next[0].Start)) {
					next = []broadcast.Airing{a}
				} else if len(next) > 0 && a.Start.Equal(next[0].Start) {
					next = append(next, a)
				}
			}
		}
		if len(next) == 0 {
			break
		}
		start := next[0].Start
		advanceTo(start.Add(-20 * time.Minute))
		for _, a := range next {
			if running[a.Station] {
				waitFor(a.ID, broadcast.StatusReady)
			}
		}
		advanceTo(start)
		for _, a := range next {
			if running[a.Station] {
				waitFor(a.ID, broadcast.StatusStarted, broadcast.StatusAired)
			}
		}
		advanceTo(start.Add(3 * time.Second))
		for _, a := range next {
			if running[a.Station] {
				waitFor(a.ID, broadcast.StatusAired)
			}
		}
		// Past not_after + grace the loop judges what did not air.
		advanceTo(start.Add(p.StartTolerance + p.Grace + time.Minute))
		for _, a := range next {
			if !running[a.Station] {
				waitFor(a.ID, broadcast.StatusMissed)
				if a.Station == late && !running[late] {
					// The loop plans the make-up right after judging the
					// premiere missed; wait for it before moving the clock.
					waitMakeup(a.ID)
					startAgent(late) // the power is back
				}
			}
		}
	}

	type row struct {
		Station, Status string
		Aired, Pending  int
	}
	report := func() map[string]row {
		var rep struct{ Rows []row }
		c.json("GET", "/api/v1/compliance?period=2026-12&unit=380", lan.Token, nil, &rep, 200)
		out := map[string]row{}
		for _, r := range rep.Rows {
			out[r.Station] = r
		}
		return out
	}
	advanceTo(time.Date(2026, 12, 31, 21, 0, 0, 0, ict))
	rows := report()
	if r := rows[on]; r.Status != "compliant" || r.Aired != 4 {
		t.Errorf("%s (always on): %+v, want compliant with 4 aired", on, r)
	}
	if r := rows[late]; r.Status != "compliant" || r.Aired != 4 {
		t.Errorf("%s (back after the premiere): %+v, want compliant with 4 aired thanks to a make-up", late, r)
	}
	if r := rows[never]; r.Status != "at_risk" {
		t.Errorf("%s (never played): %+v, want at_risk before the month ends", never, r)
	}
	makeups := 0
	for _, a := range airings(late) {
		if a.Kind == broadcast.KindMakeup {
			makeups++
			if a.Status != broadcast.StatusAired || a.Replaces == "" {
				t.Errorf("make-up %+v", a)
			}
		}
	}
	if makeups != 1 {
		t.Errorf("%s has %d make-ups, want 1", late, makeups)
	}
	advanceTo(time.Date(2027, 1, 1, 0, 1, 0, 0, ict))
	rows = report()
	if r := rows[never]; r.Status != "non_compliant" {
		t.Errorf("%s after the month: %+v, want non_compliant", never, r)
	}
	if r := rows[on]; r.Status != "compliant" {
		t.Errorf("%s after the month: %+v", on, r)
	}
}
