package devices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

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
	// The fast path reads what devices send, the compact form SignEvent
	// writes, and answers anything else as DecodeEvent does; env's body is
	// in.payload's memory, which nothing changes.
	ev, env, err := broadcast.DecodeEventFast(in.payload)
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
	// Validation is the CPU-bound part (decoding, the signature: ~40 µs of
	// ed25519 an event), and the workers are many, so that many appends
	// wait on each group commit. Let only as many validate at once as there
	// are CPUs: the others wait off the run queue, and storage's writer,
	// when its fsync returns, runs soon instead of behind hundreds of
	// runnable workers. Measured with 10,047 devices sending two events
	// each, three runs each way: the bound cut the ingestion's time and the
	// daemon's CPU by 10–20 %.
	h.cpu <- struct{}{}
	ev, dev, seq, err := h.validateEvent(in)
	<-h.cpu
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
			return err // nothing was logged
		}
		return fmt.Errorf("append event seq %d of device %s: %w", ev.Seq, dev.ID, err)
	}
	if why := res.Entry.Unmatched; why != "" && !res.Duplicate {
		// Logged, and receipted below like any other; counted apart, for
		// it proves no airing and means the device's schedule and ours
		// disagree.
		args := []any{"device", dev.ID, "seq", ev.Seq, "airing", ev.Airing, "event", ev.Event, "why", why, "entry", res.Entry.Seq}
		if why == broadcast.UnmatchedFuture {
			// What the device last said of its clock tells a fast clock
			// from a forgery; it is not trusted to excuse the event.
			args = append(args, "at", ev.At, "started_at", ev.StartedAt, "received_at", res.Entry.ReceivedAt)
			if st, ok := h.Status(dev.ID); ok && !st.StatusAt.IsZero() {
				args = append(args, "reported_clock_offset", st.ClockOffset)
			}
		}
		h.log.Warn("event logged but counts for no airing", args...)
		h.m.eventsUnmatched.WithLabelValues(why).Inc()
	}
	if res.Duplicate {
		// The same (device, seq) with another event id is not a
		// re-delivery: the device reused a seq (say, after its own store was
		// wiped). The log keeps the first; a receipt would make the device
		// drop the second, so it gets none and stays in its outbox for an
		// operator to see.
		if prev, _, perr := broadcast.DecodeEvent(res.Entry.Payload); perr == nil && prev.ID != ev.ID {
			// Most likely the device lost its data and counts from 1
			// again; every later event will be refused the same way, so
			// say what would end it.
			return reject(broadcast.RejectSeq, "seq %d is already logged for event %s, not %s (the device's seqs are logged up to %d; "+
				"a device that lost its data must be registered again under a new id)", ev.Seq, prev.ID, ev.ID, max(res.UptoSeq, seq.Max))
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
	h.sendReceipt(dev.ID, res.UptoSeq, res.UptoHash.String())
	return nil
}

// pendingReceipt is a receipt handed to paho whose acknowledgement by the
// broker the receipt watcher awaits.
type pendingReceipt struct {
	tok      paho.Token
	device   string
	upto     uint64
	deadline time.Time
}

// sendReceipt publishes a receipt without waiting for the broker's
// acknowledgement: the worker moves on to its next event while the receipt
// travels, so that a worker's turn costs one group commit, not a commit and
// a broker round trip. Nothing depends on the acknowledgement: a receipt
// that is lost is sent again when the device re-sends the event (a
// duplicate gets one too). One worker handles a device's events in order,
// and paho sends publishes in the order they are made, so a device's
// receipts still never go backwards.
func (h *Hub) sendReceipt(device string, upto uint64, logHash string) {
	// Built here rather than through command: its fields are ours and
	// valid by construction, so DecodeCommand's check would only be a
	// second JSON pass per event.
	payload, err := json.Marshal(broadcast.Command{V: broadcast.ProtocolVersion, Type: broadcast.CmdReceipt, UptoSeq: upto, LogHash: logHash})
	if err != nil {
		h.log.Warn("receipt not sent", "device", device, "upto_seq", upto, "err", err)
		return
	}
	tok := h.client.Publish(h.topics.device(device, kindCmd), 1, false, payload)
	h.receipts <- pendingReceipt{tok: tok, device: device, upto: upto, deadline: time.Now().Add(h.opts.PublishTimeout)}
}

// receiptWatcher counts the receipts the broker acknowledged and logs the
// others, in the order they were sent. Each waits until its own deadline,
// so that a lost connection delays the watcher by one publish timeout, not
// one per receipt.
func (h *Hub) receiptWatcher() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for r := range h.receipts {
		var err error
		select {
		case <-r.tok.Done():
			err = r.tok.Error()
		default:
			timer.Reset(time.Until(r.deadline))
			select {
			case <-r.tok.Done():
				err = r.tok.Error()
			case <-timer.C:
				err = fmt.Errorf("no acknowledgement from the broker within %s", h.opts.PublishTimeout)
			}
			timer.Stop()
		}
		if err != nil {
			h.m.publishFailures.WithLabelValues(broadcast.CmdReceipt).Inc()
			// The event is logged; the device sends it again and gets a
			// receipt then.
			h.log.Warn("receipt not sent", "device", r.device, "upto_seq", r.upto, "err", err)
			continue
		}
		h.m.receiptsSent.Inc()
	}
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
			// Logged before it is counted, so that whoever sees the
			// counter move finds the line.
			h.log.Error("device fault: events lost, a gap in the event seq was not filled in time",
				"device", d, "logged_upto", st.Upto, "missing_from", st.Upto+1, "max_logged", st.Max,
				"open_since", since, "timeout", h.opts.SeqGapTimeout)
			h.m.seqGaps.Inc()
		}
	}
}
