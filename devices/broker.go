package devices

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loaxa/loaxa/broadcast"
)

// DeviceRegistry is what the broker and the hub need to know of devices.
// *storage.Store satisfies it.
type DeviceRegistry interface {
	// Device returns the device, or an error for which broadcast.IsNotFound
	// is true.
	Device(id string) (broadcast.Device, error)
}

// BrokerOptions configure the embedded broker.
type BrokerOptions struct {
	Listen    string // host:port; port 0 picks a free one (see Addr)
	TopicRoot string // default DefaultTopicRoot
	Devices   DeviceRegistry

	// RootUser and RootPassword are the daemon's own credentials: the hub
	// connects with them and may use every topic. The daemon makes a fresh
	// random password per process, so it is never stored anywhere.
	RootUser, RootPassword string

	Logger *slog.Logger // default: discard

	// DeviceQueue and DaemonQueue are how many packets mochi queues for
	// writing to a device's connection and to the daemon's before it drops
	// QoS 1 messages (its MaximumClientWritesPending, which it allocates
	// per connection at 8 bytes a slot); 0 means DefaultDeviceQueue and
	// DefaultDaemonQueue, whose comment says why they differ so much.
	DeviceQueue, DaemonQueue int

	// AuthFailures is how many failed CONNECTs an address, or a user name,
	// may make before it must wait (1 s, doubling up to a minute); 0
	// means 5, negative turns the backoff off.
	AuthFailures int
	// AuthLogInterval is how often refused CONNECTs are summed up in one
	// log line; default one minute. Close writes the last one.
	AuthLogInterval time.Duration
	// Registerer takes the broker's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Broker is the embedded MQTT broker: mochi-mqtt with our access rules and
// no storage hook. Mochi's storage hook loses queued messages across
// restarts, so persisting them would only pretend: a restart of the broker
// is covered instead by devices re-sending their outbox on reconnect and the
// daemon re-publishing snapshots when a device comes online.
type Broker struct {
	opts   BrokerOptions
	log    *slog.Logger
	server *mqtt.Server
	tcp    *queueListener
	guard  *authGuard

	stopGuard context.CancelFunc
	guardDone chan struct{}

	mu      sync.Mutex
	started bool
	closed  bool
}

// NewBroker checks the options and prepares the broker; Start listens.
func NewBroker(opts BrokerOptions) (*Broker, error) {
	t, err := newTopics(opts.TopicRoot)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	opts.TopicRoot = t.root
	switch {
	case opts.Devices == nil:
		return nil, errors.New("embedded broker: no device registry")
	case opts.RootUser == "" || opts.RootPassword == "":
		return nil, errors.New("embedded broker: the daemon's user and password are required")
	case opts.Listen == "":
		return nil, errors.New("embedded broker: no listen address")
	case opts.DeviceQueue < 0 || opts.DeviceQueue > math.MaxInt32 || opts.DaemonQueue < 0 || opts.DaemonQueue > math.MaxInt32:
		return nil, fmt.Errorf("embedded broker: write queues of %d and %d packets are out of range", opts.DeviceQueue, opts.DaemonQueue)
	}
	if opts.DeviceQueue == 0 {
		opts.DeviceQueue = DefaultDeviceQueue
	}
	if opts.DaemonQueue == 0 {
		opts.DaemonQueue = DefaultDaemonQueue
	}
	if opts.AuthFailures == 0 {
		opts.AuthFailures = 5
	}
	if opts.AuthLogInterval <= 0 {
		opts.AuthLogInterval = time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("component", "broker")

	caps := mqtt.NewDefaultServerCapabilities()
	// Mochi's limits are server-wide: it has no per-client setting, so the
	// daemon's session is lifted by lifting them for everyone, where that
	// costs nothing for the devices. The write queue, which would cost
	// them, is sized per connection by queueListener.
	//
	// In-flight QoS 1 messages to one client live in a map that fills only
	// as needed, so the maximum costs a device nothing. The daemon
	// acknowledges an event only once it is logged, so its in-flight count
	// is its backlog: at mochi's default of 8192 a burst beyond that is
	// dropped, silently (measured: ~22 % lost to a subscriber that falls
	// behind). 65535 is the packet id space, the most MQTT allows.
	caps.MaximumInflight = math.MaxUint16
	// The daemon publishes receipts and snapshots concurrently; mochi
	// disconnects a client that exceeds its receive quota.
	caps.ReceiveMaximum = math.MaxUint16
	// By default mochi deletes retained messages and queued QoS 1 messages
	// after a day. A retained schedule must outlive a device that is off for
	// a week, and events queued for the daemon must wait for it however long
	// it is down; 0 turns the expiry off.
	caps.MaximumMessageExpiryInterval = 0
	// MaximumClientWritesPending is set per connection by queueListener.
	// Every message of the protocol is QoS 1; a snapshot is the largest.
	caps.MaximumQos = 1
	caps.MaximumPacketSize = broadcast.MaxSnapshotPayload + 64<<10
	// A device may subscribe only to its own two topics; shared
	// subscriptions would be a way around that.
	caps.SharedSubAvailable = 0

	server := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       log,
		// Never the inline client: it skips access checks and reports
		// success when delivery failed. The daemon connects over TCP.
		InlineClient: false,
	})
	guard := newAuthGuard(opts.RootUser, opts.AuthFailures, log)
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{guard.failures, guard.throttled} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("embedded broker: metrics: %w", err)
			}
		}
	}
	hook := &authHook{
		guard:    guard,
		topics:   t,
		devices:  opts.Devices,
		rootUser: opts.RootUser,
		rootHash: sha256.Sum256([]byte(opts.RootPassword)),
		log:      log,
		info:     &server.Info.Inflight,
		shadowed: map[*mqtt.Client]packets.Packet{},
		holding:  map[*mqtt.Client]retainedHold{},
	}
	if err := server.AddHook(hook, nil); err != nil {
		return nil, fmt.Errorf("embedded broker: add access hook: %w", err)
	}
	return &Broker{
		opts:   opts,
		log:    log,
		server: server,
		guard:  guard,
		tcp: &queueListener{
			guard:       guard,
			TCP:         listeners.NewTCP(listeners.Config{ID: "tcp", Address: opts.Listen}),
			caps:        caps,
			rootUser:    opts.RootUser,
			deviceQueue: int32(opts.DeviceQueue),
			daemonQueue: int32(opts.DaemonQueue),
			maxConnect:  int(caps.MaximumPacketSize),
		},
	}, nil
}

// Start binds the listener and serves in the background.
func (b *Broker) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return errors.New("embedded broker: already started or closed")
	}
	if err := b.server.AddListener(b.tcp); err != nil {
		return fmt.Errorf("embedded broker: listen on %s: %w", b.opts.Listen, err)
	}
	if err := b.server.Serve(); err != nil {
		_ = b.server.Close()
		b.closed = true
		return fmt.Errorf("embedded broker: serve: %w", err)
	}
	b.started = true
	ctx, cancel := context.WithCancel(context.Background())
	b.stopGuard, b.guardDone = cancel, make(chan struct{})
	go b.guard.run(ctx, b.opts.AuthLogInterval, b.guardDone)
	b.log.Info("embedded broker listening", "addr", b.tcp.Address(), "topic_root", b.opts.TopicRoot)
	return nil
}

// Addr is the address the broker listens on: the real port once started,
// also when Listen asked for port 0.
func (b *Broker) Addr() string { return b.tcp.Address() }

// Disconnect drops a device's connection, e.g. after it was disabled: the
// broker checks credentials only when a device connects.
func (b *Broker) Disconnect(device string) bool {
	cl, ok := b.server.Clients.Get("dev-" + device)
	if !ok || cl.Closed() {
		return false
	}
	_ = b.server.DisconnectClient(cl, packets.ErrNotAuthorized)
	return true
}

// Close disconnects every client and stops the listener; it waits for the
// clients' goroutines. Queued messages are lost, on purpose (see Broker).
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if !b.started {
		return nil
	}
	// Mochi v2.7.9's own way of dropping a listener's clients
	// (closeListenerClients → Clients.GetByListener) read-locks the client
	// map twice, and deadlocks when a client leaving in between waits for
	// the write lock: CI hung 20 minutes on it. So the listener is closed
	// with a closer that does nothing, the clients are stopped from one
	// read of the map, and Close finds the listener closed already.
	b.server.Listeners.Close(b.tcp.ID(), func(string) {})
	for _, cl := range b.server.Clients.GetAll() {
		cl.Stop(packets.ErrServerShuttingDown)
	}
	err := b.server.Close()
	// The last summary of refused connections, after the listener stopped.
	b.stopGuard()
	<-b.guardDone
	if err != nil {
		return fmt.Errorf("embedded broker: close: %w", err)
	}
	return nil
}

// authHook authenticates devices and the daemon and confines each device to
// its own four topics. It also repairs a mochi bug that loses queued messages
// (see OnPacketRead).
type authHook struct {
	mqtt.HookBase
	guard    *authGuard
	topics   topics
	devices  DeviceRegistry
	rootUser string
	rootHash [32]byte
	log      *slog.Logger
	info     *int64 // mochi's count of in-flight messages, kept right

	mu       sync.Mutex
	shadowed map[*mqtt.Client]packets.Packet
	holding  map[*mqtt.Client]retainedHold // which side of retained a client's goroutine holds, under mu

	// retained orders mochi's writes of retained messages against its scans
	// of them for a new subscription (see OnPacketSent).
	retained sync.RWMutex
}

type retainedHold uint8

const (
	holdWrite retainedHold = 1 << iota
	holdRead
)

func (h *authHook) ID() string { return "loaxa-access" }

func (h *authHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnPublishDropped, mqtt.OnQosDropped,
		mqtt.OnPacketRead, mqtt.OnPacketProcessed, mqtt.OnDisconnect,
		mqtt.OnWill, mqtt.OnRetainMessage, mqtt.OnPacketSent:
		return true
	}
	return false
}

func (h *authHook) isRoot(user []byte) bool { return string(user) == h.rootUser }

// OnConnectAuthenticate lets in the daemon with its per-process password, and
// an enabled device with its secret, client id dev-<id>, and a last will (if
// any) on its own status topic only: mochi publishes a will without an access
// check, so an unchecked will would let a device speak for another.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := pk.Connect.Username
	if h.isRoot(user) {
		// Hash both sides so that the comparison takes the same time
		// whatever the length of the guess.
		got := sha256.Sum256(pk.Connect.Password)
		if subtle.ConstantTimeCompare(got[:], h.rootHash[:]) == 1 {
			return true
		}
		h.guard.refused(cl.Net.Remote, string(user), "daemon_password")
		return false
	}
	id := string(user)
	// Refusals are summed up by the guard, one log line an interval: a
	// line each would let a flood of CONNECTs fill the disk.
	refuse := func(reason string) bool {
		h.guard.refused(cl.Net.Remote, id, reason)
		return false
	}
	if !broadcast.ValidID(id) {
		return refuse("bad_username")
	}
	if pk.Connect.ClientIdentifier != "dev-"+id {
		return refuse("bad_client_id")
	}
	dev, err := h.devices.Device(id)
	switch {
	case broadcast.IsNotFound(err):
		return refuse("unknown_device")
	case err != nil:
		// Fail closed: the device retries, and the log says why.
		h.log.Warn("broker refused a device: the device registry is unavailable", "device", id, "err", err)
		return refuse("registry_unavailable")
	case dev.Disabled:
		return refuse("disabled")
	case !broadcast.VerifySecret(dev.SecretHash, string(pk.Connect.Password)):
		return refuse("wrong_secret")
	case pk.Connect.WillFlag && pk.Connect.WillTopic != h.topics.device(id, kindStatus):
		return refuse("bad_will")
	}
	h.guard.accepted(id)
	return true
}

// OnACLCheck is called for every publish (write), subscription and delivery
// (read). Device topics are compared exactly, so a filter with a wildcard
// never matches and is refused.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := cl.Properties.Username
	if h.isRoot(user) {
		return true
	}
	id := string(user)
	if !broadcast.ValidID(id) {
		return false
	}
	if write {
		return topic == h.topics.device(id, kindEvents) || topic == h.topics.device(id, kindStatus)
	}
	return topic == h.topics.device(id, kindSchedule) || topic == h.topics.device(id, kindCmd)
}

// OnPublish drops the retain flag from a device's event: a retained event
// would be delivered to the daemon again at every subscription, for ever.
// A publish still retained is about to be stored (see OnPacketSent).
func (h *authHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Retain && !h.isRoot(cl.Properties.Username) && strings.HasSuffix(pk.TopicName, "/"+kindEvents) {
		pk.FixedHeader.Retain = false
	}
	if pk.FixedHeader.Retain {
		// Mochi stores it right after this hook (we return no error), and
		// then calls OnRetainMessage, which releases the lock.
		h.hold(cl, holdWrite)
	}
	return pk, nil
}

// OnWill takes the write side for a retained last will, which mochi stores
// right after this hook unless the will is delayed (MQTT 5 only).
func (h *authHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.Retain && will.WillDelayInterval == 0 {
		h.hold(cl, holdWrite)
	}
	return will, nil
}

// OnRetainMessage follows mochi's storing of a retained message.
func (h *authHook) OnRetainMessage(cl *mqtt.Client, _ packets.Packet, _ int64) {
	h.release(cl, holdWrite)
}

// OnPacketSent works around a data race in mochi v2.7.9: storing a
// retained message writes its topic's retainPath under the topic index's
// locks, while the scan for the retained messages of a new subscription
// reads it without them. The daemon re-publishes every device's snapshot
// (retained) while devices reconnect and subscribe, after each restart, and
// the race detector caught the two in the resilience tests; a torn read of
// the first retainPath of a topic could crash the broker. So the scan holds
// the read side of h.retained from the SUBACK, which mochi writes just
// before it, until the SUBSCRIBE has been processed; the store holds the
// write side from OnPublish (or OnWill) to OnRetainMessage. Neither side
// waits on the network meanwhile: the scan only queues what it finds.
func (h *authHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Suback {
		h.hold(cl, holdRead)
	}
}

// hold takes a side of h.retained for the client's goroutine, noting it so
// that only what was taken is released.
func (h *authHook) hold(cl *mqtt.Client, side retainedHold) {
	if side == holdWrite {
		h.retained.Lock()
	} else {
		h.retained.RLock()
	}
	h.mu.Lock()
	h.holding[cl] |= side
	h.mu.Unlock()
}

func (h *authHook) release(cl *mqtt.Client, side retainedHold) {
	h.mu.Lock()
	held := h.holding[cl]&side != 0
	if held {
		if h.holding[cl] &^= side; h.holding[cl] == 0 {
			delete(h.holding, cl)
		}
	}
	h.mu.Unlock()
	switch {
	case !held:
	case side == holdWrite:
		h.retained.Unlock()
	default:
		h.retained.RUnlock()
	}
}

// OnPublishDropped reports what mochi threw away because a client's write
// queue was full. Nothing is lost for good (devices keep events until a
// receipt, and snapshots are re-published when a device comes online), but
// it delays evidence, so it is loud.
func (h *authHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	if h.isRoot(cl.Properties.Username) {
		h.log.Error("broker dropped a message to the daemon: its write queue is full; the device re-sends it on reconnect",
			"topic", pk.TopicName, "client_id", cl.ID)
		return
	}
	h.log.Warn("broker dropped a message to a device: its write queue is full", "topic", pk.TopicName, "client_id", cl.ID)
}

// OnQosDropped reports an in-flight message mochi gave up on.
func (h *authHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	h.log.Warn("broker dropped an in-flight message", "client_id", cl.ID, "packet_id", pk.PacketID)
}

// OnPacketRead works around a mochi v2.7.9 bug. Mochi keeps one in-flight
// map per client for both directions, and when a client publishes with
// packet id N it deletes whatever is in flight under N: the record of the
// message the broker sent that client under the same id (ids are assigned
// independently on each side, so they collide all the time). The message
// itself was sent; what is lost is its redelivery if the client reconnects
// before acknowledging it. The daemon both receives events and publishes
// receipts, and acknowledges an event only once it is logged, so without
// this repair a restart of the daemon loses queued events to the broker
// (TestHubRedeliversAfterRestart loses one of its four without it). The record is put aside here and put back once
// mochi has processed the publish. A client's packets are processed one at a
// time, and mochi hands out outbound ids in sequence, so nothing else takes
// the id meanwhile.
func (h *authHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 {
		return pk, nil
	}
	if out, ok := cl.State.Inflight.Get(pk.PacketID); ok && out.FixedHeader.Type == packets.Publish {
		h.mu.Lock()
		h.shadowed[cl] = out
		h.mu.Unlock()
	}
	return pk, nil
}

// OnPacketProcessed puts back the record OnPacketRead put aside, and ends
// a subscription's scan of retained messages (see OnPacketSent). Mochi
// calls it after every SUBSCRIBE that got as far as its SUBACK.
func (h *authHook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type == packets.Subscribe {
		h.release(cl, holdRead)
		return
	}
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	h.mu.Lock()
	out, ok := h.shadowed[cl]
	if ok && out.PacketID == pk.PacketID {
		delete(h.shadowed, cl)
	} else {
		ok = false
	}
	h.mu.Unlock()
	if !ok {
		return
	}
	if _, taken := cl.State.Inflight.Get(out.PacketID); !taken && cl.State.Inflight.Set(out) {
		atomic.AddInt64(h.info, 1)
	}
}

// OnDisconnect forgets what OnPacketRead put aside for a client whose
// publish was never processed.
func (h *authHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	delete(h.shadowed, cl)
	h.mu.Unlock()
}
