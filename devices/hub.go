package devices

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loaxa/loaxa/broadcast"
)

// The record types live in the domain so that the hub and storage agree on
// them without importing each other.
type (
	EventRecord    = broadcast.EventRecord
	Appended       = broadcast.Appended
	DeviceSeqState = broadcast.DeviceSeqState
)

// EventLog is the as-run log as the hub uses it. AppendEvent must return only
// once the entry is durable (the hub sends the device a receipt then), must
// log each (device, seq) once, and must log an event whose airing is
// unknown or not the device's station's with Entry.Unmatched saying so,
// applied to no airing: refusing it would hold back the receipts of the
// device's later events for ever. *storage.Store is one.
type EventLog interface {
	AppendEvent(ctx context.Context, rec EventRecord) (Appended, error)
	DeviceSeq(device string) (DeviceSeqState, error)
}

// HubOptions configure NewHub.
type HubOptions struct {
	BrokerURL          string      // tcp://host:port, ssl://host:port
	TLSConfig          *tls.Config // for ssl://; nil uses the system roots
	Username, Password string
	ClientID           string // stable, so that the broker keeps our session; default "loaxad"
	TopicRoot          string // default DefaultTopicRoot
	Events             EventLog
	Devices            DeviceRegistry
	Logger             *slog.Logger          // default: discard
	Registerer         prometheus.Registerer // default: a private registry
	Now                func() time.Time      // default time.Now

	Workers       int           // event workers, default 256
	SeqGapTimeout time.Duration // default 15 min; how long a gap in a device's seq may stay open
	MaxSeqAhead   uint64        // default 10000; how far past its logged seqs a device's event may be

	// OnOnline is called (from a small pool of goroutines, at most once at
	// a time per device) when a device's status turns online, to publish
	// its snapshot again: the broker may have lost the retained one, and a
	// completed publish token proves nothing across a reconnect. The
	// scheduler owns the desired state and keeps it in storage, so it, not
	// the hub, rebuilds the snapshot; that holds across restarts of the
	// daemon, and the hub keeps no copy of 100,000 devices' schedules.
	OnOnline func(device string)

	PublishTimeout time.Duration // how long a publish waits for the broker; default 10s
}

const (
	defaultClientID = "loaxad"
	// defaultWorkers is how many events may be in hand at once. A worker
	// waits for its event's group commit, so the workers bound how many
	// events one commit can take, and the rate to workers / commit time:
	// commits of 10–20 ms were measured here on a disk shared with other
	// work, where 64 workers would cap the daemon at 3–6k events/s. A
	// worker is a goroutine and a queue, a few KiB; the CPU-bound part is
	// bounded apart (see processEvent).
	defaultWorkers = 256
	// receiptsPending bounds the receipts published and not yet
	// acknowledged by the broker; past it the workers wait.
	receiptsPending       = 8192
	defaultMaxSeqAhead    = 10000
	defaultSeqGapTimeout  = 15 * time.Minute
	defaultPublishTimeout = 10 * time.Second
	// appendTimeout bounds one append, also during shutdown, when the run's
	// context is already cancelled but the event in hand should still be
	// logged and acknowledged.
	appendTimeout = 30 * time.Second
	onlineWorkers = 8
)

// inbound is one message handed off by paho's handler.
type inbound struct {
	device  string
	payload []byte
	at      time.Time
	ack     func()
}

// Hub is the daemon's one MQTT client: it takes in events and statuses and
// publishes snapshots and commands.
type Hub struct {
	opts   HubOptions
	log    *slog.Logger
	topics topics
	now    func() time.Time
	m      *metrics
	client paho.Client

	// Events are sharded by device, one worker each, so that one device's
	// events are handled in the order they arrived and its receipts never go
	// backwards, while different devices' events commit together.
	shards   []*fifo[inbound]
	statuses *fifo[inbound] // one worker: a device's online and offline must not swap
	online   *fifo[string]
	receipts chan pendingReceipt // published, awaiting the broker's acknowledgement
	cpu      chan struct{}       // a slot per CPU for validating events (see processEvent)

	mu            sync.Mutex
	states        map[string]*DeviceState
	gaps          map[string]*seqGap
	onlinePending map[string]bool

	connected atomic.Bool
	ran       atomic.Bool
	stop      chan struct{}
}

// NewHub checks the options and sets up the client; Run connects.
func NewHub(opts HubOptions) (*Hub, error) {
	t, err := newTopics(opts.TopicRoot)
	if err != nil {
		return nil, fmt.Errorf("device hub: %w", err)
	}
	opts.TopicRoot = t.root
	switch {
	case opts.BrokerURL == "":
		return nil, errors.New("device hub: no broker URL")
	case opts.Events == nil || opts.Devices == nil:
		return nil, errors.New("device hub: the event log and the device registry are required")
	case opts.Workers < 0:
		return nil, fmt.Errorf("device hub: %d workers", opts.Workers)
	}
	if opts.ClientID == "" {
		opts.ClientID = defaultClientID
	}
	if opts.Workers == 0 {
		opts.Workers = defaultWorkers
	}
	if opts.MaxSeqAhead == 0 {
		opts.MaxSeqAhead = defaultMaxSeqAhead
	}
	if opts.SeqGapTimeout <= 0 {
		opts.SeqGapTimeout = defaultSeqGapTimeout
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = defaultPublishTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("device hub: %w", err)
	}
	h := &Hub{
		opts:          opts,
		log:           opts.Logger.With("component", "devices"),
		topics:        t,
		now:           opts.Now,
		m:             m,
		statuses:      newFIFO[inbound](),
		online:        newFIFO[string](),
		receipts:      make(chan pendingReceipt, receiptsPending),
		cpu:           make(chan struct{}, runtime.GOMAXPROCS(0)),
		states:        map[string]*DeviceState{},
		gaps:          map[string]*seqGap{},
		onlinePending: map[string]bool{},
		stop:          make(chan struct{}),
	}
	for range opts.Workers {
		h.shards = append(h.shards, newFIFO[inbound]())
	}

	co := paho.NewClientOptions().
		AddBroker(opts.BrokerURL).
		SetClientID(opts.ClientID).
		SetUsername(opts.Username).
		SetPassword(opts.Password).
		// A persistent session under a stable client id: the broker keeps
		// our subscriptions and queues devices' events while the daemon is
		// down or reconnecting.
		SetCleanSession(false).
		// An event is acknowledged to the broker only once it is in the
		// as-run log (or refused for good), so that whatever the daemon had
		// not logged when it stopped is delivered to it again.
		SetAutoAckDisabled(true).
		// The handler never blocks (it only appends to a queue), so the
		// router may keep the arrival order, which a device's statuses need.
		SetOrderMatters(true).
		SetDefaultPublishHandler(h.onMessage).
		SetKeepAlive(30 * time.Second).
		SetPingTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(30 * time.Second).
		SetConnectRetry(true).
		SetConnectRetryInterval(2 * time.Second).
		SetOnConnectHandler(h.onConnect).
		SetConnectionLostHandler(h.onConnectionLost).
		SetConnectionNotificationHandler(h.onConnectionNotification)
	if opts.TLSConfig != nil {
		co.SetTLSConfig(opts.TLSConfig)
	}
	h.client = paho.NewClient(co)
	return h, nil
}

// Run connects, processes messages until ctx is done, then stops the workers
// (each finishes the message in hand; what is still queued stays
// unacknowledged, for the broker to deliver again) and disconnects.
func (h *Hub) Run(ctx context.Context) error {
	if !h.ran.CompareAndSwap(false, true) {
		return errors.New("device hub: Run called twice")
	}
	var wg sync.WaitGroup
	for _, q := range h.shards {
		wg.Go(func() { h.eventWorker(ctx, q) })
	}
	wg.Go(h.statusWorker)
	for range onlineWorkers {
		wg.Go(h.onlineWorker)
	}
	wg.Go(h.gapLoop)
	var receipts sync.WaitGroup
	receipts.Go(h.receiptWatcher)

	// With ConnectRetry the token completes only once connected; progress
	// and failures are logged by the connection handlers.
	h.client.Connect()
	h.log.Info("device hub started", "broker", h.opts.BrokerURL, "client_id", h.opts.ClientID, "workers", h.opts.Workers)

	<-ctx.Done()
	close(h.stop)
	// Workers first, so that the receipts of the events they are finishing
	// still go out, and are acknowledged (each within the publish
	// timeout); then the connection.
	wg.Wait()
	close(h.receipts)
	receipts.Wait()
	h.client.Disconnect(1000)
	h.connected.Store(false)
	h.m.connected.Set(0)
	h.log.Info("device hub stopped")
	return nil
}

// Connected reports whether the hub is connected and subscribed (readiness).
func (h *Hub) Connected() bool { return h.connected.Load() && h.client.IsConnectionOpen() }

func (h *Hub) onConnect(c paho.Client) {
	filters := map[string]byte{h.topics.filter(kindEvents): 1, h.topics.filter(kindStatus): 1}
	// Paho runs this in its own goroutine, so waiting here is safe. The
	// session may already hold the subscriptions; subscribing again is
	// harmless and covers a broker that lost them.
	for attempt := 1; ; attempt++ {
		err := h.waitToken(context.Background(), c.SubscribeMultiple(filters, nil))
		if err == nil {
			h.connected.Store(true)
			h.m.connected.Set(1)
			h.log.Info("connected to the broker and subscribed", "broker", h.opts.BrokerURL)
			return
		}
		h.log.Error("subscribe to device topics failed", "attempt", attempt, "err", err)
		select {
		case <-h.stop:
			return
		case <-time.After(min(time.Duration(attempt)*time.Second, 30*time.Second)):
		}
		if !c.IsConnectionOpen() {
			return // the next connection subscribes again
		}
	}
}

func (h *Hub) onConnectionLost(_ paho.Client, err error) {
	h.connected.Store(false)
	h.m.connected.Set(0)
	h.log.Warn("lost the connection to the broker; reconnecting", "err", err)
}

func (h *Hub) onConnectionNotification(_ paho.Client, n paho.ConnectionNotification) {
	switch n := n.(type) {
	case paho.ConnectionNotificationFailed:
		h.log.Warn("cannot connect to the broker; retrying", "broker", h.opts.BrokerURL, "err", n.Reason)
	case paho.ConnectionNotificationBrokerFailed:
		h.log.Warn("cannot connect to the broker; retrying", "broker", n.Broker.Redacted(), "err", n.Reason)
	}
}

// onMessage is paho's handler for everything we receive. It must not block:
// it only routes the message to a queue.
func (h *Hub) onMessage(_ paho.Client, msg paho.Message) {
	in := inbound{payload: msg.Payload(), at: h.now(), ack: msg.Ack}
	id, kind, ok := h.topics.parse(msg.Topic())
	if !ok || (kind != kindEvents && kind != kindStatus) {
		h.log.Warn("ignoring a message on an unexpected topic", "topic", msg.Topic())
		msg.Ack()
		return
	}
	in.device = id
	h.m.queued.Inc()
	if kind == kindStatus {
		h.statuses.push(in)
		return
	}
	h.shards[h.shard(id)].push(in)
}

func (h *Hub) shard(device string) int {
	f := fnv.New32a()
	_, _ = f.Write([]byte(device))
	return int(f.Sum32() % uint32(len(h.shards)))
}

func (h *Hub) eventWorker(ctx context.Context, q *fifo[inbound]) {
	for {
		in, ok := q.pop(h.stop)
		if !ok {
			return
		}
		h.m.queued.Dec()
		h.safely("event", in.device, func() { h.handleEvent(ctx, in) })
	}
}

func (h *Hub) statusWorker() {
	for {
		in, ok := h.statuses.pop(h.stop)
		if !ok {
			return
		}
		h.m.queued.Dec()
		h.safely("status", in.device, func() { h.handleStatus(in) })
	}
}

// safely runs fn and turns a panic into a log line: no payload may stop the
// daemon. A panic here is a bug; the message stays unacknowledged.
func (h *Hub) safely(what, device string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			if what == "event" {
				h.m.eventsFailed.Inc()
			}
			h.log.Error("panic while handling a device message", "what", what, "device", device, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	fn()
}

// PublishSnapshot publishes a device's schedule, retained, and waits for the
// broker's acknowledgement (which, across a reconnect, does not prove that
// the device got it: see OnOnline).
func (h *Hub) PublishSnapshot(ctx context.Context, snap broadcast.Snapshot) error {
	if snap.V == 0 {
		snap.V = broadcast.ProtocolVersion
	}
	payload, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("snapshot for device %s: %w", snap.Device, err)
	}
	// Refuse here what the device would refuse: a bug in the daemon should
	// fail loudly at the source, not as a silent "ignored" on a receiver.
	if err := checkSnapshot(snap, len(payload)); err != nil {
		return fmt.Errorf("snapshot for device %s rev %d: %w", snap.Device, snap.Rev, err)
	}
	if err := h.publish(ctx, h.topics.device(snap.Device, kindSchedule), true, payload, kindSchedule); err != nil {
		return fmt.Errorf("publish snapshot rev %d to device %s: %w", snap.Rev, snap.Device, err)
	}
	h.m.snapshots.Inc()
	return nil
}

// PlayNow tells a device to play an item at once (an emergency broadcast).
func (h *Hub) PlayNow(ctx context.Context, device string, item broadcast.Item) error {
	return h.command(ctx, device, broadcast.Command{Type: broadcast.CmdPlayNow, Item: &item})
}

// Stop tells a device to stop what it plays.
func (h *Hub) Stop(ctx context.Context, device string) error {
	return h.command(ctx, device, broadcast.Command{Type: broadcast.CmdStop})
}

// Ping asks a device for a fresh status.
func (h *Hub) Ping(ctx context.Context, device string) error {
	return h.command(ctx, device, broadcast.Command{Type: broadcast.CmdPing})
}

func (h *Hub) command(ctx context.Context, device string, cmd broadcast.Command) error {
	if !broadcast.ValidID(device) {
		return fmt.Errorf("%s command: %q is not a device id", cmd.Type, device)
	}
	cmd.V = broadcast.ProtocolVersion
	payload, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("%s command for device %s: %w", cmd.Type, device, err)
	}
	if _, err := broadcast.DecodeCommand(payload); err != nil {
		return fmt.Errorf("%s command for device %s: %w", cmd.Type, device, err)
	}
	if err := h.publish(ctx, h.topics.device(device, kindCmd), false, payload, cmd.Type); err != nil {
		return fmt.Errorf("publish %s to device %s: %w", cmd.Type, device, err)
	}
	return nil
}

// publish sends at QoS 1 and waits for the broker's acknowledgement, the
// context, or the publish timeout, whichever comes first.
func (h *Hub) publish(ctx context.Context, topic string, retained bool, payload []byte, kind string) error {
	if !broadcast.ValidID(topicDevice(h.topics, topic)) {
		return fmt.Errorf("topic %q is not a device topic", topic)
	}
	err := h.waitToken(ctx, h.client.Publish(topic, 1, retained, payload))
	if err != nil {
		h.m.publishFailures.WithLabelValues(kind).Inc()
	}
	return err
}

func topicDevice(t topics, topic string) string {
	id, _, _ := t.parse(topic)
	return id
}

func (h *Hub) waitToken(ctx context.Context, tok paho.Token) error {
	timer := time.NewTimer(h.opts.PublishTimeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("no acknowledgement from the broker within %s", h.opts.PublishTimeout)
	}
}
