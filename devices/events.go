package devices

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

func reject(reason, format string, args ...any) error {
	return &broadcast.ProtocolError{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// handleEvent takes one payload from a device's events topic through
// validation, the as-run log and the receipt, and acknowledges it to the
// broker unless it may succeed when delivered again.
func (h *Hub) handleEvent(ctx context.Context, in inbound) {
	h.m.eventsReceived.Inc()
	err := h.processEvent(ctx, in)
	var pe *broadcast.ProtocolError
	switch {
	case errors.As(err, &pe):
		// Log, then count: whoever sees the counter move finds the line.
		h.log.Warn("event rejected", "device", in.device, "reason", pe.Reason, "err", pe.Msg)
		h.m.eventsRejected.WithLabelValues(pe.Reason).Inc()
		// Final: the same bytes delivered again would be refused again.
		in.ack()
	case err != nil:
		h.m.eventsFailed.Inc()
		// Not acknowledged: the broker delivers it again when the hub
		// reconnects, and the device re-sends it until it has a receipt.
		h.log.Error("event not logged", "device", in.device, "err", err)
	default:
		in.ack()
	}
}

// validateEvent is every check an event passes before it may reach the as-run
// log: shape, device, signature and seq. It returns a *broadcast.ProtocolError
// for anything the device got wrong, and another error when the daemon could
// not decide (the registry or the log failed).
func (h *Hub) validateEvent(in inbound) (broadcast.Event, broadcast.Device, DeviceSeqState, error) {
	var seq DeviceSeqState
	ev, env, err := broadcast.DecodeEvent(in.payload)
	if err != nil {
		return ev, broadcast.Device{}, seq, err
	}
	// The broker lets a device publish only on its own topic, so the topic
	// names the sender; the body must agree with it.
	if ev.Device != in.device {
		return ev, broadcast.Device{}, seq, reject(broadcast.RejectDevice, "event of device %q arrived on the topic of device %q", ev.Device, in.device)
	}
	dev, err := h.opts.Devices.Device(ev.Device)
	switch {
	case broadcast.IsNotFound(err):
		return ev, dev, seq, reject(broadcast.RejectDevice, "device %q is not registered", ev.Device)
	case err != nil:
		return ev, dev, seq, fmt.Errorf("look up device %s: %w", ev.Device, err)
	case dev.Disabled:
		return ev, dev, seq, reject(broadcast.RejectDisabled, "device %q is disabled", ev.Device)
	}
	if err := env.VerifySignature(dev.PublicKey); err != nil {
		return ev, dev, seq, err
	}
	seq, err = h.opts.Events.DeviceSeq(dev.ID)
	if err != nil {
		return ev, dev, seq, fmt.Errorf("read the logged seqs of device %s: %w", dev.ID, err)
	}
	// A seq far beyond what is logged is a device bug or an attack; taking
	// it would open a gap that could never be filled.
	if ev.Seq > seq.Upto && ev.Seq-seq.Upto > h.opts.MaxSeqAhead {
		return ev, dev, seq, reject(broadcast.RejectSeq, "seq %d is more than %d past the last contiguous seq %d", ev.Seq, h.opts.MaxSeqAhead, seq.Upto)
	}
	return ev, dev, seq, nil
}

func (h *Hub) processEvent(ctx context.Context, in inbound) error {
	ev, dev, seq, err := h.validateEvent(in)
	if err != nil {
		return err
	}
	h.touch(dev, in.at)

	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), appendTimeout)
	start := time.Now()
	res, err := h.opts.Events.AppendEvent(actx, EventRecord{
		Device: dev.ID, Station: dev.Station, ReceivedAt: in.at, Payload: in.payload, Event: ev,
	})
	h.m.appendLatency.Observe(time.Since(start).Seconds())
	cancel()
	if err != nil {
		var pe *broadcast.ProtocolError
		if errors.As(err, &pe) {
			return err // e.g. an unknown airing: nothing was logged
		}
		return fmt.Errorf("append event seq %d of device %s: %w", ev.Seq, dev.ID, err)
	}
	if res.Duplicate {
		// The same (device, seq) with another event id is not a
		// re-delivery: the device reused a seq (say, after its own store was
		// wiped). The log keeps the first; a receipt would make the device
		// drop the second, so it gets none and stays in its outbox for an
		// operator to see.
		if prev, _, perr := broadcast.DecodeEvent(res.Entry.Payload); perr == nil && prev.ID != ev.ID {
			return reject(broadcast.RejectSeq, "seq %d is already logged for event %s, not %s", ev.Seq, prev.ID, ev.ID)
		}
		h.m.eventsDuplicate.Inc()
	} else {
		h.m.eventsLogged.Inc()
	}
	h.log.Debug("event logged", "device", dev.ID, "seq", ev.Seq, "event", ev.Event, "airing", ev.Airing,
		"duplicate", res.Duplicate, "entry", res.Entry.Seq, "upto", res.UptoSeq)
	// seq.Max covers a gap that opened before this process started.
	h.noteSeq(dev.ID, res.UptoSeq, max(ev.Seq, seq.Max))

	// Durable now: tell the device, also for a duplicate, whose first
	// receipt may have been lost. Upto 0 means an earlier seq is missing;
	// there is nothing the device may drop yet.
	if res.UptoSeq == 0 {
		return nil
	}
	// Not cancelled with the run: during shutdown the event in hand still
	// gets its receipt (the publish timeout bounds the wait).
	err = h.command(context.WithoutCancel(ctx), dev.ID,
		broadcast.Command{Type: broadcast.CmdReceipt, UptoSeq: res.UptoSeq, LogHash: res.UptoHash.String()})
	if err != nil {
		// The event is logged; the device sends it again and gets a
		// receipt then.
		h.log.Warn("receipt not sent", "device", dev.ID, "upto_seq", res.UptoSeq, "err", err)
		return nil
	}
	h.m.receiptsSent.Inc()
	return nil
}

// seqGap is an open gap in a device's logged seqs: everything up to upto is
// logged, something after it is too, and what lies between has not arrived.
type seqGap struct {
	since    time.Time
	upto     uint64
	max      uint64
	reported bool
}

// noteSeq records, after an append, the device's contiguous seq (upto) and
// the highest seq known to be logged.
func (h *Hub) noteSeq(device string, upto, highest uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.states[device]; s != nil {
		s.SeqUpto = upto
		s.SeqMax = max(s.SeqMax, highest, upto)
	}
	g := h.gaps[device]
	switch {
	case highest <= upto && (g == nil || upto >= g.max):
		if g != nil {
			if g.reported {
				h.log.Info("gap in device's event seq filled", "device", device, "upto", upto)
			}
			delete(h.gaps, device)
			if s := h.states[device]; s != nil {
				s.LostEvents = false
			}
		}
	case g == nil || g.upto != upto:
		// A new gap, or progress through the old one: the timeout starts
		// again from what is still missing.
		h.gaps[device] = &seqGap{since: h.now(), upto: upto, max: max(highest, upto, gapMax(g))}
		if s := h.states[device]; s != nil {
			s.LostEvents = false
		}
	default:
		g.max = max(g.max, highest)
	}
}

func gapMax(g *seqGap) uint64 {
	if g == nil {
		return 0
	}
	return g.max
}

// gapLoop reports gaps that stayed open past SeqGapTimeout.
func (h *Hub) gapLoop() {
	every := min(max(h.opts.SeqGapTimeout/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.checkGaps()
		}
	}
}

func (h *Hub) checkGaps() {
	now := h.now()
	var due []string
	h.mu.Lock()
	for d, g := range h.gaps {
		if !g.reported && now.Sub(g.since) >= h.opts.SeqGapTimeout {
			due = append(due, d)
		}
	}
	h.mu.Unlock()
	for _, d := range due {
		// Ask the log, not our notes: another path (a replay, a restart)
		// may have filled the gap.
		st, err := h.opts.Events.DeviceSeq(d)
		if err != nil {
			h.log.Error("cannot check a gap in a device's event seq", "device", d, "err", err)
			continue
		}
		h.mu.Lock()
		g := h.gaps[d]
		report := false
		switch {
		case g == nil || g.reported:
		case st.Upto >= st.Max:
			delete(h.gaps, d)
		case st.Upto != g.upto:
			g.upto, g.max, g.since = st.Upto, st.Max, now
		default:
			g.reported, g.max, report = true, st.Max, true
			if s := h.states[d]; s != nil {
				s.LostEvents = true
			}
		}
		var since time.Time
		if g != nil {
			since = g.since
		}
		h.mu.Unlock()
		if report {
			h.m.seqGaps.Inc()
			h.log.Error("device fault: events lost, a gap in the event seq was not filled in time",
				"device", d, "logged_upto", st.Upto, "missing_from", st.Upto+1, "max_logged", st.Max,
				"open_since", since, "timeout", h.opts.SeqGapTimeout)
		}
	}
}
