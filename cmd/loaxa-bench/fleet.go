package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/loaxa/loaxa/broadcast"
)

// The devices process: one lightweight paho client per simulated device,
// each with its own connection and credentials, a persistent session
// (CleanSession=false) and QoS 1 subscriptions to its schedule and command
// topics, as docs/protocol.md asks of a device. They are not agents: they play
// nothing and keep no outbox; they count what arrives, publish signed
// events when told to, and time both. Paho's handlers only store and count
// (a blocked handler would stall its client).

// Timings as the real agent's (devices/agent/mqtt.go): a keep-alive that is
// never 0 and a write timeout, so that a stuck connection shows.
const (
	deviceKeepAlive    = 30 * time.Second
	deviceWriteTimeout = 10 * time.Second
	connectTimeout     = 30 * time.Second
	// connectWorkers bounds connections being set up at once: a storm of
	// 10,000 simultaneous CONNECTs tests the listen backlog, not the
	// publishing path.
	connectWorkers = 32
)

type fleet struct {
	log   io.Writer
	args  connectArgs
	clock benchClock
	devs  []*device

	schedRound   atomic.Pointer[round] // snapshots being counted
	receiptRound atomic.Pointer[round] // receipts being counted
	rounds       atomic.Int64          // ids of rounds, from 1
	lost         atomic.Int64          // connections lost (paho reconnects them)
	refused      atomic.Int64          // commands that did not decode
	stray        atomic.Int64          // receipts of the other kind than the round's (see onMessage)
	trip         [][][]byte            // the broker round trip's events, f.devs[i]'s at i
}

type device struct {
	id                    string
	schedule, cmd, events string
	client                paho.Client
	key                   ed25519.PrivateKey
	subscribed            chan struct{}
	subscribeOnce         sync.Once
	subscribeErr          atomic.Pointer[error]
	snapRound, rcptRound  atomic.Int64 // the last round each was counted in
	snapshot              atomic.Pointer[[]byte]
	upto                  atomic.Uint64 // highest upto_seq received

	snap     broadcast.Snapshot // decoded after the fan-out
	payloads [][]byte           // signed events, made before the events round
}

// round counts, for a timed phase, the first arrival of something per
// device (or every arrival, for the sink), and keeps the times of the first
// and the last in unix nanoseconds: the clock the scenario process reads too.
type round struct {
	id        int64
	cpu0      time.Duration // this process's CPU time when the round began
	want      int64
	target    uint64 // receipts: the upto_seq that completes a device
	roundTrip bool   // receipts: the broker round trip's receiver's count, not the daemon's
	first     atomic.Int64
	last      atomic.Int64
	done      atomic.Int64
	complete  chan struct{}
}

func (f *fleet) newRound(want int64) *round {
	return &round{id: f.rounds.Add(1), want: want, complete: make(chan struct{}), cpu0: processCPU()}
}

// arrive records one arrival at t. The times are updated before the count,
// so that once the round is complete they include every arrival.
func (r *round) arrive(t int64) {
	for {
		v := r.first.Load()
		if (v != 0 && v <= t) || r.first.CompareAndSwap(v, t) {
			break
		}
	}
	for {
		v := r.last.Load()
		if v >= t || r.last.CompareAndSwap(v, t) {
			break
		}
	}
	if r.done.Add(1) == r.want {
		close(r.complete)
	}
}

// stallAfter ends a wait that has seen no arrival for this long: what has
// not arrived by then was lost (a broker drops QoS 1 messages when a
// client's queue is full), and waiting out the whole timeout would only
// delay saying so.
const stallAfter = 20 * time.Second

// wait waits for the round to complete, or says how far it got.
func (r *round) wait(ctx context.Context, timeout time.Duration, what string) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	seen, since := r.done.Load(), time.Now()
	for {
		select {
		case <-r.complete:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("after %s, %d of %d %s", timeout, r.done.Load(), r.want, what)
		case <-tick.C:
			if n := r.done.Load(); n != seen {
				seen, since = n, time.Now()
			} else if time.Since(since) >= stallAfter {
				return fmt.Errorf("nothing arrived for %s: %d of %d %s; the rest was lost", stallAfter, n, r.want, what)
			}
		}
	}
}

// span is a timed phase as the devices process saw it, in unix ns.
type span struct {
	Start int64         `json:"start,omitempty"` // first publish, when this process made it
	First int64         `json:"first"`           // first arrival
	Last  int64         `json:"last"`            // last arrival
	CPU   time.Duration `json:"cpu"`             // the devices process's, during the round
}

func (r *round) span(start int64) span {
	return span{Start: start, First: r.first.Load(), Last: r.last.Load(), CPU: processCPU() - r.cpu0}
}

func newFleet(log io.Writer) *fleet { return &fleet{log: log} }

func (f *fleet) handle(ctx context.Context, op string, raw json.RawMessage) (any, error) {
	switch op {
	case "connect":
		return withArgs(op, raw, func(a connectArgs) (any, error) { return f.connect(ctx, a) })
	case "arm":
		f.schedRound.Store(f.newRound(int64(len(f.devs))))
		return nil, nil
	case "await":
		return withArgs(op, raw, func(a waitArgs) (any, error) {
			r := f.schedRound.Load()
			if r == nil {
				return nil, errors.New("no round armed")
			}
			if err := r.wait(ctx, a.Timeout, "devices have received a snapshot"); err != nil {
				return nil, err
			}
			return r.span(0), nil
		})
	case "snapshots":
		return f.checkSnapshots()
	case "bare":
		return withArgs(op, raw, func(a rootArgs) (any, error) { return f.bare(ctx, a) })
	case "sign":
		return withArgs(op, raw, f.sign)
	case "events":
		return withArgs(op, raw, func(a waitArgs) (any, error) { return f.publishEvents(ctx, a) })
	case "trip-events":
		// Apart from "roundtrip", so that neither process's CPU in the
		// round trip includes passing the events.
		return withArgs(op, raw, func(a tripEvents) (any, error) {
			if len(a.Events) != len(f.devs) {
				return nil, fmt.Errorf("events for %d devices, want %d", len(a.Events), len(f.devs))
			}
			f.trip = a.Events
			return nil, nil
		})
	case "roundtrip":
		return withArgs(op, raw, func(a rootArgs) (any, error) { return f.roundTrip(ctx, a) })
	case "sink":
		return withArgs(op, raw, func(a rootArgs) (any, error) { return f.sink(ctx, a) })
	case "stats":
		rss, _ := readRSS("self")
		return fleetStats{RSS: rss, Lost: f.lost.Load(), Refused: f.refused.Load(), Stray: f.stray.Load()}, nil
	}
	return nil, fmt.Errorf("unknown request %q", op)
}

// withArgs decodes a request's arguments and hands them to fn.
func withArgs[A, R any](op string, raw json.RawMessage, fn func(A) (R, error)) (any, error) {
	var a A
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("arguments of %s: %w", op, err)
	}
	return fn(a)
}

type connectArgs struct {
	Broker    string   `json:"broker"`
	TopicRoot string   `json:"topic_root"`
	RunKey    []byte   `json:"run_key"`
	Devices   []string `json:"devices"`
}

type waitArgs struct {
	Timeout time.Duration `json:"timeout"`
}

// rootArgs are the daemon's MQTT credentials, for the reference
// publishers: devices may publish only on their own events and status
// topics, which the daemon consumes.
type rootArgs struct {
	User     string        `json:"user"`
	Password string        `json:"password"`
	Timeout  time.Duration `json:"timeout"`
	Window   int           `json:"window,omitempty"` // bare: outstanding publishes; 0 is bareWindow
}

type signArgs struct {
	PerDevice int `json:"per_device"`
}

// tripEvents are each device's signed events for the broker round trip, in
// the order of connectArgs.Devices.
type tripEvents struct {
	Events [][][]byte `json:"events"`
}

type fleetStats struct {
	RSS     int64 `json:"rss"`
	Lost    int64 `json:"lost"`
	Refused int64 `json:"refused"`
	Stray   int64 `json:"stray"`
}

type connectResult struct {
	Seconds float64 `json:"seconds"`
}

func (f *fleet) connect(ctx context.Context, a connectArgs) (connectResult, error) {
	if f.devs != nil {
		return connectResult{}, errors.New("already connected")
	}
	f.args, f.clock = a, newBenchClock()
	start := time.Now()
	for _, id := range a.Devices {
		d := &device{
			id:         id,
			schedule:   a.TopicRoot + "/dev/" + id + "/schedule",
			cmd:        a.TopicRoot + "/dev/" + id + "/cmd",
			events:     a.TopicRoot + "/dev/" + id + "/events",
			key:        deviceKey(a.RunKey, id),
			subscribed: make(chan struct{}),
		}
		d.client = paho.NewClient(f.deviceOptions(d))
		f.devs = append(f.devs, d)
	}
	jobs := make(chan *device)
	errs := make(chan error, len(f.devs))
	var wg sync.WaitGroup
	for range connectWorkers {
		wg.Go(func() {
			for d := range jobs {
				errs <- d.connect()
			}
		})
	}
	for i, d := range f.devs {
		if ctx.Err() != nil {
			break
		}
		jobs <- d
		if n := i + 1; n%2000 == 0 {
			fmt.Fprintf(f.log, "  devices: %d of %d connected\n", n, len(f.devs))
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	var failed []error
	for err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return connectResult{}, fmt.Errorf("%d of %d devices could not connect; the first: %w", len(failed), len(f.devs), failed[0])
	}
	return connectResult{Seconds: time.Since(start).Seconds()}, ctx.Err()
}

func (f *fleet) deviceOptions(d *device) *paho.ClientOptions {
	return paho.NewClientOptions().
		AddBroker(f.args.Broker).
		SetClientID("dev-" + d.id).
		SetUsername(d.id).
		SetPassword(deviceSecret(f.args.RunKey, d.id)).
		SetCleanSession(false).
		SetKeepAlive(deviceKeepAlive).
		SetWriteTimeout(deviceWriteTimeout).
		SetConnectTimeout(connectTimeout).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(5 * time.Second).
		// With a persistent session the broker may deliver before our
		// SUBSCRIBE is routed; those land in the default handler.
		SetDefaultPublishHandler(f.onMessage(d)).
		SetOnConnectHandler(func(c paho.Client) {
			// Paho runs this in its own goroutine: waiting is safe.
			t := c.SubscribeMultiple(map[string]byte{d.schedule: 1, d.cmd: 1}, nil)
			if !t.WaitTimeout(connectTimeout) {
				err := fmt.Errorf("device %s: no SUBACK within %s", d.id, connectTimeout)
				d.subscribeErr.Store(&err)
			} else if err := t.Error(); err != nil {
				err = fmt.Errorf("device %s: subscribe: %w", d.id, err)
				d.subscribeErr.Store(&err)
			}
			d.subscribeOnce.Do(func() { close(d.subscribed) })
		}).
		SetConnectionLostHandler(func(paho.Client, error) { f.lost.Add(1) })
}

func (d *device) connect() error {
	t := d.client.Connect()
	if !t.WaitTimeout(connectTimeout) {
		return fmt.Errorf("device %s: no CONNACK within %s", d.id, connectTimeout)
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("device %s: %w", d.id, err)
	}
	select {
	case <-d.subscribed:
	case <-time.After(connectTimeout):
		return fmt.Errorf("device %s: not subscribed within %s", d.id, connectTimeout)
	}
	if err := d.subscribeErr.Load(); err != nil {
		return *err
	}
	return nil
}

// onMessage counts a device's snapshots and receipts. It runs in paho's
// router: it stores and counts, nothing more.
func (f *fleet) onMessage(d *device) paho.MessageHandler {
	return func(_ paho.Client, m paho.Message) {
		now := time.Now().UnixNano()
		switch m.Topic() {
		case d.schedule:
			p := append([]byte(nil), m.Payload()...)
			d.snapshot.Store(&p)
			if r := f.schedRound.Load(); r != nil && d.snapRound.Swap(r.id) != r.id {
				r.arrive(now)
			}
		case d.cmd:
			// The real decoder: a receipt the agent would refuse must not
			// count here either.
			c, err := broadcast.DecodeCommand(m.Payload())
			if err != nil || c.Type != broadcast.CmdReceipt {
				f.refused.Add(1)
				return
			}
			// The broker round trip and the daemon's ingestion send the
			// same seqs: a receipt of the one the broker delivered late
			// (after a reconnection, say) must not complete a device in
			// the other.
			r := f.receiptRound.Load()
			if r == nil || (c.LogHash == roundTripLogHash) != r.roundTrip {
				f.stray.Add(1)
				return
			}
			for {
				v := d.upto.Load()
				if c.UptoSeq <= v || d.upto.CompareAndSwap(v, c.UptoSeq) {
					break
				}
			}
			if c.UptoSeq >= r.target && d.rcptRound.Swap(r.id) != r.id {
				r.arrive(now)
			}
		}
	}
}

type snapshotStats struct {
	MeanBytes float64 `json:"mean_bytes"`
	MaxBytes  int     `json:"max_bytes"`
	MeanItems float64 `json:"mean_items"`
}

// checkSnapshots decodes what each device received, as a device would, and
// keeps it for the events: they name the airings of the device's snapshot.
func (f *fleet) checkSnapshots() (snapshotStats, error) {
	var st snapshotStats
	for _, d := range f.devs {
		p := d.snapshot.Load()
		if p == nil {
			return st, fmt.Errorf("device %s has no snapshot", d.id)
		}
		s, err := broadcast.DecodeSnapshot(*p)
		if err != nil {
			return st, fmt.Errorf("device %s: %w", d.id, err)
		}
		if s.Device != d.id || len(s.Items) == 0 {
			return st, fmt.Errorf("device %s received the snapshot of %q with %d items", d.id, s.Device, len(s.Items))
		}
		d.snap = s
		st.MeanBytes += float64(len(*p))
		st.MaxBytes = max(st.MaxBytes, len(*p))
		st.MeanItems += float64(len(s.Items))
	}
	st.MeanBytes /= float64(len(f.devs))
	st.MeanItems /= float64(len(f.devs))
	return st, nil
}

// bareWindow is how many publishes the bare publisher keeps outstanding:
// waiting on each token caps one connection at ~10k messages/s here,
// pipelined it does ~28k. (The scenario also runs it with the scheduler's
// 32, to show what the window costs.)
const bareWindow = 1000

// bare republishes, from one connection of the daemon's user, exactly the
// bytes each device received from the daemon, retained at QoS 1 on the same
// topics, pipelined, and reports its first publish and the first and last
// arrivals at the devices: what the broker and the devices allow, with
// nothing of the daemon in the way. A window other than bareWindow
// (a.Window) shows what fewer outstanding publishes cost.
func (f *fleet) bare(ctx context.Context, a rootArgs) (span, error) {
	c, err := f.rootClient("loaxa-bench-bare", a, nil)
	if err != nil {
		return span{}, err
	}
	defer c.Disconnect(250)
	r := f.newRound(int64(len(f.devs)))
	f.schedRound.Store(r)
	w := newWindow(cmp.Or(a.Window, bareWindow), a.Timeout)
	start := time.Now().UnixNano()
	for _, d := range f.devs {
		if err := w.add(c.Publish(d.schedule, 1, true, *d.snapshot.Load())); err != nil {
			return span{}, err
		}
	}
	if err := w.drain(); err != nil {
		return span{}, err
	}
	if err := r.wait(ctx, a.Timeout, "devices have received the bare publisher's snapshot"); err != nil {
		return span{}, err
	}
	return r.span(start), nil
}

// window keeps at most n publish tokens outstanding.
type window struct {
	tokens  []paho.Token
	n       int
	timeout time.Duration
}

func newWindow(n int, timeout time.Duration) *window {
	return &window{n: n, timeout: timeout}
}

func (w *window) add(t paho.Token) error {
	if len(w.tokens) == w.n {
		if err := w.wait(w.tokens[0]); err != nil {
			return err
		}
		w.tokens = w.tokens[1:]
	}
	w.tokens = append(w.tokens, t)
	return nil
}

func (w *window) drain() error {
	for _, t := range w.tokens {
		if err := w.wait(t); err != nil {
			return err
		}
	}
	w.tokens = w.tokens[:0]
	return nil
}

func (w *window) wait(t paho.Token) error {
	if !t.WaitTimeout(w.timeout) {
		return fmt.Errorf("a publish was not acknowledged within %s", w.timeout)
	}
	return t.Error()
}

func (f *fleet) rootClient(id string, a rootArgs, onMsg paho.MessageHandler) (paho.Client, error) {
	o := paho.NewClientOptions().
		AddBroker(f.args.Broker).
		SetClientID(id).
		SetUsername(a.User).
		SetPassword(a.Password).
		SetCleanSession(true).
		SetKeepAlive(deviceKeepAlive).
		SetWriteTimeout(deviceWriteTimeout).
		SetConnectTimeout(connectTimeout).
		SetAutoReconnect(false)
	if onMsg != nil {
		o.SetDefaultPublishHandler(onMsg)
	}
	c := paho.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(connectTimeout) {
		return nil, fmt.Errorf("%s: no CONNACK within %s", id, connectTimeout)
	}
	if err := t.Error(); err != nil {
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	return c, nil
}

type signResult struct {
	Events    int     `json:"events"`
	MeanBytes float64 `json:"mean_bytes"`
}

// sign makes every device's events for the ingestion round ahead of time:
// ed25519 signing is the devices' work, not the daemon's, and would
// otherwise eat the CPU the daemon is measured on.
func (f *fleet) sign(a signArgs) (signResult, error) {
	if a.PerDevice < 1 {
		return signResult{}, fmt.Errorf("%d events per device", a.PerDevice)
	}
	now := f.clock.Now()
	jobs := make(chan *device)
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	var bytes atomic.Int64
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for d := range jobs {
				d.payloads = d.payloads[:0]
				for seq := uint64(1); seq <= uint64(a.PerDevice); seq++ {
					p, err := broadcast.SignEvent(deviceEvent(d.id, d.snap.Rev, d.snap.Items, seq, now), d.key)
					if err != nil {
						err = fmt.Errorf("device %s: %w", d.id, err)
						failed.Store(&err)
						continue
					}
					bytes.Add(int64(len(p)))
					d.payloads = append(d.payloads, p)
				}
			}
		})
	}
	for _, d := range f.devs {
		if d.snap.Device == "" {
			close(jobs)
			wg.Wait()
			return signResult{}, fmt.Errorf("device %s: no checked snapshot to take airings from", d.id)
		}
		jobs <- d
	}
	close(jobs)
	wg.Wait()
	if err := failed.Load(); err != nil {
		return signResult{}, *err
	}
	n := len(f.devs) * a.PerDevice
	return signResult{Events: n, MeanBytes: float64(bytes.Load()) / float64(n)}, nil
}

// publishEvents has every device publish its signed events to the daemon,
// and times it from the first publish to the last device's receipt for its
// last event.
func (f *fleet) publishEvents(ctx context.Context, a waitArgs) (span, error) {
	if len(f.devs[0].payloads) == 0 {
		return span{}, errors.New("no signed events: sign first")
	}
	events := make([][][]byte, len(f.devs))
	for i, d := range f.devs {
		events[i] = d.payloads
	}
	return f.exchange(ctx, a.Timeout, events, false)
}

// exchange has every device publish its events (events[i] are f.devs[i]'s)
// at once, as when a broadcast ends everywhere at the same minute, each
// device pipelining its own (as the agent sends a batch and then waits for
// the acks), and waits until each has a receipt for its last: the daemon's
// receipts, or the broker round trip's receiver's. It returns the span from
// the first publish to the last such receipt.
func (f *fleet) exchange(ctx context.Context, timeout time.Duration, events [][][]byte, roundTrip bool) (span, error) {
	per := len(events[0])
	r := f.newRound(int64(len(f.devs)))
	r.target, r.roundTrip = uint64(per), roundTrip
	// What an earlier round's receipts left must not count as this
	// round's (onMessage counts only receipts that arrive in it); upto is
	// reset too, so that a failure says how far this round got.
	for _, d := range f.devs {
		d.upto.Store(0)
	}
	f.receiptRound.Store(r)
	startGate := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for i, d := range f.devs {
		wg.Go(func() {
			<-startGate
			// All of them at once, then wait for the acks: a device's
			// events are few, and the agent sends its outbox the same way.
			w := newWindow(len(events[i]), timeout)
			for _, p := range events[i] {
				_ = w.add(d.client.Publish(d.events, 1, false, p)) // never full: never waits
			}
			if err := w.drain(); err != nil {
				err = fmt.Errorf("device %s: %w", d.id, err)
				failed.Store(&err)
			}
		})
	}
	start := time.Now().UnixNano()
	close(startGate)
	wg.Wait()
	if err := failed.Load(); err != nil {
		return span{}, *err
	}
	if err := r.wait(ctx, timeout, "devices have a receipt for all their events"); err != nil {
		lowest := uint64(per)
		for _, d := range f.devs {
			lowest = min(lowest, d.upto.Load())
		}
		return span{}, fmt.Errorf("%w (the furthest behind has a receipt up to seq %d of %d)", err, lowest, per)
	}
	return r.span(start), nil
}

// roundTripLogHash is the log hash of the broker round trip's receipts: a
// sha256 like the daemon's, which no log of the daemon's will have, so that
// the devices tell the two kinds of receipt apart.
var roundTripLogHash = func() string {
	h := sha256.Sum256([]byte("loaxa-bench broker round trip"))
	return hex.EncodeToString(h[:])
}()

// roundTrip measures what the broker and the devices cost for the daemon's
// ingestion exchange: the same device connections publish events of the same
// size, on the same topics, in the same way (exchange), and a bare paho
// receiver of the daemon's user, subscribed to every device's events,
// answers each at once with a receipt on the device's command topic. No
// validation, no storage. The scenario runs it before the daemon first
// connects: the broker has no session of the daemon's then, so nothing of
// it is queued for the daemon.
func (f *fleet) roundTrip(ctx context.Context, a rootArgs) (span, error) {
	events := f.trip
	f.trip = nil
	if len(events) == 0 || len(events[0]) == 0 {
		return span{}, errors.New("no events for the round trip")
	}
	rcv := &receiver{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	// Its own client id, and a clean session: the daemon's persistent
	// session (client id loaxad) must not exist when the daemon starts.
	c, err := f.rootClient("loaxa-bench-roundtrip", a, rcv.onEvent)
	if err != nil {
		return span{}, fmt.Errorf("round trip receiver: %w", err)
	}
	defer c.Disconnect(250)
	if t := c.Subscribe(f.args.TopicRoot+"/dev/+/events", 1, nil); !t.WaitTimeout(connectTimeout) {
		return span{}, fmt.Errorf("round trip receiver: no SUBACK within %s", connectTimeout)
	} else if err := t.Error(); err != nil {
		return span{}, fmt.Errorf("round trip receiver: subscribe: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go rcv.answer(c, newWindow(bareWindow, a.Timeout), cancel)
	sp, err := f.exchange(ctx, a.Timeout, events, true)
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = fmt.Errorf("round trip receiver: %w", cause)
	}
	if serr := rcv.close(); err == nil && serr != nil {
		err = fmt.Errorf("round trip receiver: %w", serr)
	}
	if err != nil {
		return span{}, err
	}
	if n := rcv.malformed.Load(); n > 0 {
		return span{}, fmt.Errorf("round trip receiver: %d events had no seq", n)
	}
	// Let the last acknowledgements of events reach the broker before the
	// receiver leaves, as the sink does: a clean session's unacknowledged
	// messages are reported by the broker as dropped.
	time.Sleep(200 * time.Millisecond)
	return sp, nil
}

// receiver is the broker round trip's stand-in for the daemon. Paho calls
// onEvent in its router, which must not block: while it does, the client
// reads nothing more from the broker, the acknowledgements a full window
// waits for included. So onEvent queues, and answer publishes.
type receiver struct {
	mu        sync.Mutex
	queue     []receipt
	wake      chan struct{} // capacity 1: something is queued
	stop      chan struct{}
	done      chan struct{}
	err       error // answer's, once done is closed
	malformed atomic.Int64
}

type receipt struct {
	topic string // the device's command topic
	seq   uint64
}

func (rc *receiver) onEvent(_ paho.Client, m paho.Message) {
	seq, ok := eventSeq(m.Payload())
	if !ok {
		rc.malformed.Add(1)
		return
	}
	r := receipt{topic: strings.TrimSuffix(m.Topic(), "/events") + "/cmd", seq: seq}
	rc.mu.Lock()
	rc.queue = append(rc.queue, r)
	rc.mu.Unlock()
	select {
	case rc.wake <- struct{}{}:
	default:
	}
}

// answer publishes a receipt for each queued event, at once and pipelined
// (the daemon too publishes a receipt and awaits its acknowledgement
// apart), until stopped; a failure cancels the round.
func (rc *receiver) answer(c paho.Client, w *window, fail context.CancelCauseFunc) {
	defer close(rc.done)
	var batch []receipt
	for {
		select {
		case <-rc.wake:
		case <-rc.stop:
			rc.err = w.drain()
			return
		}
		rc.mu.Lock()
		batch, rc.queue = rc.queue, batch[:0]
		rc.mu.Unlock()
		for _, r := range batch {
			if err := w.add(c.Publish(r.topic, 1, false, receiptPayload(r.seq))); err != nil {
				rc.err = fmt.Errorf("receipt for %s seq %d: %w", r.topic, r.seq, err)
				fail(rc.err)
				return
			}
		}
	}
}

// close stops answering, once the receipts published are acknowledged.
func (rc *receiver) close() error {
	close(rc.stop)
	<-rc.done
	return rc.err
}

// receiptPayload is a receipt as the hub marshals one (broadcast.Command),
// with the round trip's log hash.
func receiptPayload(seq uint64) []byte {
	p := make([]byte, 0, 128)
	p = append(p, `{"v":1,"type":"receipt","upto_seq":`...)
	p = strconv.AppendUint(p, seq, 10)
	p = append(p, `,"log_hash":"`...)
	p = append(p, roundTripLogHash...)
	return append(p, `"}`...)
}

// eventSeq finds an event's seq without decoding it: the receiver stands
// for the broker's cost, not the daemon's. The first "seq": is the body's,
// since the ids before it cannot hold a quote (broadcast.ValidID) and the
// signature is base64.
func eventSeq(payload []byte) (uint64, bool) {
	const key = `"seq":`
	i := bytes.Index(payload, []byte(key))
	if i < 0 {
		return 0, false
	}
	digits := payload[i+len(key):]
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	seq, err := strconv.ParseUint(string(digits[:n]), 10, 64)
	return seq, err == nil && seq > 0
}

// sinkConns is how many connections of the daemon's user publish the
// reference load. Devices cannot do it themselves: they may publish only
// on their own events and status topics, and the daemon consumes both.
const sinkConns = 64

// sinkWindow is each reference publisher's outstanding publishes.
const sinkWindow = 256

// sink measures the broker's own delivery rate of the events: the same
// payloads, published at QoS 1 to a topic the daemon does not consume and
// counted by one subscriber (acknowledging at once), as the daemon is one
// subscriber of every device's events.
func (f *fleet) sink(ctx context.Context, a rootArgs) (span, error) {
	per := len(f.devs[0].payloads)
	if per == 0 {
		return span{}, errors.New("no signed events: sign first")
	}
	total := int64(len(f.devs) * per)
	r := f.newRound(total)
	root := f.args.TopicRoot + "/bench/"
	sub, err := f.rootClient("loaxa-bench-sink", a, func(paho.Client, paho.Message) { r.arrive(time.Now().UnixNano()) })
	if err != nil {
		return span{}, err
	}
	defer sub.Disconnect(250)
	if t := sub.Subscribe(root+"+/events", 1, nil); !t.WaitTimeout(connectTimeout) {
		return span{}, fmt.Errorf("sink: no SUBACK within %s", connectTimeout)
	} else if err := t.Error(); err != nil {
		return span{}, fmt.Errorf("sink: subscribe: %w", err)
	}
	var pubs []paho.Client
	defer func() {
		for _, c := range pubs {
			c.Disconnect(250)
		}
	}()
	for i := range min(sinkConns, len(f.devs)) {
		c, err := f.rootClient(fmt.Sprintf("loaxa-bench-pub-%02d", i), a, nil)
		if err != nil {
			return span{}, err
		}
		pubs = append(pubs, c)
	}
	startGate := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for i, c := range pubs {
		wg.Go(func() {
			<-startGate
			w := newWindow(sinkWindow, a.Timeout)
			// Seq by seq across this connection's devices, as the devices
			// send them: every device's first event, then every second...
			for seq := range per {
				for j := i; j < len(f.devs); j += len(pubs) {
					d := f.devs[j]
					if err := w.add(c.Publish(root+d.id+"/events", 1, false, d.payloads[seq])); err != nil {
						failed.Store(&err)
						return
					}
				}
			}
			if err := w.drain(); err != nil {
				failed.Store(&err)
			}
		})
	}
	start := time.Now().UnixNano()
	close(startGate)
	wg.Wait()
	if err := failed.Load(); err != nil {
		return span{}, *err
	}
	if err := r.wait(ctx, a.Timeout, "events have reached the sink"); err != nil {
		return span{}, err
	}
	// Let the last acknowledgements reach the broker before the sink
	// leaves: a clean session's unacknowledged messages are reported by
	// the broker as dropped.
	time.Sleep(200 * time.Millisecond)
	return r.span(start), nil
}

// close disconnects every device, in parallel: one at a time, 10,000
// disconnects would take minutes.
func (f *fleet) close() {
	jobs := make(chan *device)
	var wg sync.WaitGroup
	for range connectWorkers {
		wg.Go(func() {
			for d := range jobs {
				d.client.Disconnect(50)
			}
		})
	}
	for _, d := range f.devs {
		jobs <- d
	}
	close(jobs)
	wg.Wait()
}
