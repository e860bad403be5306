package agent

import (
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/loaxa/loaxa/broadcast"
)

// MQTT timings. KeepAlive is never 0 (paho would never notice a dead 4G
// link); the write timeout bounds a publish into a stuck connection.
const (
	keepAlive      = 30 * time.Second
	writeTimeout   = 10 * time.Second
	connectTimeout = 30 * time.Second
	subscribeWait  = 10 * time.Second
)

// inMsg is what paho's handlers hand to the agent's loop.
type inMsg struct {
	topic   string
	payload []byte
	link    linkChange
}

type linkChange int

const (
	linkNone linkChange = iota
	linkUp              // the connection (re)opened and the subscriptions are placed
	linkDown            // the connection was lost
)

// inbox is an unbounded-until-max queue between paho's handlers and the
// agent's loop. Handlers must never block: with paho's ordered routing a
// blocked handler stops the client, which then cannot deliver the acks the
// loop's own publishes wait for.
type inbox struct {
	mu     sync.Mutex
	msgs   []inMsg
	max    int
	signal chan struct{} // capacity 1: "there is something"
}

func newInbox(max int) *inbox {
	return &inbox{max: max, signal: make(chan struct{}, 1)}
}

// push queues m and reports false if the queue is full (m is dropped; a
// retained snapshot comes again on the next reconnect, a command is the
// daemon's to repeat).
func (q *inbox) push(m inMsg) bool {
	q.mu.Lock()
	ok := len(q.msgs) < q.max || m.link != linkNone
	if ok {
		q.msgs = append(q.msgs, m)
	}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
	return ok
}

func (q *inbox) take() []inMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.msgs
	q.msgs = nil
	return m
}

// outMsg is one publish.
type outMsg struct {
	topic    string
	payload  []byte
	retained bool
}

// publisher owns every publish, in its own goroutine, so that the agent's
// loop never waits on the network: a broadcast must start on time whether
// or not the 4G link is up.
type publisher struct {
	client mqtt.Client
	log    *slog.Logger

	mu      sync.Mutex
	queue   []outMsg
	max     int
	signal  chan struct{}
	closing chan struct{} // closed by close: send what is queued, then return
	abort   chan struct{} // closed when the shutdown's grace is over: stop waiting
	done    chan struct{}
}

func newPublisher(client mqtt.Client, log *slog.Logger, max int) *publisher {
	return &publisher{client: client, log: log, max: max,
		signal: make(chan struct{}, 1), closing: make(chan struct{}), abort: make(chan struct{}), done: make(chan struct{})}
}

// enqueue never blocks. Events dropped here are still in the durable outbox
// and go out on the next resend.
func (p *publisher) enqueue(m outMsg) {
	p.mu.Lock()
	if len(p.queue) < p.max {
		p.queue = append(p.queue, m)
	} else {
		p.log.Warn("publish queue full; message dropped until the next resend", "topic", m.topic)
	}
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// run publishes until close; then it sends what is queued and returns.
func (p *publisher) run() {
	defer close(p.done)
	for {
		select {
		case <-p.signal:
			p.drain()
		case <-p.closing:
			p.drain()
			return
		}
	}
}

// close asks run to finish what is queued and waits at most d for it; then
// run gives up waiting for acknowledgements and returns (within a write
// timeout, if paho is stuck in a write).
func (p *publisher) close(d time.Duration) {
	close(p.closing)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.log.Warn("publishes still pending at shutdown; events stay in the outbox")
	}
	close(p.abort)
}

func (p *publisher) drain() {
batches:
	for {
		p.mu.Lock()
		batch := p.queue
		p.queue = nil
		p.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		var tokens []mqtt.Token
		for _, m := range batch {
			// Not connected: drop rather than let paho queue it in memory.
			// Events are in the outbox and the status is rebuilt, both sent
			// again as soon as the connection opens.
			if p.aborted() || !p.client.IsConnectionOpen() {
				continue
			}
			tokens = append(tokens, p.client.Publish(m.topic, 1, m.retained, m.payload))
		}
		// Waiting for the acks paces the publishes to what the link takes.
		// A completed token only says the broker took the message; the
		// receipt is the proof, so errors are worth a debug line, no more.
		timeout := time.NewTimer(writeTimeout + 5*time.Second)
		for _, t := range tokens {
			select {
			case <-t.Done():
				if err := t.Error(); err != nil {
					p.log.Debug("publish failed; the outbox will resend", "err", err)
				}
			case <-timeout.C:
				p.log.Debug("publishes not acknowledged in time; the outbox will resend")
				continue batches
			case <-p.abort:
				timeout.Stop()
				return
			}
		}
		timeout.Stop()
	}
}

func (p *publisher) aborted() bool {
	select {
	case <-p.abort:
		return true
	default:
		return false
	}
}

// newClient builds the paho client as docs/protocol.md asks, with what
// paho's known traps call for:
// a stable client id, a persistent session, QoS 1, a retained offline will,
// subscriptions placed in the on-connect handler, handlers that only hand off.
func (a *Agent) newClient(q *inbox) mqtt.Client {
	onMsg := func(_ mqtt.Client, m mqtt.Message) {
		payload := m.Payload()
		if len(payload) > broadcast.MaxSnapshotPayload {
			// Refuse before copying: a hostile payload should cost nothing.
			a.reject(broadcast.RejectTooLarge, "payload on "+m.Topic()+" exceeds the largest any topic allows")
			return
		}
		if !q.push(inMsg{topic: m.Topic(), payload: append([]byte(nil), payload...)}) {
			a.reject("overflow", "inbox full, message on "+m.Topic()+" dropped")
		}
	}
	will, _ := jsonMarshal(broadcast.DeviceStatus{V: broadcast.ProtocolVersion, Device: a.cfg.Device, State: "offline"})
	opts := mqtt.NewClientOptions().
		AddBroker(a.cfg.Broker).
		SetClientID("dev-"+a.cfg.Device).
		SetCleanSession(false).
		SetUsername(a.cfg.Device).
		SetPassword(a.cfg.Secret).
		SetKeepAlive(keepAlive).
		SetWriteTimeout(writeTimeout).
		SetConnectTimeout(connectTimeout).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(a.opts.ReconnectMax).
		SetMaxReconnectInterval(a.opts.ReconnectMax).
		SetOrderMatters(true).
		SetBinaryWill(a.topics.status, will, 1, true).
		SetStore(&copyingStore{Store: mqtt.NewMemoryStore()}).
		// With a persistent session the broker delivers queued messages right
		// after CONNACK, before our SUBSCRIBE is routed; they land here.
		SetDefaultPublishHandler(onMsg).
		SetOnConnectHandler(func(c mqtt.Client) {
			// paho runs this in its own goroutine, so waiting here is safe.
			t := c.SubscribeMultiple(map[string]byte{a.topics.schedule: 1, a.topics.cmd: 1}, onMsg)
			if !t.WaitTimeout(subscribeWait) || t.Error() != nil {
				a.log.Warn("subscribe failed; relying on the persistent session", "err", t.Error())
			}
			a.log.Info("connected to broker", "broker", a.cfg.Broker)
			q.push(inMsg{link: linkUp})
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			a.log.Warn("connection to broker lost; reconnecting", "err", err)
			q.push(inMsg{link: linkDown})
		}).
		SetReconnectingHandler(func(_ mqtt.Client, _ *mqtt.ClientOptions) {
			a.log.Debug("reconnecting to broker")
		})
	return mqtt.NewClient(opts)
}

// copyingStore is paho's memory store, holding copies of PUBLISH packets.
// paho v1.5.1 keeps the very packet it is writing and, when it resumes the
// persistent session after a reconnect, sets its DUP flag while the writer
// may still be encoding it: a data race (seen under -race). A copy on the
// way in and out keeps the resumed packet apart from the one on the wire.
// (The store stays in memory: the outbox, not paho, is what survives a
// restart.)
type copyingStore struct {
	mqtt.Store
}

func (s *copyingStore) Put(key string, m packets.ControlPacket) { s.Store.Put(key, copyPacket(m)) }

func (s *copyingStore) Get(key string) packets.ControlPacket { return copyPacket(s.Store.Get(key)) }

func copyPacket(m packets.ControlPacket) packets.ControlPacket {
	if p, ok := m.(*packets.PublishPacket); ok && p != nil {
		cp := *p
		return &cp
	}
	return m
}
