// Package agenttest holds what the device agent's tests need around it: a
// real MQTT broker on loopback (mochi-mqtt, no storage hook), an audio server
// that speaks the daemon's download contract (Basic auth, ETag, Range), a
// stand-in for the daemon's device side over paho, and a fake clock.
//
// It is for tests only; nothing in a device or the daemon imports it.
package agenttest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/loaxa/loaxa/broadcast"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Broker is an in-process mochi-mqtt broker listening on 127.0.0.1.
type Broker struct {
	t    testing.TB
	mu   sync.Mutex
	addr string
	srv  *mochi.Server
	ln   *trackingListener
}

// trackingListener remembers every connection it accepted, so that Stop
// can cut them all at once, as a crashing broker would, and refuses new
// ones from then on.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	closed bool
	conns  []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns = append(l.conns, c)
	return c, nil
}

func (l *trackingListener) cut() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	_ = l.Listener.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}

// StartBroker starts a broker on a free loopback port; it stops with the test.
func StartBroker(t testing.TB) *Broker {
	t.Helper()
	b := &Broker{t: t}
	b.start("127.0.0.1:0")
	t.Cleanup(b.Stop)
	return b
}

func (b *Broker) start(addr string) {
	b.t.Helper()
	// Queued messages must not be dropped in tests: a full client queue
	// drops QoS 1 messages silently (a known trap of mochi).
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler)})
	srv.Options.Capabilities.MaximumClientWritesPending = 64 << 10
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		b.t.Fatalf("broker hook: %v", err)
	}
	var ln net.Listener
	var err error
	for range 50 { // the old listener's port may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("broker listen on %s: %v", addr, err)
	}
	b.ln = &trackingListener{Listener: ln}
	b.addr = ln.Addr().String()
	if err := srv.AddListener(listeners.NewNet("t", b.ln)); err != nil {
		b.t.Fatalf("broker listener: %v", err)
	}
	if err := srv.Serve(); err != nil {
		b.t.Fatalf("broker serve: %v", err)
	}
	b.srv = srv
}

// allowAll lets every client connect and use every topic. (mochi's own
// auth.AllowHook would pull gopkg.in/yaml.v3 into the module for nothing.)
type allowAll struct{ mochi.HookBase }

func (h *allowAll) ID() string { return "allow-all" }

func (h *allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (h *allowAll) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// URL is the broker's address for paho, tcp://127.0.0.1:port.
func (b *Broker) URL() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return "tcp://" + b.addr
}

// Stop closes the broker and every connection; idempotent.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return
	}
	// Cut every connection first, the listener included: a client that
	// reconnects at once must not land on the server being closed. Then
	// mark the listener closed with a closer that does nothing, because
	// mochi v2.7.9's own (GetByListener) read-locks the client map twice and
	// deadlocks now and then when a client leaves in between; Close then
	// finds the listener closed and only waits for the clients' goroutines.
	srv := b.srv
	b.ln.cut()
	srv.Listeners.Close("t", func(string) {})
	_ = srv.Close()
	b.srv = nil
}

// DropClient cuts one client's connection, as a flaky 4G link would; the
// broker and everyone else stay up.
func (b *Broker) DropClient(clientID string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return false
	}
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok {
		return false
	}
	_ = b.srv.DisconnectClient(cl, packets.ErrAdministrativeAction)
	return true
}

// Restart stops the broker and starts a fresh one (no sessions, no retained
// messages: mochi keeps them in memory) on the same address.
func (b *Broker) Restart() {
	b.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.start(b.addr)
}

// AudioRequest is one request the audio server saw.
type AudioRequest struct {
	Path  string
	User  string
	Range string
}

// AudioServer serves audio at /audio/<sha256> as the daemon does.
type AudioServer struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	creds    map[string]string
	cut      map[string]int64
	fail     map[string]int
	requests []AudioRequest
}

// NewAudioServer starts a server that requires Basic auth (see Allow).
func NewAudioServer(t testing.TB) *AudioServer {
	s := &AudioServer{files: map[string][]byte{}, creds: map[string]string{}, cut: map[string]int64{}, fail: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Allow lets a device id and secret download.
func (s *AudioServer) Allow(user, pass string) {
	s.mu.Lock()
	s.creds[user] = pass
	s.mu.Unlock()
}

// Add serves content under its sha256 and returns the reference a snapshot
// carries, with the given duration.
func (s *AudioServer) Add(content []byte, duration time.Duration) broadcast.AudioRef {
	sum := sha256.Sum256(content)
	return s.AddAs(hex.EncodeToString(sum[:]), content, duration)
}

// AddAs serves content under a name that need not be its hash (to test
// checksum mismatches).
func (s *AudioServer) AddAs(sha string, content []byte, duration time.Duration) broadcast.AudioRef {
	s.mu.Lock()
	s.files[sha] = content
	s.mu.Unlock()
	return broadcast.AudioRef{SHA256: sha, Size: int64(len(content)), Type: "audio/mpeg",
		DurationMS: duration.Milliseconds(), URL: s.URL + "/audio/" + sha}
}

// CutNext makes the next request for sha break after n bytes of body.
func (s *AudioServer) CutNext(sha string, n int64) {
	s.mu.Lock()
	s.cut[sha] = n
	s.mu.Unlock()
}

// FailNext makes the next n requests for sha answer 503.
func (s *AudioServer) FailNext(sha string, n int) {
	s.mu.Lock()
	s.fail[sha] = n
	s.mu.Unlock()
}

// Requests returns what was asked so far.
func (s *AudioServer) Requests() []AudioRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AudioRequest(nil), s.requests...)
}

func (s *AudioServer) serve(w http.ResponseWriter, r *http.Request) {
	sha := strings.TrimPrefix(r.URL.Path, "/audio/")
	user, pass, ok := r.BasicAuth()
	s.mu.Lock()
	s.requests = append(s.requests, AudioRequest{Path: r.URL.Path, User: user, Range: r.Header.Get("Range")})
	content, found := s.files[sha]
	authed := ok && s.creds[user] == pass && pass != ""
	cut, hasCut := s.cut[sha]
	delete(s.cut, sha)
	failing := s.fail[sha] > 0
	if failing {
		s.fail[sha]--
	}
	s.mu.Unlock()
	switch {
	case !authed:
		w.Header().Set("WWW-Authenticate", `Basic realm="loaxa"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	case !found:
		http.NotFound(w, r)
		return
	case failing:
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("ETag", `"`+sha+`"`)
	w.Header().Set("Content-Type", "audio/mpeg")
	if hasCut {
		// Promise the whole file, send part of it, then drop the
		// connection: what a 4G link does mid-download.
		w.Header().Set("Content-Length", fmt.Sprint(len(content)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(content[:cut])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	http.ServeContent(w, r, sha, time.Time{}, bytes.NewReader(content))
}

// Delivery is one event payload as the daemon received it.
type Delivery struct {
	Device  string
	Payload []byte
	Event   broadcast.Event
	Err     error // decoding or signature failure
}

// Daemon stands in for loaxad's device side: it publishes retained
// snapshots and commands with paho, and records every event and status.
type Daemon struct {
	t      testing.TB
	root   string
	client paho.Client

	mu       sync.Mutex
	connects int
	keys     map[string]ed25519.PublicKey
	events   []Delivery
	statuses map[string][]broadcast.DeviceStatus
}

// NewDaemon connects to the broker and subscribes to every device's events
// and status; it disconnects with the test.
func NewDaemon(t testing.TB, brokerURL, root string) *Daemon {
	t.Helper()
	d := &Daemon{t: t, root: root, keys: map[string]ed25519.PublicKey{}, statuses: map[string][]broadcast.DeviceStatus{}}
	onMsg := func(_ paho.Client, m paho.Message) { d.record(m.Topic(), m.Payload()) }
	opts := paho.NewClientOptions().AddBroker(brokerURL).
		SetClientID(fmt.Sprintf("daemon-test-%d", time.Now().UnixNano())).
		SetCleanSession(true).SetKeepAlive(30 * time.Second).SetWriteTimeout(5 * time.Second).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond).
		SetDefaultPublishHandler(onMsg).
		SetOnConnectHandler(func(c paho.Client) {
			c.SubscribeMultiple(map[string]byte{root + "/dev/+/events": 1, root + "/dev/+/status": 1}, onMsg).WaitTimeout(5 * time.Second)
			d.mu.Lock()
			d.connects++
			d.mu.Unlock()
		})
	d.client = paho.NewClient(opts)
	if tok := d.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("daemon connect: %v", tok.Error())
	}
	// OnConnect subscribes in its own goroutine; make sure it has.
	tok := d.client.SubscribeMultiple(map[string]byte{root + "/dev/+/events": 1, root + "/dev/+/status": 1}, onMsg)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("daemon subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { d.client.Disconnect(100) })
	return d
}

// Connects counts the daemon's connections whose subscriptions are placed.
func (d *Daemon) Connects() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connects
}

// SetKey registers a device's public key: its events must then be signed.
func (d *Daemon) SetKey(device string, pub ed25519.PublicKey) {
	d.mu.Lock()
	d.keys[device] = pub
	d.mu.Unlock()
}

func (d *Daemon) record(topic string, payload []byte) {
	rest, ok := strings.CutPrefix(topic, d.root+"/dev/")
	if !ok {
		return
	}
	device, kind, _ := strings.Cut(rest, "/")
	d.mu.Lock()
	defer d.mu.Unlock()
	switch kind {
	case "events":
		ev, env, err := broadcast.DecodeEvent(payload)
		if err == nil {
			err = env.VerifySignature(d.keys[device])
		}
		if err == nil && ev.Device != device {
			err = fmt.Errorf("event for device %s on %s's topic", ev.Device, device)
		}
		d.events = append(d.events, Delivery{Device: device, Payload: append([]byte(nil), payload...), Event: ev, Err: err})
	case "status":
		if s, err := broadcast.DecodeStatus(payload); err == nil {
			d.statuses[device] = append(d.statuses[device], s)
		}
	}
}

// Deliveries returns every event delivery for device, duplicates included.
func (d *Daemon) Deliveries(device string) []Delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Delivery
	for _, e := range d.events {
		if e.Device == device {
			out = append(out, e)
		}
	}
	return out
}

// Events returns device's valid events once per seq, in seq order, as the
// daemon's as-run log would keep them. It fails the test if a delivery did
// not verify or if one seq came with two different payloads.
func (d *Daemon) Events(device string) []broadcast.Event {
	d.t.Helper()
	bySeq := map[uint64]Delivery{}
	for _, e := range d.Deliveries(device) {
		if e.Err != nil {
			d.t.Errorf("device %s sent an invalid event: %v (%s)", device, e.Err, e.Payload)
			continue
		}
		if prev, ok := bySeq[e.Event.Seq]; ok && !bytes.Equal(prev.Payload, e.Payload) {
			d.t.Errorf("device %s reused seq %d:\n%s\n%s", device, e.Event.Seq, prev.Payload, e.Payload)
		}
		bySeq[e.Event.Seq] = e
	}
	out := make([]broadcast.Event, 0, len(bySeq))
	for _, e := range bySeq {
		out = append(out, e.Event)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Statuses returns every status device published, oldest first.
func (d *Daemon) Statuses(device string) []broadcast.DeviceStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]broadcast.DeviceStatus(nil), d.statuses[device]...)
}

// Publish publishes raw bytes at QoS 1 and waits for the broker to take them.
func (d *Daemon) Publish(topic string, payload []byte, retained bool) {
	d.t.Helper()
	tok := d.client.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		d.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// Snapshot publishes a snapshot, retained, on its device's schedule topic.
func (d *Daemon) Snapshot(s broadcast.Snapshot) {
	d.t.Helper()
	if s.V == 0 {
		s.V = broadcast.ProtocolVersion
	}
	raw, err := json.Marshal(s)
	if err != nil {
		d.t.Fatal(err)
	}
	d.Publish(d.root+"/dev/"+s.Device+"/schedule", raw, true)
}

// Command sends a command to a device.
func (d *Daemon) Command(device string, c broadcast.Command) {
	d.t.Helper()
	if c.V == 0 {
		c.V = broadcast.ProtocolVersion
	}
	raw, err := json.Marshal(c)
	if err != nil {
		d.t.Fatal(err)
	}
	d.Publish(d.root+"/dev/"+device+"/cmd", raw, false)
}

// Receipt confirms a device's events up to seq.
func (d *Daemon) Receipt(device string, upto uint64) {
	d.t.Helper()
	d.Command(device, broadcast.Command{Type: broadcast.CmdReceipt, UptoSeq: upto, LogHash: fmt.Sprintf("hash-%d", upto)})
}

// Eventually polls cond every 10 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FakeClock is a Clock that moves only when told to.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	calls   int // After calls so far
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewFakeClock starts at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After fires once the clock has been advanced by d.
func (c *FakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock and fires what is due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	clear(c.waiters[len(keep):])
	c.waiters = keep
}

// Step advances the clock by d and then waits (up to a second of real time)
// for someone to call After again. An agent's loop arms a timer of at most
// a second each time it has done what the time made due, so with d of a
// second or more Step returns once the agent has caught up, and fake time
// never runs ahead of it by more than one step.
func (c *FakeClock) Step(d time.Duration) {
	c.mu.Lock()
	n := c.calls
	c.mu.Unlock()
	c.Advance(d)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		moved := c.calls > n
		c.mu.Unlock()
		if moved {
			return
		}
		time.Sleep(500 * time.Microsecond)
	}
}

// Synced reports a synchronised clock.
func (c *FakeClock) Synced() bool { return true }
