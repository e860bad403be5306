package agent

// The outbox: events are committed to the store with the state they
// change, published, and re-sent until a receipt covers them.

import (
	"fmt"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

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
