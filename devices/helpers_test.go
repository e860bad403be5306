package devices

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/storage"
)

// t0 is the tests' "now": a morning in Thanh Hoa.
var t0 = time.Date(2026, 3, 2, 6, 0, 0, 0, time.FixedZone("ICT", 7*3600))

const testRoot = "loaxa/v1"

// eventLog adapts *storage.Store to EventLog, as cmd/loaxad does: the record
// types have the same fields, so plain conversions do.
type eventLog struct{ *storage.Store }

func (l eventLog) AppendEvent(ctx context.Context, r EventRecord) (Appended, error) {
	a, err := l.Store.AppendEvent(ctx, storage.EventRecord(r))
	return Appended(a), err
}

func (l eventLog) DeviceSeq(device string) (DeviceSeqState, error) {
	s, err := l.Store.DeviceSeq(device)
	return DeviceSeqState(s), err
}

// testDevice is a registered device with its credentials.
type testDevice struct {
	broadcast.Device
	Secret string
	Key    ed25519.PrivateKey // nil for a device without a registered key
}

// fixture is a real store with two stations, their devices and airings.
type fixture struct {
	store *storage.Store
	// a and b sign their events (b at another station); c is disabled;
	// u has no registered key and sends unsigned events.
	a, b, c, u testDevice
}

const (
	airingA = "01JAIRINGA0000000000000001" // at station 38001
	airingB = "01JAIRINGB0000000000000001" // at station 38002
)

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	s, err := storage.Open(tb.TempDir(), storage.Options{Policy: broadcast.DefaultPolicy(), Now: func() time.Time { return t0 }})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	units := []broadcast.Unit{
		{Code: "38", Name: "Thanh Hóa", Level: broadcast.LevelProvince, Path: "38"},
		{Code: "38001", Name: "Xã A", Level: broadcast.LevelCommune, Parent: "38", Path: "38/38001"},
		{Code: "38002", Name: "Xã B", Level: broadcast.LevelCommune, Parent: "38", Path: "38/38002"},
	}
	stations := []broadcast.Station{
		{ID: "38001", Unit: "38001", Name: "Xã A", Path: "38/38001", Timezone: broadcast.DefaultTimezone},
		{ID: "38002", Unit: "38002", Name: "Xã B", Path: "38/38002", Timezone: broadcast.DefaultTimezone},
	}
	if _, err := s.ImportUnits(ctx, units, stations, nil); err != nil {
		tb.Fatalf("import units: %v", err)
	}
	fx := &fixture{store: s}
	mk := func(id, station string, signed, disabled bool) testDevice {
		d := testDevice{Secret: broadcast.NewSecret()}
		d.Device = broadcast.Device{ID: id, Station: station, SecretHash: broadcast.HashSecret(d.Secret), Disabled: disabled}
		if signed {
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				tb.Fatal(err)
			}
			d.PublicKey, d.Key = pub, priv
		}
		if err := s.AddDevice(ctx, d.Device, nil); err != nil {
			tb.Fatalf("add device %s: %v", id, err)
		}
		return d
	}
	fx.a = mk("38001-01", "38001", true, false)
	fx.b = mk("38002-01", "38002", true, false)
	fx.c = mk("38001-02", "38001", true, true)
	fx.u = mk("38001-03", "38001", false, false)
	for _, a := range []*broadcast.Airing{testAiring(airingA, "38001"), testAiring(airingB, "38002")} {
		if err := s.PutAirings(ctx, []*broadcast.Airing{a}, nil); err != nil {
			tb.Fatalf("put airing: %v", err)
		}
	}
	return fx
}

func testAiring(id, station string) *broadcast.Airing {
	start := t0.Add(30 * time.Minute)
	return &broadcast.Airing{
		ID: id, Programme: "01JPROG0000000000000000001", Station: station, Month: broadcast.MonthOf(start, start.Location()),
		Kind: broadcast.KindPremiere, Title: "Chuyển đổi số", Start: start, NotAfter: start.Add(15 * time.Minute),
		Audio:  broadcast.Audio{SHA256: strings.Repeat("ab", 32), Size: 1000, Type: "audio/mpeg", DurationMS: 600_000},
		Status: broadcast.StatusSent,
	}
}

// finished is a valid finished event of d for airing.
func finished(d testDevice, seq uint64, airing string) broadcast.Event {
	return broadcast.Event{
		V: 1, ID: broadcast.NewID(t0.Add(time.Duration(seq) * time.Second)), Device: d.ID, Seq: seq, Airing: airing, Rev: 1,
		Event: broadcast.EventFinished, At: t0.Add(46 * time.Minute), StartedAt: t0.Add(30 * time.Minute),
		PlayedMS: 600_000, SHA256: strings.Repeat("ab", 32), ClockSynced: true,
	}
}

func sign(tb testing.TB, d testDevice, ev broadcast.Event) []byte {
	tb.Helper()
	p, err := broadcast.SignEvent(ev, d.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// logBuffer collects the hub's log so that tests can check what it said.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startBroker runs an embedded broker on a free loopback port.
func startBroker(tb testing.TB, reg DeviceRegistry) (*Broker, string, string) {
	tb.Helper()
	user, pass := "loaxad-root", broadcast.NewSecret()
	b, err := NewBroker(BrokerOptions{Listen: "127.0.0.1:0", TopicRoot: testRoot, Devices: reg, RootUser: user, RootPassword: pass})
	if err != nil {
		tb.Fatal(err)
	}
	if err := b.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b, user, pass
}

// hubEnv is a running hub and what the test needs around it.
type hubEnv struct {
	hub    *Hub
	reg    *prometheus.Registry
	logs   *logBuffer
	online chan string
	url    string
}

func startHub(tb testing.TB, fx *fixture, url, user, pass string, tweak func(*HubOptions)) *hubEnv {
	tb.Helper()
	env := &hubEnv{reg: prometheus.NewPedanticRegistry(), logs: &logBuffer{}, online: make(chan string, 100), url: url}
	opts := HubOptions{
		BrokerURL: url, Username: user, Password: pass, ClientID: "loaxad-test", TopicRoot: testRoot,
		Events: eventLog{fx.store}, Devices: fx.store, Logger: env.logs.logger(), Registerer: env.reg,
		Workers: 4, PublishTimeout: 5 * time.Second,
		OnOnline: func(d string) { env.online <- d },
	}
	if tweak != nil {
		tweak(&opts)
	}
	h, err := NewHub(opts)
	if err != nil {
		tb.Fatal(err)
	}
	env.hub = h
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("hub.Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			tb.Errorf("hub.Run did not return")
		}
	})
	waitFor(tb, 10*time.Second, "hub connected", h.Connected)
	return env
}

// waitFor polls cond; brokers and the hub work asynchronously.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// simDevice is a device simulated by a paho client, as the agent would be.
type simDevice struct {
	testDevice
	client paho.Client
	conn   net.Conn // the raw connection, to cut it and fire the last will
	cmds   chan broadcast.Command
	scheds chan broadcast.Snapshot
	all    chan paho.Message // everything received, on any topic
	mu     sync.Mutex
}

type deviceConnOpts struct {
	user, secret, clientID string
	will                   string // will topic; "" for the device's own status topic
}

// connectDevice connects d to the broker at url; it returns the connect error
// instead of failing so that refusals can be tested.
func connectDevice(tb testing.TB, url string, d testDevice, o deviceConnOpts) (*simDevice, error) {
	tb.Helper()
	sd := &simDevice{testDevice: d, cmds: make(chan broadcast.Command, 100), scheds: make(chan broadcast.Snapshot, 100), all: make(chan paho.Message, 1000)}
	if o.user == "" {
		o.user = d.ID
	}
	if o.secret == "" {
		o.secret = d.Secret
	}
	if o.clientID == "" {
		o.clientID = "dev-" + d.ID
	}
	tp, _ := newTopics(testRoot)
	if o.will == "" {
		o.will = tp.device(d.ID, kindStatus)
	}
	co := paho.NewClientOptions().AddBroker(url).SetClientID(o.clientID).SetUsername(o.user).SetPassword(o.secret).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectTimeout(5*time.Second).SetKeepAlive(30*time.Second).
		SetWill(o.will, fmt.Sprintf(`{"v":1,"device":%q,"state":"offline"}`, d.ID), 1, true).
		SetCustomOpenConnectionFn(func(uri *neturl.URL, _ paho.ClientOptions) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", uri.Host, 5*time.Second)
			sd.mu.Lock()
			sd.conn = c
			sd.mu.Unlock()
			return c, err
		}).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			select {
			case sd.all <- m:
			default:
			}
			if strings.HasSuffix(m.Topic(), "/"+kindSchedule) {
				if s, err := broadcast.DecodeSnapshot(m.Payload()); err == nil {
					sd.scheds <- s
				}
				return
			}
			if c, err := broadcast.DecodeCommand(m.Payload()); err == nil {
				sd.cmds <- c
			}
		})
	sd.client = paho.NewClient(co)
	tok := sd.client.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	tb.Cleanup(func() { sd.client.Disconnect(100) })
	return sd, nil
}

func mustConnectDevice(tb testing.TB, url string, d testDevice) *simDevice {
	tb.Helper()
	sd, err := connectDevice(tb, url, d, deviceConnOpts{})
	if err != nil {
		tb.Fatalf("connect device %s: %v", d.ID, err)
	}
	tp, _ := newTopics(testRoot)
	if code := subscribe(tb, sd.client, tp.device(d.ID, kindCmd)); code != 1 {
		tb.Fatalf("device %s: subscribe to its cmd topic: code %#x", d.ID, code)
	}
	if code := subscribe(tb, sd.client, tp.device(d.ID, kindSchedule)); code != 1 {
		tb.Fatalf("device %s: subscribe to its schedule topic: code %#x", d.ID, code)
	}
	return sd
}

// subscribe returns the broker's return code for one filter (0x80: refused).
func subscribe(tb testing.TB, c paho.Client, filter string) byte {
	tb.Helper()
	tok := c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(5 * time.Second) {
		tb.Fatalf("subscribe %s: timed out", filter)
	}
	if err := tok.Error(); err != nil {
		return 0x80
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (sd *simDevice) publish(tb testing.TB, topic string, payload []byte, retained bool) error {
	tb.Helper()
	tok := sd.client.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		return errors.New("publish timed out")
	}
	return tok.Error()
}

func (sd *simDevice) sendEvent(tb testing.TB, payload []byte) {
	tb.Helper()
	tp, _ := newTopics(testRoot)
	if err := sd.publish(tb, tp.device(sd.ID, kindEvents), payload, false); err != nil {
		tb.Fatalf("device %s: publish event: %v", sd.ID, err)
	}
}

func (sd *simDevice) sendStatus(tb testing.TB, st broadcast.DeviceStatus) {
	tb.Helper()
	tp, _ := newTopics(testRoot)
	p, _ := json.Marshal(st)
	if err := sd.publish(tb, tp.device(sd.ID, kindStatus), p, true); err != nil {
		tb.Fatalf("device %s: publish status: %v", sd.ID, err)
	}
}

// cut drops the TCP connection without a DISCONNECT, as a power cut would:
// the broker then publishes the last will.
func (sd *simDevice) cut() {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.conn != nil {
		_ = sd.conn.Close()
	}
}

func (sd *simDevice) nextCmd(tb testing.TB, typ string) broadcast.Command {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case c := <-sd.cmds:
			if c.Type == typ {
				return c
			}
		case <-timeout:
			tb.Fatalf("device %s: no %s command", sd.ID, typ)
		}
	}
}

// noCmd checks that nothing arrives on the device's cmd topic for a while.
func (sd *simDevice) noCmd(tb testing.TB, d time.Duration) {
	tb.Helper()
	select {
	case c := <-sd.cmds:
		tb.Fatalf("device %s: unexpected command %+v", sd.ID, c)
	case <-time.After(d):
	}
}

// gatherAndLint is testutil.GatherAndLint without the rest of testutil, which
// imports github.com/kylelemons/godebug, a module go.sum does not have yet.
func gatherAndLint(g prometheus.Gatherer) ([]promlint.Problem, int, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, 0, err
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	return problems, len(mfs), err
}

// toFloat64 reads a counter or a gauge, as testutil.ToFloat64 does.
func toFloat64(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	var ms []prometheus.Metric
	for m := range ch {
		ms = append(ms, m)
	}
	if len(ms) != 1 {
		panic(fmt.Sprintf("toFloat64: %d metrics collected, want 1", len(ms)))
	}
	var m dto.Metric
	if err := ms[0].Write(&m); err != nil {
		panic(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	panic("toFloat64: neither a counter nor a gauge")
}
