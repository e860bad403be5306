package broadcast

import "time"

// ProgrammeStatus is where a programme is in its review.
type ProgrammeStatus string

const (
	ProgrammeDraft     ProgrammeStatus = "draft"
	ProgrammeApproved  ProgrammeStatus = "approved"
	ProgrammeWithdrawn ProgrammeStatus = "withdrawn"
)

// Audio describes a content-addressed audio file.
type Audio struct {
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
	Format     string `json:"format"` // mp3, wav, ogg-opus, webm-opus
	Type       string `json:"type"`   // MIME type
	DurationMS int64  `json:"duration_ms"`
}

// Duration is the audio's length.
func (a Audio) Duration() time.Duration { return time.Duration(a.DurationMS) * time.Millisecond }

// Programme is a month's programme of a unit, to be aired by every station
// below it.
type Programme struct {
	ID          string          `json:"id"`
	Unit        string          `json:"unit"`
	UnitPath    string          `json:"unit_path"`
	Month       Month           `json:"month"`
	Title       string          `json:"title"`
	Description string          `json:"description,omitempty"`
	Audio       Audio           `json:"audio"`
	Priority    Priority        `json:"priority"`
	Status      ProgrammeStatus `json:"status"`
	UploadedBy  string          `json:"uploaded_by"` // token id
	ApprovedBy  string          `json:"approved_by,omitempty"`
	// The tokens' names when they acted, for people to read: a token id
	// says nothing to an official, and names may change later.
	UploaderName string    `json:"uploaded_by_name,omitempty"`
	ApproverName string    `json:"approved_by_name,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	ApprovedAt   time.Time `json:"approved_at,omitzero"`
	WithdrawnAt  time.Time `json:"withdrawn_at,omitzero"`
}
