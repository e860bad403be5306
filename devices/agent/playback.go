package agent

// Playback: which item plays when, starting and stopping the player, and
// what its end means.

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

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
