package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/broadcast/audio/audiotest"
	"github.com/loaxa/loaxa/configs"
	"github.com/loaxa/loaxa/devices"
	"github.com/loaxa/loaxa/devices/agent"
	"github.com/loaxa/loaxa/devices/mosquittotest"
)

// shiftedClock is real time moved to a chosen instant: time flows as usual
// (devices really wait for their airings) but the test decides where in the
// month it is, so that it never depends on the day CI runs.
type shiftedClock struct{ offset time.Duration }

func newShiftedClock(at time.Time) shiftedClock             { return shiftedClock{offset: time.Until(at)} }
func (c shiftedClock) Now() time.Time                       { return time.Now().Add(c.offset) }
func (shiftedClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// wav is the test programme's audio.
func wav(d time.Duration) []byte { return audiotest.WAV(d) }

// client talks to the daemon's API as an operator's script would.
type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path, token string, body io.Reader, contentType string, out any) int {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	if resp.StatusCode >= 300 {
		c.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode
}

func (c client) json(method, path, token string, in, out any, want int) {
	c.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	if got := c.do(method, path, token, body, "application/json", out); got != want {
		c.t.Fatalf("%s %s: status %d, want %d", method, path, got, want)
	}
}

func (c client) upload(token string, fields map[string]string, audio []byte, out any) int {
	c.t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("audio", "programme.wav")
	fw.Write(audio)
	mw.Close()
	return c.do("POST", "/api/v1/programmes", token, &b, mw.FormDataContentType(), out)
}

// testConfig is the daemon's defaults on free loopback ports in a temp dir.
func testConfig(t *testing.T) configs.Config {
	cfg := configs.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.PublicURL = "" // derived from the listener
	cfg.MQTT.Embedded.Listen = "127.0.0.1:0"
	cfg.UnitsCSV = "../../../configs/data/thanh-hoa-units-2025-03.csv"
	return cfg
}

func testLogger(testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func TestEndToEndEmbeddedBroker(t *testing.T) {
	runEndToEnd(t, testConfig(t), nil)
}

// runEndToEnd is the first full path: upload → approve → plan → snapshot
// over MQTT → two real agents play → their signed events land in the
// as-run log → the month's compliance counts them. beforeAgents runs once the
// devices are registered (the Mosquitto test writes its password file there).
func runEndToEnd(t *testing.T, cfg configs.Config, beforeAgents func(d *Daemon) string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ict := time.FixedZone("ICT", 7*3600)
	clock := newShiftedClock(time.Date(2026, 12, 10, 8, 0, 0, 0, ict))
	d, err := Start(ctx, Options{Config: cfg, Logger: testLogger(t), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatalf("the first start must leave the admin token in data_dir: %v", err)
	}
	c := client{t: t, base: "http://" + d.HTTPAddr()}
	root := strings.TrimSpace(string(admin))

	// Two operators of Thành phố Thanh Hóa (district 380): one uploads, the
	// other approves.
	var lan, minh struct{ Token string }
	c.json("POST", "/api/v1/tokens", root, map[string]string{"name": "Lan", "role": "operator", "unit": "380"}, &lan, 201)
	c.json("POST", "/api/v1/tokens", root, map[string]string{"name": "Minh", "role": "operator", "unit": "380"}, &minh, 201)

	stations := []string{"14755", "14758"} // Phường Hàm Rồng, Phường Đông Thọ
	agents := make([]agent.Config, len(stations))
	for i, st := range stations {
		keyFile := filepath.Join(t.TempDir(), "key")
		pub, err := agent.WriteKeyFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		var dev struct{ ID, Station, Secret string }
		c.json("POST", "/api/v1/stations/"+st+"/devices", lan.Token, map[string]string{"id": st + "-01", "public_key": agent.PublicKeyString(pub)}, &dev, 201)
		agents[i] = agent.Config{Device: dev.ID, Secret: dev.Secret, KeyFile: keyFile, DataDir: t.TempDir(), Player: []string{"null"}}
	}
	broker := "tcp://" + d.BrokerAddr()
	if beforeAgents != nil {
		broker = beforeAgents(d)
	}

	audio := wav(2 * time.Second)
	var prog struct {
		ID         string
		DurationMS int64 `json:"duration_ms"`
		Format     string
		Status     string
	}
	if code := c.upload(lan.Token, map[string]string{"unit": "380", "month": "2026-12", "title": "Chuyển đổi số tháng 12/2026"}, audio, &prog); code != 201 {
		t.Fatalf("upload: %d", code)
	}
	if prog.Format != "wav" || prog.DurationMS != 2000 || prog.Status != "draft" {
		t.Fatalf("uploaded programme %+v, want a 2000 ms wav draft", prog)
	}
	var refused struct{ Error struct{ Code string } }
	if code := c.do("POST", "/api/v1/programmes/"+prog.ID+"/approve", lan.Token, nil, "", &refused); code != 403 {
		t.Fatalf("the uploader approved their own programme: %d", code)
	}
	var approved struct {
		Status string
		Plan   struct {
			Stations int `json:"stations"`
			Planned  int `json:"airings_planned"`
		}
	}
	c.json("POST", "/api/v1/programmes/"+prog.ID+"/approve", minh.Token, nil, &approved, 200)
	if approved.Status != "approved" || approved.Plan.Planned != 4*approved.Plan.Stations || approved.Plan.Stations < 2 {
		t.Fatalf("approve: %+v, want 4 airings at each station of district 380", approved)
	}

	// Each station's first airing moves to a few seconds from now.
	start := clock.Now().Add(6 * time.Second).Truncate(time.Second)
	moved := map[string]string{} // station → airing
	for _, st := range stations {
		var list struct{ Airings []broadcast.Airing }
		c.json("GET", "/api/v1/airings?station="+st+"&month=2026-12", lan.Token, nil, &list, 200)
		if len(list.Airings) != 4 {
			t.Fatalf("station %s has %d airings, want 4", st, len(list.Airings))
		}
		var a broadcast.Airing
		c.json("PATCH", "/api/v1/airings/"+list.Airings[0].ID, lan.Token, map[string]string{"start": start.Format(time.RFC3339)}, &a, 200)
		if !a.Start.Equal(start) {
			t.Fatalf("moved airing starts at %v, want %v", a.Start, start)
		}
		moved[st] = a.ID
	}

	var wg sync.WaitGroup
	agentCtx, stopAgents := context.WithCancel(ctx)
	defer func() { stopAgents(); wg.Wait() }()
	for _, cfg := range agents {
		cfg.Broker = broker
		ag, err := agent.New(cfg, agent.Options{Clock: clock, Logger: testLogger(t).With("device", cfg.Device)})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ag.Run(agentCtx); err != nil {
				t.Errorf("agent %s: %v", cfg.Device, err)
			}
		}()
	}

	// Wait until both moved airings are aired, as the API reports them.
	deadline := time.Now().Add(60 * time.Second)
	for _, st := range stations {
		for {
			var a broadcast.Airing
			c.json("GET", "/api/v1/airings/"+moved[st], lan.Token, nil, &a, 200)
			if a.Status == broadcast.StatusAired {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("airing %s at station %s is %s after 60 s, want aired", a.ID, st, a.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// The as-run log holds each device's finished event exactly once, with
	// the exact signed payload.
	var asrun struct{ Entries []broadcast.AsRunEntry }
	c.json("GET", "/api/v1/asrun", lan.Token, nil, &asrun, 200)
	finished := map[string]int{}
	seen := map[string]bool{}
	for _, e := range asrun.Entries {
		key := fmt.Sprintf("%s/%d", e.Device, e.DeviceSeq)
		if seen[key] {
			t.Errorf("device %s seq %d logged twice", e.Device, e.DeviceSeq)
		}
		seen[key] = true
		if e.Event == broadcast.EventFinished {
			finished[e.Device+"/"+e.Airing]++
		}
	}
	for i, st := range stations {
		if n := finished[agents[i].Device+"/"+moved[st]]; n != 1 {
			t.Errorf("device %s: %d finished events for airing %s, want exactly 1 (as-run: %d entries)", agents[i].Device, n, moved[st], len(asrun.Entries))
		}
	}

	var verify struct {
		OK       bool
		Entries  int
		Problems []any
	}
	c.json("GET", "/api/v1/audit/verify", root, nil, &verify, 200)
	if !verify.OK || verify.Entries != len(asrun.Entries) {
		t.Errorf("verify: %+v, want ok over %d entries", verify, len(asrun.Entries))
	}

	var report struct {
		Rows []struct {
			Station, Status string
			Aired, Required int
		}
	}
	c.json("GET", "/api/v1/compliance?period=2026-12&unit=380&format=json", lan.Token, nil, &report, 200)
	aired := map[string]int{}
	for _, r := range report.Rows {
		aired[r.Station] = r.Aired
		if r.Required != 4 || r.Status != "in_progress" {
			t.Errorf("station %s: %+v, want in_progress of 4", r.Station, r)
		}
	}
	for _, st := range stations {
		if aired[st] != 1 {
			t.Errorf("station %s: %d aired in 2026-12, want 1", st, aired[st])
		}
	}
}

// TestEndToEndMosquitto runs the same path with Mosquitto 2.0 as the broker,
// configured by the files loaxad writes for it.
func TestEndToEndMosquitto(t *testing.T) {
	mosquittotest.Binary(t)
	cfg := testConfig(t)
	port := mosquittotest.FreePort(t)
	cfg.MQTT.Embedded.Enabled = false
	cfg.MQTT.URL = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	cfg.MQTT.Username, cfg.MQTT.Password = "loaxad", broadcast.NewSecret()
	runEndToEnd(t, cfg, func(d *Daemon) string {
		devs, err := d.Store().Devices("")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := devices.WriteMosquittoConfig(dir, devs, cfg.MQTT.Username, cfg.MQTT.Password, cfg.MQTT.TopicRoot); err != nil {
			t.Fatal(err)
		}
		return "tcp://" + mosquittotest.Start(t, dir, port)
	})
}

// TestEmergencyBroadcast: an operator's emergency plays at once on the
// devices below the unit, and its events are evidence like any other.
func TestEmergencyBroadcast(t *testing.T) {
	f := startDaemon(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	pub, err := agent.WriteKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var dev struct{ ID, Secret string }
	f.c.json("POST", "/api/v1/stations/14755/devices", f.lan, map[string]string{"id": "14755-01", "public_key": agent.PublicKeyString(pub)}, &dev, 201)
	ag, err := agent.New(agent.Config{Device: dev.ID, Secret: dev.Secret, KeyFile: keyFile, DataDir: t.TempDir(), Player: []string{"null"}, Broker: "tcp://" + f.d.BrokerAddr()},
		agent.Options{Clock: f.clock, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ag.Run(ctx) }()
	defer func() { stop(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for !ag.Stats().Connected {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}

	var e apiError
	var res struct {
		Programme struct{ ID string }
		Broadcast struct{ Stations, Devices, Sent int }
	}
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	_ = mw.WriteField("unit", "380")
	_ = mw.WriteField("title", "Cảnh báo lũ khẩn cấp")
	fw, _ := mw.CreateFormFile("audio", "canh-bao.wav")
	fw.Write(wav(time.Second))
	mw.Close()
	body := b.Bytes()
	if code := f.c.do("POST", "/api/v1/emergency", f.auditor, bytes.NewReader(body), mw.FormDataContentType(), &e); code != 403 {
		t.Fatalf("an auditor sent an emergency: %d", code)
	}
	if code := f.c.do("POST", "/api/v1/emergency", f.lan, bytes.NewReader(body), mw.FormDataContentType(), &res); code != 201 {
		t.Fatalf("emergency: %d", code)
	}
	if res.Broadcast.Devices != 1 || res.Broadcast.Sent != 1 {
		t.Fatalf("emergency %+v, want the one device below 380", res.Broadcast)
	}
	for {
		var list struct{ Airings []broadcast.Airing }
		f.c.json("GET", "/api/v1/airings?station=14755&programme="+res.Programme.ID, f.lan, nil, &list, 200)
		if len(list.Airings) == 1 && list.Airings[0].Status == broadcast.StatusAired {
			if list.Airings[0].Kind != broadcast.KindEmergency {
				t.Fatalf("kind %s", list.Airings[0].Kind)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the emergency did not air: %+v", list.Airings)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
