package agent

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
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

// reconcileCache makes the index and the audio directory agree: an index
// entry without its file is dropped; a file without an entry (the agent died
// between the rename and the commit) is kept if it hashes to its name.
func (l *loop) reconcileCache() error {
	dir := l.a.fetcher.dir
	var drop []string
	for sha, e := range l.cache {
		fi, err := os.Stat(filepath.Join(dir, sha))
		if err != nil || fi.Size() != e.Size {
			drop = append(drop, sha)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read audio cache: %w", err)
	}
	add := map[string]cacheEntry{}
	for _, de := range entries {
		name := de.Name()
		if _, ok := l.cache[name]; ok || strings.HasSuffix(name, ".part") {
			continue
		}
		path := filepath.Join(dir, name)
		if sum, n, err := hashFile(path); err == nil && sum == name {
			add[name] = cacheEntry{Size: n, Stored: l.a.clock.Now()}
		} else {
			_ = os.Remove(path)
		}
	}
	if len(drop) == 0 && len(add) == 0 {
		return nil
	}
	err = l.st.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCache)
		for _, sha := range drop {
			if err := b.Delete([]byte(sha)); err != nil {
				return err
			}
		}
		for sha, e := range add {
			if err := putJSON(b, []byte(sha), e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reconcile audio cache: %w", err)
	}
	for _, sha := range drop {
		delete(l.cache, sha)
	}
	maps.Copy(l.cache, add)
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

// handleSnapshot stores a newer snapshot and cancels what left it. The new
// items' received events follow from tick.
func (l *loop) handleSnapshot(payload []byte) {
	snap, err := broadcast.DecodeSnapshot(payload)
	if err != nil {
		l.rejectErr("snapshot", err)
		return
	}
	if snap.Device != l.a.cfg.Device {
		l.a.reject(broadcast.RejectDevice, fmt.Sprintf("snapshot for device %q on this device's topic", snap.Device))
		return
	}
	if err := checkItems(snap.Items); err != nil {
		l.a.reject(broadcast.RejectSchema, "snapshot: "+err.Error())
		return
	}
	if snap.Rev <= l.snap.Rev {
		l.a.count(func(s *Stats) { s.StaleSnapshots++ })
		l.a.log.Debug("snapshot ignored: not newer", "rev", snap.Rev, "have", l.snap.Rev)
		return
	}
	now := l.a.clock.Now()
	keep := map[string]bool{}
	for _, it := range snap.Items {
		keep[it.Airing] = true
	}
	var batch []pending
	for _, it := range l.snap.Items {
		id := it.Airing
		if keep[id] || l.has(id, markDone) || l.isAdhoc(id) {
			continue
		}
		switch {
		case l.play != nil && l.play.item.Airing == id:
			// Reported when the player has stopped.
			l.stopPlay("cancelled")
		case !now.Before(it.NotAfter):
			batch = append(batch, l.closeOut(liveItem{Item: it}))
		case l.has(id, string(broadcast.EventReady)):
			batch = append(batch, l.event(id, &broadcast.Event{Event: broadcast.EventSkipped, Reason: "cancelled", Rev: snap.Rev}, markDone))
		}
		// An item cancelled before it was ready goes silently
		// (PROTOCOL.md): the daemon knows what it withdrew.
	}
	err = l.commit(batch, func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketMeta), keySnapshot, snap) })
	if err != nil {
		l.a.log.Error("could not store the snapshot; it will be taken again when redelivered", "rev", snap.Rev, "err", err)
		return
	}
	l.a.log.Info("snapshot stored", "rev", snap.Rev, "items", len(snap.Items))
	l.snap = snap
	for id := range l.blocked {
		if !keep[id] && !l.isAdhoc(id) {
			delete(l.blocked, id)
		}
	}
	l.nextMaintenance = now
	l.publishStatus("online")
}

// checkItems adds what DecodeSnapshot leaves to the receiver.
func checkItems(items []broadcast.Item) error {
	seen := map[string]bool{}
	for i, it := range items {
		if seen[it.Airing] {
			return fmt.Errorf("item %d: airing %s appears twice", i, it.Airing)
		}
		seen[it.Airing] = true
		if err := checkAudio(it.Audio); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	return nil
}

func checkAudio(a broadcast.AudioRef) error {
	u, err := url.Parse(a.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("audio url %q is not an http(s) URL", a.URL)
	case a.Size <= 0:
		return errors.New("audio size must be positive")
	case a.DurationMS < 0:
		return errors.New("audio duration_ms is negative")
	case len(a.SHA256) != 64:
		return errors.New("audio sha256 is not 64 hex digits")
	}
	if _, err := hex.DecodeString(a.SHA256); err != nil || strings.ToLower(a.SHA256) != a.SHA256 {
		return errors.New("audio sha256 is not lower-case hex")
	}
	return nil
}

func (l *loop) handleCommand(payload []byte) {
	c, err := broadcast.DecodeCommand(payload)
	if err != nil {
		l.rejectErr("command", err)
		return
	}
	switch c.Type {
	case broadcast.CmdReceipt:
		l.handleReceipt(c)
	case broadcast.CmdPlayNow:
		l.handlePlayNow(*c.Item)
	case broadcast.CmdStop:
		if l.play != nil && l.play.stopReason == "" {
			l.a.log.Info("stop command: stopping playback", "airing", l.play.item.Airing)
			l.stopPlay("preempted")
		}
	case broadcast.CmdPing:
		l.publishStatus("online")
	default:
		// PROTOCOL.md: newer daemons may send types this agent predates.
		l.a.count(func(s *Stats) { s.UnknownCommands++ })
		l.a.log.Info("unknown command type ignored", "type", c.Type)
	}
}

// handleReceipt drops the events the daemon has committed to its log.
func (l *loop) handleReceipt(c broadcast.Command) {
	if c.UptoSeq >= l.nextSeq {
		l.a.reject(broadcast.RejectSeq, fmt.Sprintf("receipt up to seq %d, but the last event sent is %d", c.UptoSeq, l.nextSeq-1))
		return
	}
	if c.UptoSeq <= l.receipt.UptoSeq {
		return // an old receipt, redelivered
	}
	remaining := 0
	err := l.st.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		var done [][]byte
		remaining = 0
		err := b.ForEach(func(k, _ []byte) error {
			if binary.BigEndian.Uint64(k) <= c.UptoSeq {
				done = append(done, append([]byte(nil), k...))
			} else {
				remaining++
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range done {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return putJSON(tx.Bucket(bucketMeta), keyReceipt, receiptState{UptoSeq: c.UptoSeq, LogHash: c.LogHash})
	})
	if err != nil {
		l.a.log.Error("could not apply a receipt; the events stay in the outbox", "upto_seq", c.UptoSeq, "err", err)
		return
	}
	l.receipt = receiptState{UptoSeq: c.UptoSeq, LogHash: c.LogHash}
	l.outboxN = remaining
	for seq := range l.lastSent {
		if seq <= c.UptoSeq {
			delete(l.lastSent, seq)
		}
	}
	l.a.log.Debug("receipt", "upto_seq", c.UptoSeq, "log_hash", c.LogHash, "outbox", remaining)
}

// handlePlayNow takes an emergency item to play at once.
func (l *loop) handlePlayNow(it broadcast.Item) {
	if err := checkAudio(it.Audio); err != nil {
		l.a.reject(broadcast.RejectSchema, "play_now: "+err.Error())
		return
	}
	if l.isAdhoc(it.Airing) || l.has(it.Airing, string(broadcast.EventReceived)) && !l.inSnapshot(it.Airing) {
		l.a.log.Debug("play_now redelivered; already taken", "airing", it.Airing)
		return
	}
	if l.has(it.Airing, markDone) {
		return
	}
	now := l.a.clock.Now()
	// A play_now may reach a device that was offline long after it was sent
	// (the persistent session keeps it): it must not sound once its moment
	// has passed. Without not_after, the window runs from its start, or from
	// its arrival.
	if it.NotAfter.IsZero() {
		from := it.Start
		if from.IsZero() {
			from = now
		}
		it.NotAfter = from.Add(playNowWindow)
	}
	if now.Before(it.NotAfter) {
		it.Start = now
	} else if it.Start.IsZero() || !it.Start.Before(it.NotAfter) {
		it.Start = it.NotAfter.Add(-time.Millisecond)
	}
	it.Kind, it.Priority = broadcast.KindEmergency, broadcast.PriorityEmergency
	order := uint64(1)
	for _, ad := range l.adhoc {
		order = max(order, ad.Order+1)
	}
	if l.play != nil {
		order = max(order, l.play.item.order+1)
	}
	adhoc := append(slices.Clone(l.adhoc), adhocItem{Item: it, Order: order})
	if err := l.commit(nil, func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketMeta), keyAdhoc, adhoc) }); err != nil {
		l.a.log.Error("could not store a play_now item", "airing", it.Airing, "err", err)
		return
	}
	l.adhoc = adhoc
	l.a.log.Info("play_now", "airing", it.Airing, "title", it.Title)
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

func (l *loop) cached(sha string) bool {
	_, ok := l.cache[sha]
	return ok
}

// event builds a pending event; the marks always include the event's own.
func (l *loop) event(airing string, ev *broadcast.Event, marks ...string) pending {
	ev.Airing = airing
	return pending{airing: airing, ev: ev, marks: append([]string{markOf(ev.Event, ev.Reason)}, marks...)}
}

// closeOut ends an item whose window has passed without it sounding, with
// the most telling reason.
func (l *loop) closeOut(it liveItem) pending {
	id := it.Airing
	switch {
	case l.blocked[id]:
		return l.event(id, &broadcast.Event{Event: broadcast.EventSkipped, Reason: "preempted"}, markDone)
	case l.hasFailed(id):
		// Already reported (checksum, download): a second failure for the
		// same cause would add nothing.
		return pending{airing: id, marks: []string{markDone}}
	case !l.cached(it.Audio.SHA256) && l.fails[it.Audio.SHA256] > 0:
		return l.event(id, &broadcast.Event{Event: broadcast.EventFailed, Reason: "download_failed"}, markDone)
	}
	return l.event(id, &broadcast.Event{Event: broadcast.EventFailed, Reason: "expired"}, markDone)
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

// schedulePlayback starts the best item that is due, or preempts a lower
// one for it.
func (l *loop) schedulePlayback(now time.Time, items []liveItem) {
	var cands []liveItem
	for _, it := range items {
		if l.has(it.Airing, markDone) || (l.play != nil && l.play.item.Airing == it.Airing) {
			continue
		}
		if !now.Before(it.Start) && now.Before(it.NotAfter) && l.cached(it.Audio.SHA256) {
			cands = append(cands, it)
		}
	}
	if len(cands) == 0 {
		return
	}
	best := slices.MaxFunc(cands, func(x, y liveItem) int {
		switch {
		case x.outranks(y):
			return 1
		case y.outranks(x):
			return -1
		}
		// Same rank: the earlier start first, then a stable order.
		if c := y.Start.Compare(x.Start); c != 0 {
			return c
		}
		return cmp.Compare(y.Airing, x.Airing)
	})
	if l.play != nil {
		if l.play.stopReason == "" && best.outranks(l.play.item) {
			l.a.log.Info("preempting", "airing", l.play.item.Airing, "for", best.Airing, "priority", best.Priority)
			l.stopPlay("preempted")
		}
		// Whatever waits now was kept off the air by a higher item; if its
		// window closes meanwhile, that is why.
		for _, c := range cands {
			l.blocked[c.Airing] = true
		}
		return
	}
	l.startPlay(now, best)
}

func (l *loop) startPlay(now time.Time, it liveItem) {
	path := l.a.fetcher.finalPath(it.Audio.SHA256)
	// Hash what is about to play: finished reports the sha256 of the file
	// actually played, and a flash card can rot after the download check.
	sum, _, err := hashFile(path)
	if err != nil || sum != it.Audio.SHA256 {
		l.a.log.Warn("cached audio is damaged; fetching it again", "airing", it.Airing, "sha256", it.Audio.SHA256, "got", sum, "err", err)
		l.dropCached(it.Audio.SHA256)
		return
	}
	rec := playRecord{Airing: it.Airing, StartedAt: now, SHA256: sum}
	ev := l.event(it.Airing, &broadcast.Event{Event: broadcast.EventStarted, At: now})
	// The started event and the playing record commit together, before the
	// first sound: after a crash the record says what was interrupted.
	err = l.commit([]pending{ev}, func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketMeta), keyPlaying, rec) })
	if err != nil {
		// Sound matters more than the evidence: play anyway.
		l.a.log.Error("could not record the start of an airing; playing it anyway", "airing", it.Airing, "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.play = &playback{item: it, startedAt: now, sha: sum, cancel: cancel}
	delete(l.blocked, it.Airing)
	dur := time.Duration(it.Audio.DurationMS) * time.Millisecond
	player := l.a.player
	go func() { l.playDone <- player.Play(ctx, path, dur) }()
	l.a.log.Info("playing", "airing", it.Airing, "title", it.Title, "priority", it.Priority, "duration", dur)
	l.publishStatus("online")
}

// stopPlay asks the player to stop; playEnded reports it.
func (l *loop) stopPlay(reason string) {
	if l.play == nil || l.play.stopReason != "" {
		return
	}
	l.play.stopReason = reason
	l.play.cancel()
}

func (l *loop) playEnded(err error) {
	p := l.play
	l.play = nil
	if p == nil {
		return
	}
	p.cancel()
	now := l.a.clock.Now()
	base := broadcast.Event{StartedAt: p.startedAt, PlayedMS: max(now.Sub(p.startedAt).Milliseconds(), 0), SHA256: p.sha}
	ev := base
	switch {
	case p.stopReason == "preempted" || p.stopReason == "cancelled":
		ev.Event, ev.Reason = broadcast.EventSkipped, p.stopReason
	case p.stopReason == "power":
		ev.Event, ev.Reason = broadcast.EventFailed, "power"
	case err != nil:
		ev.Event, ev.Reason = broadcast.EventFailed, "player_error"
		l.a.log.Error("player failed", "airing", p.item.Airing, "err", err)
	default:
		ev.Event = broadcast.EventFinished
	}
	batch := []pending{l.event(p.item.Airing, &ev, markDone)}
	if err := l.commit(batch, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyPlaying) }); err != nil {
		l.a.log.Error("could not record the end of an airing", "airing", p.item.Airing, "err", err)
	}
	l.a.log.Info("airing ended", "airing", p.item.Airing, "event", ev.Event, "reason", ev.Reason, "played_ms", ev.PlayedMS)
	if p.item.order > 0 {
		l.pruneAdhoc()
	}
	if p.stopReason != "power" {
		l.publishStatus("online")
	}
}

// pruneAdhoc forgets play_now items that are done.
func (l *loop) pruneAdhoc() {
	keep := slices.DeleteFunc(slices.Clone(l.adhoc), func(ad adhocItem) bool { return l.has(ad.Item.Airing, markDone) })
	if len(keep) == len(l.adhoc) {
		return
	}
	err := l.st.db.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketMeta), keyAdhoc, keep) })
	if err != nil {
		l.a.log.Error("could not prune play_now items", "err", err)
		return
	}
	l.adhoc = keep
}

// scheduleDownload starts one download at a time (one 4G link), for the
// item that starts first among those whose audio is missing.
func (l *loop) scheduleDownload(now time.Time, items []liveItem) {
	if l.fetching != "" {
		return
	}
	var next *liveItem
	for i, it := range items {
		sha := it.Audio.SHA256
		if l.has(it.Airing, markDone) || l.cached(sha) || !now.Before(it.NotAfter) || now.Before(l.retryAt[sha]) {
			continue
		}
		if next == nil || it.Start.Before(next.Start) {
			next = &items[i]
		}
	}
	if next == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.fetching, l.fetchCancel = next.Audio.SHA256, cancel
	f, ref := l.a.fetcher, next.Audio
	go func() { l.fetchDone <- f.fetch(ctx, ref) }()
	l.a.log.Debug("downloading audio", "airing", next.Airing, "sha256", ref.SHA256, "size", ref.Size)
}

func (l *loop) fetchEnded(res fetchResult) {
	l.fetching = ""
	l.fetchCancel()
	l.fetchCancel = nil
	if res.hasOff {
		l.clockOffset = res.offset
	}
	now := l.a.clock.Now()
	if res.err == nil {
		e := cacheEntry{Size: res.size, Stored: now}
		err := l.commit(nil, func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketCache), []byte(res.sha), e) })
		if err != nil {
			l.a.log.Error("could not index downloaded audio", "sha256", res.sha, "err", err)
			return
		}
		l.cache[res.sha] = e
		delete(l.fails, res.sha)
		delete(l.retryAt, res.sha)
		l.a.log.Info("audio ready", "sha256", res.sha, "size", res.size)
		return
	}
	l.fails[res.sha]++
	backoff := l.a.opts.RetryInterval << min(l.fails[res.sha]-1, 5)
	l.retryAt[res.sha] = now.Add(backoff)
	l.a.log.Warn("audio download failed", "sha256", res.sha, "attempt", l.fails[res.sha], "retry_in", backoff, "err", res.err)
	if !errors.Is(res.err, errChecksum) {
		return
	}
	var batch []pending
	for _, it := range l.items() {
		mark := markOf(broadcast.EventFailed, "checksum_mismatch")
		if it.Audio.SHA256 == res.sha && !l.has(it.Airing, markDone) && !l.has(it.Airing, mark) {
			batch = append(batch, l.event(it.Airing, &broadcast.Event{Event: broadcast.EventFailed, Reason: "checksum_mismatch"}))
		}
	}
	if err := l.commit(batch, nil); err != nil {
		l.a.log.Error("could not record events", "err", err)
	}
}

// dropCached forgets an audio file: the index entry first (committed), then
// the file, so that the index never names a file that is gone.
func (l *loop) dropCached(sha string) {
	err := l.st.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCache).Delete([]byte(sha)) })
	if err != nil {
		l.a.log.Error("could not drop audio from the index", "sha256", sha, "err", err)
		return
	}
	delete(l.cache, sha)
	_ = os.Remove(l.a.fetcher.finalPath(sha))
}

// maintain drops audio that no live item needs any more, and the marks of
// airings long gone from the schedule.
func (l *loop) maintain(now time.Time) {
	items := l.items()
	needed := map[string]bool{}
	live := map[string]bool{}
	for _, it := range items {
		live[it.Airing] = true
		if !l.has(it.Airing, markDone) && now.Before(it.NotAfter) {
			needed[it.Audio.SHA256] = true
		}
	}
	if l.play != nil {
		needed[l.play.sha] = true
	}
	if l.fetching != "" {
		needed[l.fetching] = true
	}
	for sha := range l.cache {
		if !needed[sha] {
			l.dropCached(sha)
			l.a.log.Debug("dropped unused audio", "sha256", sha)
		}
	}
	if entries, err := os.ReadDir(l.a.fetcher.dir); err == nil {
		for _, de := range entries {
			if sha, ok := strings.CutSuffix(de.Name(), ".part"); ok && !needed[sha] {
				_ = os.Remove(filepath.Join(l.a.fetcher.dir, de.Name()))
			}
		}
	}
	var old []string
	for airing, marks := range l.emitted {
		if live[airing] {
			continue
		}
		var newest time.Time
		for _, m := range marks {
			if m.At.After(newest) {
				newest = m.At
			}
		}
		if now.Sub(newest) > marksKept {
			old = append(old, airing)
		}
	}
	if len(old) == 0 {
		return
	}
	err := l.st.db.Update(func(tx *bolt.Tx) error {
		for _, airing := range old {
			if err := deleteMarks(tx, airing); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		l.a.log.Error("could not prune old marks", "err", err)
		return
	}
	for _, airing := range old {
		delete(l.emitted, airing)
	}
}

// commit gives each pending event the next seq, signs it, puts it in the
// outbox and sets its marks, all in one transaction with also; only after
// the commit (and its fsync) are the events published. The seq counter moves
// in the same transaction as the events that use it, so a crash can neither
// reuse a seq nor leave a gap.
func (l *loop) commit(batch []pending, also func(tx *bolt.Tx) error) error {
	if len(batch) == 0 && also == nil {
		return nil
	}
	now := l.a.clock.Now()
	synced := clockSynced(l.a.clock)
	type built struct {
		seq     uint64
		payload []byte
	}
	var out []built
	seq := l.nextSeq
	err := l.st.db.Update(func(tx *bolt.Tx) error {
		out = out[:0]
		seq = l.nextSeq
		ob := tx.Bucket(bucketOutbox)
		for _, p := range batch {
			var evSeq uint64
			if p.ev != nil {
				ev := *p.ev
				ev.V, ev.Device, ev.Airing, ev.Seq = broadcast.ProtocolVersion, l.a.cfg.Device, p.airing, seq
				ev.ID = broadcast.NewID(now)
				ev.ClockSynced = synced
				if ev.At.IsZero() {
					ev.At = now
				}
				if ev.Rev == 0 {
					ev.Rev = l.snap.Rev
				}
				if err := ev.Validate(); err != nil {
					return fmt.Errorf("event %s for %s: %w", ev.Event, ev.Airing, err)
				}
				payload, err := broadcast.SignEvent(ev, l.a.key)
				if err != nil {
					return err
				}
				if err := ob.Put(seqKey(seq), payload); err != nil {
					return err
				}
				out = append(out, built{seq, payload})
				evSeq = seq
				seq++
			}
			for _, m := range p.marks {
				if err := putMark(tx, p.airing, m, emittedMark{At: now, Seq: evSeq}); err != nil {
					return err
				}
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyNextSeq, seqKey(seq)); err != nil {
			return err
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	l.nextSeq = seq
	for _, p := range batch {
		m := l.emitted[p.airing]
		if m == nil {
			m = map[string]emittedMark{}
			l.emitted[p.airing] = m
		}
		for _, mk := range p.marks {
			m[mk] = emittedMark{At: now}
		}
	}
	l.outboxN += len(out)
	for _, b := range out {
		l.lastSent[b.seq] = now
		if l.pub != nil { // nil during recover: the connect's resend sends them
			l.pub.enqueue(outMsg{topic: l.a.topics.events, payload: b.payload})
		}
	}
	return nil
}

// resend publishes the outbox again in seq order: all of it after a
// (re)connect, else what has waited a ResendInterval for its receipt.
func (l *loop) resend(all bool) {
	if l.outboxN == 0 {
		return
	}
	entries, err := l.st.outbox()
	if err != nil {
		l.a.log.Error("could not read the outbox", "err", err)
		return
	}
	now := l.a.clock.Now()
	n := 0
	for _, e := range entries {
		if !all && now.Sub(l.lastSent[e.seq]) < l.a.opts.ResendInterval {
			continue
		}
		l.lastSent[e.seq] = now
		l.pub.enqueue(outMsg{topic: l.a.topics.events, payload: e.payload})
		n++
	}
	l.outboxN = len(entries)
	if n > 0 {
		l.a.log.Debug("outbox resent", "events", n, "from_seq", entries[0].seq)
	}
}

func (l *loop) publishStatus(state string) {
	if l.pub == nil {
		return
	}
	synced := clockSynced(l.a.clock)
	s := broadcast.DeviceStatus{
		V: broadcast.ProtocolVersion, Device: l.a.cfg.Device, State: state,
		At: l.a.clock.Now(), Agent: "loaxa-station/" + l.a.opts.Version,
		Rev: l.snap.Rev, Outbox: l.outboxN, CacheBytes: l.cacheBytes(),
		ClockOffsetMS: l.clockOffset.Milliseconds(), ClockSynced: &synced,
		Volume: l.a.cfg.Volume,
	}
	if l.play != nil && state == "online" {
		s.Playing = l.play.item.Airing
	}
	payload, err := jsonMarshal(s)
	if err != nil {
		l.a.log.Error("encode status", "err", err)
		return
	}
	l.pub.enqueue(outMsg{topic: l.a.topics.status, payload: payload, retained: true})
}

func (l *loop) cacheBytes() int64 {
	var n int64
	for _, e := range l.cache {
		n += e.Size
	}
	return n
}

func (l *loop) syncStats() {
	playing := ""
	if l.play != nil {
		playing = l.play.item.Airing
	}
	connected := l.online && l.client != nil && l.client.IsConnectionOpen()
	cb := l.cacheBytes()
	l.a.count(func(s *Stats) {
		s.Rev, s.Outbox, s.NextSeq, s.LogHash = l.snap.Rev, l.outboxN, l.nextSeq, l.receipt.LogHash
		s.Playing, s.Connected, s.CacheBytes = playing, connected, cb
	})
}
