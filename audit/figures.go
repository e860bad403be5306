package audit

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// What a period required and what the evidence gives, computed the same way
// by the daemon when it seals a month and by `loaxa audit verify --bundle`
// from a bundle alone: the month's airings as planned (none aired), the
// as-run entries of the month's segment (the rule of a bundle and a seal)
// applied to them with broadcast.ApplyEvent, and each station judged with
// Judge as of the end of the month's grace. The daemon's own figures can
// differ later: evidence received after the grace counts there (the
// report's addendum says so), never in the sealed figures.

// Plan is what a period required of some stations: required.json.
type Plan struct {
	Months   []broadcast.Month `json:"months"`
	Policy   broadcast.Policy  `json:"policy"`
	Stations []PlanStation     `json:"stations"`
	Airings  []PlanAiring      `json:"airings"`
	// Sealed are the seals' figures of the plan's stations, by month.
	Sealed []BundleSeal `json:"sealed"`
}

// PlanStation is a station of a plan.
type PlanStation struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Unit    string `json:"unit"`
	Devices int    `json:"devices"` // enabled devices when the plan was made
}

// PlanAiring is an airing as planned: its window, its audio and whether it
// was cancelled; Changes are the operations-log entries that moved or
// cancelled it, Status what the daemon shows now.
type PlanAiring struct {
	ID       string           `json:"id"`
	Station  string           `json:"station"`
	Month    broadcast.Month  `json:"month"`
	Kind     broadcast.Kind   `json:"kind"`
	Start    time.Time        `json:"start"`
	NotAfter time.Time        `json:"not_after"`
	Audio    broadcast.Audio  `json:"audio"`
	Planned  broadcast.Status `json:"planned"` // planned or cancelled: what the operators decided
	Reason   string           `json:"reason,omitempty"`
	// CancelledAt is when it was cancelled: a play claimed to start at or
	// after it counts for nothing (broadcast.Airing.CancelledAt).
	CancelledAt time.Time        `json:"cancelled_at,omitzero"`
	Changes     []uint64         `json:"changes,omitempty"`
	Status      broadcast.Status `json:"status"`
}

// PlanAiringOf is a's plan: what it was before any device reported on it.
func PlanAiringOf(a *broadcast.Airing) PlanAiring {
	p := PlanAiring{ID: a.ID, Station: a.Station, Month: a.Month, Kind: a.Kind, Start: a.Start, NotAfter: a.NotAfter,
		Audio: a.Audio, Planned: broadcast.StatusPlanned, Status: a.Status, CancelledAt: a.CancelledAt}
	if a.Status == broadcast.StatusCancelled || !a.CancelledAt.IsZero() {
		p.Planned, p.Reason = broadcast.StatusCancelled, a.Reason
	}
	return p
}

// Figure is a station's month as sealed: what required.json and the seal's
// leaves hold.
type Figure struct {
	Station  string          `json:"station"`
	Month    broadcast.Month `json:"month"`
	Required int             `json:"required"`
	Aired    int             `json:"aired"`
	Status   string          `json:"status"`
	Devices  int             `json:"devices"` // the enabled devices the figure was judged with
}

func (f Figure) String() string {
	return fmt.Sprintf("aired %d of %d (%s, %d devices)", f.Aired, f.Required, f.Status, f.Devices)
}

// SealedFigure is a Figure with its salt and its place among the seal's
// leaves. The salt (HMAC of the month and station under a key only the
// daemon holds) keeps a leaf from being guessed: a unit's bundle gives the
// other stations' leaves, and figures are few enough to try them all.
type SealedFigure struct {
	Figure
	Salt  broadcast.Hash `json:"salt"`
	Index int            `json:"index"`
}

// Leaf is the figure's leaf in its seal.
func (f SealedFigure) Leaf() broadcast.Hash {
	h := sha256.New()
	h.Write(f.Salt[:])
	var n [8]byte
	for _, s := range []string{f.Station, string(f.Month), f.Status} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for _, v := range []int{f.Required, f.Aired, f.Devices} {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	var out broadcast.Hash
	h.Sum(out[:0])
	return out
}

// FigureSalt is the salt of a station's month under key.
func FigureSalt(key []byte, month broadcast.Month, station string) broadcast.Hash {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(month))
	m.Write([]byte{0})
	m.Write([]byte(station))
	var out broadcast.Hash
	m.Sum(out[:0])
	return out
}

// FiguresRoot is the hash a seal records of its leaves, in station order.
func FiguresRoot(leaves []broadcast.Hash) broadcast.Hash {
	h := sha256.New()
	for _, l := range leaves {
		h.Write(l[:])
	}
	var out broadcast.Hash
	h.Sum(out[:0])
	return out
}

// SealFigures is what a seal record holds of its figures.
type SealFigures struct {
	Root     broadcast.Hash `json:"root"`
	Stations int            `json:"stations"`
}

// BundleSeal is a sealed month in required.json: every leaf of the seal, in
// order, and the figures (with salts) of the bundle's stations.
type BundleSeal struct {
	Month   broadcast.Month  `json:"month"`
	Op      uint64           `json:"op"` // the seal's operations-log entry
	Leaves  []broadcast.Hash `json:"leaves"`
	Figures []SealedFigure   `json:"figures"`
}

// monthReplay replays one month's segment over its planned airings.
type monthReplay struct {
	month   broadcast.Month
	seg     segmenter
	end     time.Time // the month's end, for Judge
	airings map[string]*broadcast.Airing
	devices map[string]int
	policy  broadcast.Policy
}

func newMonthReplay(month broadcast.Month, loc *time.Location, plan *Plan, devices map[string]int) (*monthReplay, error) {
	win, err := periodWindow(broadcast.Period{Name: string(month), Months: []broadcast.Month{month}}, loc)
	if err != nil {
		return nil, err
	}
	r := &monthReplay{month: month, seg: segmenter{w: win}, end: win.to, airings: map[string]*broadcast.Airing{}, devices: devices, policy: plan.Policy}
	for _, a := range plan.Airings {
		if a.Month != month {
			continue
		}
		r.airings[a.ID] = &broadcast.Airing{ID: a.ID, Station: a.Station, Month: a.Month, Kind: a.Kind, Start: a.Start,
			NotAfter: a.NotAfter, Audio: a.Audio, Status: a.Planned, Reason: a.Reason, CancelledAt: a.CancelledAt}
	}
	return r, nil
}

// apply takes the entry if it lies in the month's segment and counts it for
// the airing it names, as the daemon did (the airing must be the entry's
// station's). A payload that does not decode counts for none: the verifier
// names it.
func (r *monthReplay) apply(e *broadcast.AsRunEntry) {
	if !r.seg.take(e.Seq, e.ReceivedAt, e.PrevHash, e.Hash) || e.Unmatched != "" {
		return
	}
	r.applyEvent(e)
}

func (r *monthReplay) applyEvent(e *broadcast.AsRunEntry) {
	ev, _, err := broadcast.DecodeEventFast(e.Payload)
	// A play claimed later than its receipt counts for nothing; the mark
	// is not hashed, so it is judged again here, as the daemon judged it.
	if err != nil || broadcast.Implausible(ev, e.ReceivedAt, r.policy) != "" {
		return
	}
	a := r.airings[ev.Airing]
	if a == nil || a.Station != e.Station {
		return
	}
	broadcast.ApplyEvent(a, e.Device, ev, e.Seq, r.devices[a.Station], r.policy)
}

// figures judges every station of stations as of the month's grace end (or
// asOf, if sooner: an incomplete bundle).
func (r *monthReplay) figures(stations []PlanStation, asOf time.Time) []Figure {
	byStation := map[string][]broadcast.AiringSummary{}
	for _, a := range r.airings {
		byStation[a.Station] = append(byStation[a.Station], a.Summary())
	}
	now := r.seg.w.until
	if asOf.Before(now) {
		now = asOf
	}
	out := make([]Figure, 0, len(stations))
	for _, st := range stations {
		sums := byStation[st.ID]
		slices.SortFunc(sums, func(a, b broadcast.AiringSummary) int { return a.Start.Compare(b.Start) })
		row := Judge(broadcast.Station{ID: st.ID, Name: st.Name, Unit: st.Unit}, r.month, r.end, sums, r.devices[st.ID], now, r.policy)
		out = append(out, Figure{Station: st.ID, Month: r.month, Required: row.Required, Aired: row.Aired, Status: row.Status, Devices: r.devices[st.ID]})
	}
	slices.SortFunc(out, func(a, b Figure) int { return cmp.Compare(a.Station, b.Station) })
	return out
}
