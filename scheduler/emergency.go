package scheduler

import (
	"context"
	"fmt"

	"github.com/loaxa/loaxa/broadcast"
)

// EmergencyResult says how far an emergency broadcast got.
type EmergencyResult struct {
	Stations int      `json:"stations"`
	Devices  int      `json:"devices"`
	Sent     int      `json:"sent"`
	Failed   []string `json:"failed_devices,omitempty"`
}

// Emergency airs a programme at once on every enabled device below its
// unit (Circular 39/2020: emergency preempts whatever plays). Each station
// gets an airing, so that the devices' events land in the as-run log like
// any other; the devices get a play_now command rather than a snapshot, which
// would wait for their next schedule refresh.
func (s *Scheduler) Emergency(ctx context.Context, p broadcast.Programme, actor string) (EmergencyResult, error) {
	stations, err := s.opts.Store.Stations(p.UnitPath)
	if err != nil {
		return EmergencyResult{}, fmt.Errorf("emergency %s: list stations: %w", p.ID, err)
	}
	now := s.opts.Clock.Now()
	res := EmergencyResult{Stations: len(stations)}
	type target struct {
		airing  *broadcast.Airing
		devices []broadcast.Device
	}
	var targets []target
	var batch []*broadcast.Airing
	for _, st := range stations {
		devs, err := s.opts.Store.Devices(st.ID)
		if err != nil {
			return res, fmt.Errorf("emergency %s: devices of %s: %w", p.ID, st.ID, err)
		}
		a := &broadcast.Airing{
			ID: broadcast.NewID(now), Programme: p.ID, Station: st.ID, Month: broadcast.MonthOf(now, s.location(st)),
			Kind: broadcast.KindEmergency, Priority: broadcast.PriorityEmergency, Title: p.Title, Audio: p.Audio,
			Start: now, NotAfter: now.Add(s.opts.Policy.StartTolerance), Status: broadcast.StatusSent,
			CreatedAt: now, UpdatedAt: now,
		}
		batch = append(batch, a)
		targets = append(targets, target{a, devs})
	}
	// The airings exist before any device can report on them.
	for i := 0; i < len(batch); i += planBatch {
		if err := s.opts.Store.PutAirings(ctx, batch[i:min(i+planBatch, len(batch))], nil); err != nil {
			return res, fmt.Errorf("emergency %s: store airings: %w", p.ID, err)
		}
	}
	for _, t := range targets {
		item := broadcast.ItemOf(t.airing, s.opts.AudioURL(p.Audio.SHA256))
		for _, d := range t.devices {
			if d.Disabled {
				continue
			}
			res.Devices++
			if err := s.opts.Publisher.PlayNow(ctx, d.ID, item); err != nil {
				res.Failed = append(res.Failed, d.ID)
				s.log.Warn("emergency play_now failed", "device", d.ID, "err", err)
				continue
			}
			res.Sent++
		}
	}
	s.log.Warn("emergency broadcast sent", "programme", p.ID, "title", p.Title, "stations", res.Stations, "devices", res.Devices, "sent", res.Sent, "actor", actor)
	return res, nil
}
