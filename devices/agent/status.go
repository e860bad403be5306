package agent

// The device's status, as the daemon sees it on its status topic.

import (
	"github.com/loaxa/loaxa/broadcast"
)

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
