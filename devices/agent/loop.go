package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

const (
	// maxWait bounds every sleep of the loop: NTP may step the wall clock
	// (a receiver that booted with its RTC's guess), and a timer armed for
	// "start - now" before the step would fire at the wrong wall time.
	maxWait = time.Second
	// maintenanceEvery is how often unused audio and old marks are dropped.
	maintenanceEvery = time.Hour
	// marksKept is how long the emitted marks of an airing that left the
	// schedule are kept, in case an older daemon state brings it back.
	marksKept = 14 * 24 * time.Hour
	// playNowWindow is how long a play_now without not_after may wait for its
	// audio: an emergency delivered an hour late is no longer one.
	playNowWindow = 15 * time.Minute
	// failsBeforeGivingUp is how many failed downloads make an item whose
	// start has come report failed/download_failed.
	failsBeforeGivingUp = 2
)

// liveItem is an item the agent may still have to act on: from the snapshot
// (order 0) or from a play_now command (order > 0, later ones higher).
type liveItem struct {
	broadcast.Item
	order uint64
}

// outranks says whether x should sound rather than y: a higher priority, or
// the same priority from a later play_now ("play at once, preempting
// whatever plays").
func (x liveItem) outranks(y liveItem) bool {
	if x.Priority != y.Priority {
		return x.Priority > y.Priority
	}
	return x.order > y.order
}

// playback is the airing being played.
type playback struct {
	item       liveItem
	startedAt  time.Time
	sha        string // of the file actually handed to the player
	cancel     context.CancelFunc
	stopReason string // why the agent stopped it: preempted, cancelled, power
}

// pending is one event to commit, with the marks it sets; ev nil sets marks
// only.
type pending struct {
	airing string
	ev     *broadcast.Event
	marks  []string
}

// loop is the state of a running agent. Only the goroutine in run touches
// it, so none of it needs a lock; paho, downloads and the player talk to it
// through channels.
type loop struct {
	a      *Agent
	st     *store
	client mqtt.Client
	pub    *publisher

	snap     broadcast.Snapshot
	adhoc    []adhocItem
	nextSeq  uint64
	receipt  receiptState
	emitted  map[string]map[string]emittedMark
	cache    map[string]cacheEntry
	outboxN  int
	lastSent map[uint64]time.Time // seq → last publish, for the periodic resend

	play     *playback
	playDone chan error

	fetching    string // sha256 being downloaded, "" when idle
	fetchCancel context.CancelFunc
	fetchDone   chan fetchResult
	fails       map[string]int       // sha256 → failed downloads since start
	retryAt     map[string]time.Time // sha256 → not before

	blocked     map[string]bool // airings kept from starting by a higher one playing
	clockOffset time.Duration
	// online is true from the on-connect handler's signal (subscriptions
	// placed) to the loss of the connection: only then can a receipt come
	// back for what is resent.
	online bool

	nextResend      time.Time
	nextMaintenance time.Time
}

func newLoop(a *Agent, st *store) (*loop, error) {
	p, err := st.load()
	if err != nil {
		return nil, err
	}
	l := &loop{
		a: a, st: st,
		snap: p.snap, adhoc: p.adhoc, nextSeq: p.nextSeq, receipt: p.receipt,
		emitted: p.emitted, cache: p.cache, outboxN: p.outboxN,
		lastSent: map[uint64]time.Time{},
		playDone: make(chan error, 1), fetchDone: make(chan fetchResult, 1),
		fails: map[string]int{}, retryAt: map[string]time.Time{}, blocked: map[string]bool{},
	}
	if p.playing != nil {
		l.play = &playback{item: liveItem{Item: broadcast.Item{Airing: p.playing.Airing}}, startedAt: p.playing.StartedAt, sha: p.playing.SHA256}
	}
	return l, nil
}

// recover brings the state left by the last run, however it ended, to a
// consistent start.
func (l *loop) recover() error {
	now := l.a.clock.Now()
	// An airing that was playing when the agent died cannot be finished
	// properly: replaying it from the start would sound twice, resuming it in
	// the middle would sound half. It is reported as failed/power — the
	// honest account — and the daemon plans a make-up.
	if l.play != nil {
		p := l.play
		l.play = nil
		var batch []pending
		if !l.has(p.item.Airing, markDone) {
			ev := &broadcast.Event{Airing: p.item.Airing, Event: broadcast.EventFailed, Reason: "power", StartedAt: p.startedAt, SHA256: p.sha}
			batch = append(batch, pending{airing: p.item.Airing, ev: ev, marks: []string{markOf(ev.Event, ev.Reason), markDone}})
		}
		err := l.commit(batch, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyPlaying) })
		if err != nil {
			return fmt.Errorf("record the interrupted airing: %w", err)
		}
		l.a.log.Warn("an airing was interrupted by the last shutdown; reported failed/power", "airing", p.item.Airing)
	}
	if err := l.reconcileCache(); err != nil {
		return err
	}
	l.nextMaintenance = now // at once: a long outage may have left plenty to drop
	l.syncStats()
	return nil
}

// run is the agent's one event loop.
func (l *loop) run(ctx context.Context, q *inbox) {
	for {
		now := l.a.clock.Now()
		wake := l.tick(now)
		l.syncStats()
		wait := min(max(wake.Sub(now), 0), maxWait)
		timer := l.a.clock.After(wait)
		select {
		case <-ctx.Done():
			l.shutdown()
			return
		case <-q.signal:
			for _, m := range q.take() {
				l.handle(m)
			}
		case err := <-l.playDone:
			l.playEnded(err)
		case res := <-l.fetchDone:
			l.fetchEnded(res)
		case <-timer:
		}
	}
}

func (l *loop) shutdown() {
	if l.fetchCancel != nil {
		l.fetchCancel()
		<-l.fetchDone
		l.fetching, l.fetchCancel = "", nil
	}
	if l.play != nil {
		// The agent is being stopped mid-broadcast (a shutdown, often for
		// a power failure on village power): the airing cannot finish.
		l.play.stopReason = "power"
		l.play.cancel()
		l.playEnded(<-l.playDone)
	}
	l.publishStatus("offline")
	l.online = false
	l.syncStats()
}

func (l *loop) handle(m inMsg) {
	switch {
	case m.link == linkUp:
		l.online = true
		l.a.count(func(s *Stats) { s.Connects++ })
		l.publishStatus("online")
		l.resend(true)
		l.nextResend = l.a.clock.Now().Add(l.a.opts.ResendInterval)
	case m.link == linkDown:
		l.online = false
	case m.topic == l.a.topics.schedule:
		l.handleSnapshot(m.payload)
	case m.topic == l.a.topics.cmd:
		l.handleCommand(m.payload)
	default:
		l.a.reject(broadcast.RejectSchema, "message on unexpected topic "+m.topic)
	}
}

func (l *loop) rejectErr(what string, err error) {
	var pe *broadcast.ProtocolError
	if errors.As(err, &pe) {
		l.a.reject(pe.Reason, what+": "+pe.Msg)
		return
	}
	l.a.reject(broadcast.RejectMalformed, what+": "+err.Error())
}

// items lists the items the agent knows, play_now ones first.
func (l *loop) items() []liveItem {
	out := make([]liveItem, 0, len(l.adhoc)+len(l.snap.Items))
	for _, ad := range l.adhoc {
		out = append(out, liveItem{Item: ad.Item, order: ad.Order})
	}
	for _, it := range l.snap.Items {
		if !l.isAdhoc(it.Airing) {
			out = append(out, liveItem{Item: it})
		}
	}
	return out
}

func (l *loop) isAdhoc(airing string) bool {
	return slices.ContainsFunc(l.adhoc, func(ad adhocItem) bool { return ad.Item.Airing == airing })
}

func (l *loop) inSnapshot(airing string) bool {
	return slices.ContainsFunc(l.snap.Items, func(it broadcast.Item) bool { return it.Airing == airing })
}

func (l *loop) has(airing, mark string) bool {
	_, ok := l.emitted[airing][mark]
	return ok
}

func (l *loop) hasFailed(airing string) bool {
	for m := range l.emitted[airing] {
		if strings.HasPrefix(m, string(broadcast.EventFailed)+":") {
			return true
		}
	}
	return false
}

// tick does whatever is due at now and returns when it next has something
// to do.
func (l *loop) tick(now time.Time) time.Time {
	wake := now.Add(maxWait)
	soon := func(t time.Time) {
		if t.After(now) && t.Before(wake) {
			wake = t
		}
	}
	items := l.items()
	var batch []pending
	adhocDone := false
	for _, it := range items {
		id, sha := it.Airing, it.Audio.SHA256
		if l.has(id, markDone) {
			adhocDone = adhocDone || it.order > 0
			continue
		}
		if !l.has(id, string(broadcast.EventReceived)) {
			batch = append(batch, l.event(id, &broadcast.Event{Event: broadcast.EventReceived}))
		}
		if l.play != nil && l.play.item.Airing == id {
			continue
		}
		if !now.Before(it.NotAfter) {
			batch = append(batch, l.closeOut(it))
			adhocDone = adhocDone || it.order > 0
			continue
		}
		if l.cached(sha) && !l.has(id, string(broadcast.EventReady)) {
			batch = append(batch, l.event(id, &broadcast.Event{Event: broadcast.EventReady}))
		}
		soon(it.NotAfter)
		soon(it.Start)
		if !now.Before(it.Start) && !l.cached(sha) && l.fails[sha] >= failsBeforeGivingUp && !l.hasFailed(id) {
			// Reported now, when it matters, but the agent keeps trying until
			// not_after: a late start still beats silence.
			batch = append(batch, l.event(id, &broadcast.Event{Event: broadcast.EventFailed, Reason: "download_failed"}))
		}
	}
	if err := l.commit(batch, nil); err != nil {
		l.a.log.Error("could not record events", "err", err)
		return now.Add(maxWait)
	}
	if adhocDone {
		l.pruneAdhoc()
	}
	l.schedulePlayback(now, items)
	l.scheduleDownload(now, items)
	for _, t := range l.retryAt {
		soon(t)
	}
	if l.outboxN > 0 && l.online {
		if !now.Before(l.nextResend) {
			l.resend(false)
			l.nextResend = now.Add(l.a.opts.ResendInterval)
		}
		soon(l.nextResend)
	}
	if !now.Before(l.nextMaintenance) {
		l.maintain(now)
		l.nextMaintenance = now.Add(maintenanceEvery)
	}
	return wake
}
