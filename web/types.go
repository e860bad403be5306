package web

import (
	"time"
)

// The API's JSON, as far as the pages use it. The console declares its own
// types rather than import the domain's: it is a client like any other, and
// a field the API drops shows here as a zero value, not a build failure.

type unit struct {
	Code   string `json:"code"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	Level  any    `json:"level"`
	Parent string `json:"parent"`
	Path   string `json:"path"`
}

type station struct {
	ID       string `json:"id"`
	Unit     string `json:"unit"`
	Name     string `json:"name"`
	Path     string `json:"path"`
	Timezone string `json:"timezone"`
}

type device struct {
	ID         string    `json:"id"`
	Station    string    `json:"station"`
	PublicKey  string    `json:"public_key"`
	Disabled   bool      `json:"disabled"`
	CreatedAt  time.Time `json:"created_at"`
	DisabledAt time.Time `json:"disabled_at"`
}

// deviceState is one entry of GET /api/v1/devices/status.
type deviceState struct {
	Device      string        `json:"device"`
	Station     string        `json:"station"`
	Online      bool          `json:"online"`
	Since       time.Time     `json:"since"`
	LastSeen    time.Time     `json:"last_seen"`
	ClockOffset time.Duration `json:"clock_offset"`
	ClockSynced *bool         `json:"clock_synced"`
	Rev         uint64        `json:"rev"`
	Outbox      int           `json:"outbox"`
	Volume      int           `json:"volume"`
	Playing     string        `json:"playing"`
	SeqUpto     uint64        `json:"seq_upto"`
	SeqMax      uint64        `json:"seq_max"`
	LostEvents  bool          `json:"lost_events"`
}

// Unsynced: a device that says its clock is not synchronised plays at the
// wrong time, and its events' times are doubtful.
func (d deviceState) Unsynced() bool { return d.ClockSynced != nil && !*d.ClockSynced }

// SeqGap: events the daemon still waits for, or gave up on.
func (d deviceState) SeqGap() bool { return d.LostEvents || d.SeqMax > d.SeqUpto }

type deviceStates struct {
	Devices        []deviceState      `json:"devices"`
	RejectedEvents map[string]float64 `json:"rejected_events"`
}

type stationDetail struct {
	station
	Devices    []device       `json:"devices"`
	Compliance *complianceRow `json:"compliance"`
}

type audioInfo struct {
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
	Format     string `json:"format"`
	Type       string `json:"type"`
	DurationMS int64  `json:"duration_ms"`
}

type programme struct {
	ID           string    `json:"id"`
	Unit         string    `json:"unit"`
	UnitPath     string    `json:"unit_path"`
	Month        string    `json:"month"`
	Title        string    `json:"title"`
	Description  string    `json:"description"`
	Audio        audioInfo `json:"audio"`
	Priority     int       `json:"priority"`
	Status       string    `json:"status"`
	UploadedBy   string    `json:"uploaded_by"`
	ApprovedBy   string    `json:"approved_by"`
	UnitName     string    `json:"unit_name"`
	UploaderName string    `json:"uploaded_by_name"`
	ApproverName string    `json:"approved_by_name"`
	CreatedAt    time.Time `json:"created_at"`
	ApprovedAt   time.Time `json:"approved_at"`
	WithdrawnAt  time.Time `json:"withdrawn_at"`
}

type eventRef struct {
	Entry uint64    `json:"entry"`
	Event string    `json:"event"`
	At    time.Time `json:"at"`
}

type deviceAiring struct {
	Status    string     `json:"status"`
	Reason    string     `json:"reason"`
	StartedAt time.Time  `json:"started_at"`
	PlayedMS  int64      `json:"played_ms"`
	Events    []eventRef `json:"events"`
}

type airing struct {
	ID        string                   `json:"id"`
	Programme string                   `json:"programme"`
	Station   string                   `json:"station"`
	Month     string                   `json:"month"`
	Kind      string                   `json:"kind"`
	Priority  int                      `json:"priority"`
	Title     string                   `json:"title"`
	Audio     audioInfo                `json:"audio"`
	Start     time.Time                `json:"start"`
	NotAfter  time.Time                `json:"not_after"`
	Status    string                   `json:"status"`
	Reason    string                   `json:"reason"`
	Replaces  string                   `json:"replaces"`
	Devices   map[string]*deviceAiring `json:"devices"`
}

// End is when the airing's audio ends.
func (a airing) End() time.Time {
	return a.Start.Add(time.Duration(a.Audio.DurationMS) * time.Millisecond)
}

// Final: an airing that is over can be neither moved nor cancelled.
func (a airing) Final() bool {
	switch a.Status {
	case "aired", "failed", "missed", "cancelled":
		return true
	}
	return false
}

type airingRef struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Start   time.Time `json:"start"`
	Status  string    `json:"status"`
	Reason  string    `json:"reason"`
	Entries []uint64  `json:"entries"`
}

type complianceRow struct {
	Station  string      `json:"station"`
	Name     string      `json:"name"`
	Unit     string      `json:"unit"`
	Month    string      `json:"month"`
	Required int         `json:"required"`
	Aired    int         `json:"aired"`
	Pending  int         `json:"pending"`
	Status   string      `json:"status"`
	Coverage float64     `json:"coverage"`
	Devices  int         `json:"devices"`
	Airings  []airingRef `json:"airings"`
}

type compliance struct {
	Period      string          `json:"period"`
	PeriodTitle string          `json:"period_title"`
	Unit        string          `json:"unit"`
	UnitName    string          `json:"unit_name"`
	GeneratedAt time.Time       `json:"generated_at"`
	Totals      map[string]int  `json:"totals"`
	Rows        []complianceRow `json:"rows"`
}

type asrunEntry struct {
	Seq        uint64    `json:"seq"`
	ReceivedAt time.Time `json:"received_at"`
	Device     string    `json:"device"`
	Station    string    `json:"station"`
	Airing     string    `json:"airing"`
	DeviceSeq  uint64    `json:"device_seq"`
	Event      string    `json:"event"`
	Payload    []byte    `json:"payload"`
	PrevHash   string    `json:"prev_hash"`
	Hash       string    `json:"hash"`
}

type opEntry struct {
	Seq     uint64    `json:"seq"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Subject string    `json:"subject"`
	Detail  []byte    `json:"detail"`
	Unit    string    `json:"unit"`
	Hash    string    `json:"hash"`
}

type verifyResult struct {
	OK        bool   `json:"ok"`
	Entries   uint64 `json:"entries"`
	Head      string `json:"head"`
	OpEntries uint64 `json:"op_entries"`
	OpHead    string `json:"op_head"`
	Problems  []struct {
		Log     string `json:"log"`
		Entry   uint64 `json:"entry"`
		Problem string `json:"problem"`
	} `json:"problems"`
}
