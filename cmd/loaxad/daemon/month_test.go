package daemon

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/configs"
	"github.com/loaxa/loaxa/devices/agent"
	"github.com/loaxa/loaxa/devices/agent/agenttest"
)

var ict = time.FixedZone("ICT", 7*3600)

// The three stations of the simulated month: Hàm Rồng's device is always
// on; Đông Thọ's is off for the premiere and comes back; Nam Ngạn's never
// plays.
const onStation, lateStation, neverStation = "14755", "14758", "14761"

// month runs December 2026 in a few seconds: the real daemon, the embedded
// broker and real agents share a fake clock that the test moves from one
// airing to the next.
type month struct {
	t       *testing.T
	ctx     context.Context
	clock   *agenttest.FakeClock
	cfg     configs.Config
	d       *Daemon
	c       client
	lan     string
	policy  broadcast.Policy
	agents  map[string]agent.Config
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
}

func newMonth(t *testing.T) *month {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	m := &month{t: t, ctx: ctx, clock: agenttest.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, ict)), cfg: testConfig(t),
		policy: broadcast.DefaultPolicy(), agents: map[string]agent.Config{}, running: map[string]context.CancelFunc{}}
	t.Cleanup(func() {
		for _, stop := range m.running {
			stop()
		}
		m.wg.Wait()
		if m.d != nil {
			m.d.Close()
		}
		cancel()
	})
	m.startDaemon()
	admin, _ := os.ReadFile(filepath.Join(m.cfg.DataDir, "admin.token"))
	root := strings.TrimSpace(string(admin))
	var lan, minh struct{ Token string }
	m.c.json("POST", "/api/v1/tokens", root, map[string]string{"name": "Lan", "role": "operator", "unit": "380"}, &lan, 201)
	m.c.json("POST", "/api/v1/tokens", root, map[string]string{"name": "Minh", "role": "operator", "unit": "380"}, &minh, 201)
	m.lan = lan.Token
	for _, st := range []string{onStation, lateStation, neverStation} {
		keyFile := filepath.Join(t.TempDir(), "key")
		pub, err := agent.WriteKeyFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		var dev struct{ ID, Secret string }
		m.c.json("POST", "/api/v1/stations/"+st+"/devices", lan.Token, map[string]string{"id": st + "-01", "public_key": agent.PublicKeyString(pub)}, &dev, 201)
		m.agents[st] = agent.Config{Device: dev.ID, Secret: dev.Secret, KeyFile: keyFile, DataDir: t.TempDir(), Player: []string{"null"}}
	}
	var prog struct{ ID string }
	if code := m.c.upload(lan.Token, map[string]string{"unit": "380", "month": "2026-12", "title": "Chuyển đổi số tháng 12/2026"}, wav(2*time.Second), &prog); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	m.c.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", minh.Token, nil, nil, 200)
	return m
}

func (m *month) startDaemon() {
	d, err := Start(m.ctx, Options{Config: m.cfg, Logger: testLogger(m.t), Clock: m.clock})
	if err != nil {
		m.t.Fatal(err)
	}
	m.d = d
	m.c = client{t: m.t, base: "http://" + d.HTTPAddr()}
}

func (m *month) startAgent(st string) {
	cfg := m.agents[st]
	cfg.Broker = "tcp://" + m.d.BrokerAddr()
	ag, err := agent.New(cfg, agent.Options{Clock: m.clock, Logger: testLogger(m.t).With("device", cfg.Device)})
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(m.ctx)
	m.running[st] = stop
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := ag.Run(ctx); err != nil {
			m.t.Errorf("agent %s: %v", st, err)
		}
	}()
}

// restartDaemon stops the daemon and starts it again on the same data. A
// crash restarts from a copy of the files taken while the daemon ran, as a
// SIGKILL leaves them: only what bbolt had committed. The agents go down and
// come back with it (they follow the broker's new address), keeping their
// own state.
func (m *month) restartDaemon(crash bool) {
	var stations []string
	for st, stop := range m.running {
		stations = append(stations, st)
		stop()
	}
	m.wg.Wait()
	m.running = map[string]context.CancelFunc{}
	if crash {
		// What a SIGKILL leaves is what bbolt had committed: the store's hot
		// backup is exactly that. (Copying the live file byte by byte is not:
		// a commit in the middle of the copy tears it.)
		dir := m.t.TempDir()
		var tarball bytes.Buffer
		if err := m.d.Store().Backup(m.ctx, &tarball); err != nil {
			m.t.Fatal(err)
		}
		untar(m.t, &tarball, dir)
		m.d.Close()
		m.cfg.DataDir = dir
	} else if err := m.d.Close(); err != nil {
		m.t.Fatal(err)
	}
	m.startDaemon()
	for _, st := range stations {
		m.startAgent(st)
	}
}

func untar(t *testing.T, r io.Reader, dir string) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func (m *month) airings(st string) []broadcast.Airing {
	var list struct{ Airings []broadcast.Airing }
	m.c.json("GET", "/api/v1/airings?station="+st+"&month=2026-12", m.lan, nil, &list, 200)
	return list.Airings
}

// await polls the API (real time) until cond holds: the daemon and the
// agents work at their own pace after every move of the clock.
func (m *month) await(what string, cond func() bool) {
	m.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			m.t.Fatalf("at %v: timed out waiting for %s", m.clock.Now(), what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *month) awaitStatus(a broadcast.Airing, want ...broadcast.Status) {
	m.t.Helper()
	m.await(fmt.Sprintf("airing %s (%s at %s) to be %v", a.ID, a.Kind, a.Station, want), func() bool {
		var got broadcast.Airing
		m.c.json("GET", "/api/v1/airings/"+a.ID, m.lan, nil, &got, 200)
		for _, w := range want {
			if got.Status == w {
				return true
			}
		}
		return false
	})
}

func (m *month) advanceTo(at time.Time) {
	if at.After(m.clock.Now()) {
		m.clock.Step(at.Sub(m.clock.Now()))
	}
}

// run plays the month up to until: at every airing of a station whose device
// plays, the device fetches, starts and finishes it; past not_after + grace
// the daemon judges what did not air. midway, if set, runs once the clock
// has passed it.
func (m *month) run(until time.Time, midway time.Time, atMidway func()) {
	for {
		var next []broadcast.Airing
		for _, st := range []string{onStation, lateStation} {
			for _, a := range m.airings(st) {
				switch {
				case !a.Start.After(m.clock.Now()) || !a.Start.Before(until):
				case len(next) == 0 || a.Start.Before(next[0].Start):
					next = []broadcast.Airing{a}
				case a.Start.Equal(next[0].Start):
					next = append(next, a)
				}
			}
		}
		if len(next) == 0 {
			break
		}
		start := next[0].Start
		if atMidway != nil && start.After(midway) {
			m.advanceTo(midway)
			atMidway()
			atMidway = nil
			continue // the plan must be the same after it: look again
		}
		m.advanceTo(start.Add(-20 * time.Minute))
		for _, a := range next {
			if m.running[a.Station] != nil {
				m.awaitStatus(a, broadcast.StatusReady)
			}
		}
		m.advanceTo(start)
		for _, a := range next {
			if m.running[a.Station] != nil {
				m.awaitStatus(a, broadcast.StatusStarted, broadcast.StatusAired)
			}
		}
		m.advanceTo(start.Add(3 * time.Second))
		for _, a := range next {
			if m.running[a.Station] != nil {
				m.awaitStatus(a, broadcast.StatusAired)
			}
		}
		m.advanceTo(start.Add(m.policy.StartTolerance + m.policy.Grace + time.Minute))
		for _, a := range next {
			if m.running[a.Station] != nil {
				continue
			}
			m.awaitStatus(a, broadcast.StatusMissed)
			if a.Station == lateStation {
				// The loop plans the make-up right after judging the
				// premiere missed; wait for it before moving the clock.
				m.await("a make-up for "+a.ID, func() bool {
					for _, b := range m.airings(lateStation) {
						if b.Kind == broadcast.KindMakeup && b.Replaces == a.ID {
							return true
						}
					}
					return false
				})
				m.startAgent(lateStation) // the power is back
			}
		}
	}
	m.advanceTo(until)
}

type complianceRow struct {
	Station, Status string
	Aired, Pending  int
}

func (m *month) report() map[string]complianceRow {
	var rep struct{ Rows []complianceRow }
	m.c.json("GET", "/api/v1/compliance?period=2026-12&unit=380", m.lan, nil, &rep, 200)
	out := map[string]complianceRow{}
	for _, r := range rep.Rows {
		out[r.Station] = r
	}
	return out
}

// settle waits until the daemon's loop has judged every airing whose
// not_after + grace has passed: it works after each move of the clock, at
// its own pace.
func (m *month) settle() {
	m.t.Helper()
	m.await("the loop to judge every airing past not_after + grace", func() bool {
		for _, st := range []string{onStation, lateStation, neverStation} {
			for _, a := range m.airings(st) {
				if !a.Status.Final() && a.NotAfter.Add(m.policy.Grace).Before(m.clock.Now()) {
					return false
				}
			}
		}
		return true
	})
	// A verdict's make-up is planned in the same pass of the loop, a
	// moment after the verdict is stored.
	ctx, cancel := context.WithTimeout(m.ctx, 20*time.Second)
	defer cancel()
	if err := m.d.sched.Settled(ctx); err != nil {
		m.t.Fatalf("at %v: the scheduler's loop did not finish a pass: %v", m.clock.Now(), err)
	}
}

// plan is the month's airings of the three stations as a comparable text:
// what a restart must leave exactly as it was.
func (m *month) plan() string {
	var lines []string
	for _, st := range []string{onStation, lateStation, neverStation} {
		for _, a := range m.airings(st) {
			// planned and sent differ only by whether the loop has yet
			// published them, which a restart redoes at its own pace.
			status := a.Status
			if status == broadcast.StatusSent {
				status = broadcast.StatusPlanned
			}
			lines = append(lines, fmt.Sprintf("%s %s %s %s %s %s", a.ID, a.Station, a.Kind, a.Start.UTC().Format(time.RFC3339), status, a.Replaces))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// check asserts the month's outcome; it is the same with or without a
// restart in the middle.
func (m *month) check() {
	t := m.t
	m.run(time.Date(2026, 12, 31, 21, 0, 0, 0, ict), time.Time{}, nil)
	rows := m.report()
	if r := rows[onStation]; r.Status != "compliant" || r.Aired != 4 {
		t.Errorf("%s (always on): %+v, want compliant with 4 aired", onStation, r)
	}
	if r := rows[lateStation]; r.Status != "compliant" || r.Aired != 4 {
		t.Errorf("%s (back after the premiere): %+v, want compliant with 4 aired thanks to a make-up", lateStation, r)
	}
	if r := rows[neverStation]; r.Status != "at_risk" {
		t.Errorf("%s (never played): %+v, want at_risk before the month ends", neverStation, r)
	}
	makeups := 0
	for _, a := range m.airings(lateStation) {
		if a.Kind == broadcast.KindMakeup {
			makeups++
			if a.Status != broadcast.StatusAired || a.Replaces == "" {
				t.Errorf("make-up %+v", a)
			}
		}
	}
	if makeups != 1 {
		t.Errorf("%s has %d make-ups, want 1", lateStation, makeups)
	}
	// Every event is in the as-run log once, and each aired airing has one
	// finished event per device.
	var asrun struct{ Entries []broadcast.AsRunEntry }
	m.c.json("GET", "/api/v1/asrun", m.lan, nil, &asrun, 200)
	seen, finished := map[string]bool{}, map[string]int{}
	for _, e := range asrun.Entries {
		k := fmt.Sprintf("%s/%d", e.Device, e.DeviceSeq)
		if seen[k] {
			t.Errorf("%s logged twice", k)
		}
		seen[k] = true
		if e.Event == broadcast.EventFinished {
			finished[e.Airing]++
		}
	}
	for a, n := range finished {
		if n != 1 {
			t.Errorf("airing %s has %d finished events, want 1", a, n)
		}
	}
	m.advanceTo(time.Date(2027, 1, 1, 0, 1, 0, 0, ict))
	rows = m.report()
	if r := rows[neverStation]; r.Status != "non_compliant" {
		t.Errorf("%s after the month: %+v, want non_compliant", neverStation, r)
	}
	if r := rows[onStation]; r.Status != "compliant" {
		t.Errorf("%s after the month: %+v", onStation, r)
	}
}

// TestSimulatedMonth shows make-ups planned and the month met where it could
// be, at risk and then non-compliant where it could not.
func TestSimulatedMonth(t *testing.T) {
	m := newMonth(t)
	m.startAgent(onStation)
	m.check()
}

// TestRestartMidMonth stops the daemon on the 15th, gracefully and as a
// crash, and starts it again: the plan is exactly what it was, and the
// month ends as it would have without the restart.
func TestRestartMidMonth(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "graceful", true: "crash"}[crash], func(t *testing.T) {
			m := newMonth(t)
			m.startAgent(onStation)
			m.run(time.Date(2026, 12, 15, 12, 0, 0, 0, ict), time.Time{}, nil)
			m.settle()
			before := m.plan()
			m.restartDaemon(crash)
			// The restarted loop re-judges two months back: nothing may be
			// planned twice or judged again.
			m.advanceTo(m.clock.Now().Add(time.Hour))
			m.settle()
			if after := m.plan(); after != before {
				t.Fatalf("the plan changed across the restart:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			m.check()
		})
	}
}
