package devices

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// DeviceState is what the hub knows of a device from its statuses and events
// since the daemon started. Times without "device" in their comment are the
// daemon's clock.
type DeviceState struct {
	Device      string        `json:"device"`
	Station     string        `json:"station"`
	Online      bool          `json:"online"`
	Since       time.Time     `json:"since,omitzero"`     // when Online last changed
	LastSeen    time.Time     `json:"last_seen,omitzero"` // last status or event received
	StatusAt    time.Time     `json:"status_at,omitzero"` // the device's clock in its last status
	ClockOffset time.Duration `json:"clock_offset"`       // as the device reported it
	ClockSynced *bool         `json:"clock_synced,omitempty"`
	Agent       string        `json:"agent,omitempty"`
	Rev         uint64        `json:"rev"` // the snapshot rev the device holds
	Outbox      int           `json:"outbox"`
	CacheBytes  int64         `json:"cache_bytes,omitempty"`
	Volume      int           `json:"volume,omitempty"`
	Playing     string        `json:"playing,omitempty"`
	SeqUpto     uint64        `json:"seq_upto"`    // every event seq up to this one is logged
	SeqMax      uint64        `json:"seq_max"`     // the highest event seq logged
	LostEvents  bool          `json:"lost_events"` // a seq gap outlived the gap timeout (a device fault)
}

// Status returns what the hub knows of one device.
func (h *Hub) Status(id string) (DeviceState, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.states[id]
	if !ok {
		return DeviceState{}, false
	}
	return *s, true
}

// Statuses returns every device the hub has heard of, by id.
func (h *Hub) Statuses() []DeviceState {
	h.mu.Lock()
	out := make([]DeviceState, 0, len(h.states))
	for _, s := range h.states {
		out = append(out, *s)
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b DeviceState) int { return strings.Compare(a.Device, b.Device) })
	return out
}

// state returns the device's entry, creating it; h.mu must be held.
func (h *Hub) state(dev broadcast.Device) *DeviceState {
	s := h.states[dev.ID]
	if s == nil {
		s = &DeviceState{Device: dev.ID}
		h.states[dev.ID] = s
	}
	s.Station = dev.Station
	return s
}

// touch notes that a device was heard from: an event proves it is alive.
func (h *Hub) touch(dev broadcast.Device, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.state(dev)
	if at.After(s.LastSeen) {
		s.LastSeen = at
	}
}

func (h *Hub) handleStatus(in inbound) {
	// A status is soft state: whether it is applied or refused, delivering
	// it again changes nothing, so it is acknowledged either way.
	defer in.ack()
	dev, st, err := h.validateStatus(in)
	var pe *broadcast.ProtocolError
	switch {
	case errors.As(err, &pe):
		h.log.Warn("status rejected", "device", in.device, "reason", pe.Reason, "err", pe.Msg)
		h.m.statusesRejected.WithLabelValues(pe.Reason).Inc()
		return
	case err != nil:
		h.log.Error("status not applied", "device", in.device, "err", err)
		return
	}

	online := st.State == "online"
	h.mu.Lock()
	s := h.state(dev)
	cameOnline := online && !s.Online
	if online != s.Online {
		s.Online, s.Since = online, in.at
		if online {
			h.m.online.Inc()
		} else {
			h.m.online.Dec()
		}
	}
	if online {
		// The last will (offline) carries no health; keep the last known.
		s.LastSeen = in.at
		s.StatusAt = st.At
		s.ClockOffset = time.Duration(st.ClockOffsetMS) * time.Millisecond
		s.ClockSynced = st.ClockSynced
		s.Agent, s.Rev, s.Outbox, s.CacheBytes = st.Agent, st.Rev, st.Outbox, st.CacheBytes
		s.Volume, s.Playing = st.Volume, st.Playing
	}
	queue := cameOnline && !dev.Disabled && h.opts.OnOnline != nil && !h.onlinePending[dev.ID]
	if queue {
		h.onlinePending[dev.ID] = true
	}
	h.mu.Unlock()

	h.log.Debug("device status", "device", dev.ID, "state", st.State, "rev", st.Rev, "outbox", st.Outbox)
	if queue {
		h.online.push(dev.ID)
	}
}

func (h *Hub) validateStatus(in inbound) (broadcast.Device, broadcast.DeviceStatus, error) {
	st, err := broadcast.DecodeStatus(in.payload)
	if err != nil {
		return broadcast.Device{}, st, err
	}
	if st.Device != in.device {
		return broadcast.Device{}, st, reject(broadcast.RejectDevice, "status of device %q arrived on the topic of device %q", st.Device, in.device)
	}
	dev, err := h.opts.Devices.Device(st.Device)
	switch {
	case broadcast.IsNotFound(err):
		// E.g. the retained status of a device since removed.
		return dev, st, reject(broadcast.RejectDevice, "device %q is not registered", st.Device)
	case err != nil:
		return dev, st, err
	}
	return dev, st, nil
}

func (h *Hub) onlineWorker() {
	for {
		id, ok := h.online.pop(h.stop)
		if !ok {
			return
		}
		// Cleared before the call, so that the device going offline and
		// online again meanwhile queues it once more.
		h.mu.Lock()
		delete(h.onlinePending, id)
		h.mu.Unlock()
		h.safely("online", id, func() { h.opts.OnOnline(id) })
	}
}
