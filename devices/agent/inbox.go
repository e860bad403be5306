package agent

// What arrives from the daemon: snapshots and commands, checked before
// anything of them is kept.

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

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
		// (docs/protocol.md): the daemon knows what it withdrew.
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
		// docs/protocol.md: newer daemons may send types this agent predates.
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
