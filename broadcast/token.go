package broadcast

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"time"
)

// Role is what a token may do; its unit bounds where.
type Role string

const (
	RoleAdmin    Role = "admin"    // everything
	RoleOperator Role = "operator" // programmes, airings, devices, emergencies in its unit and below
	RoleAuditor  Role = "auditor"  // reads everything in its unit and below, writes nothing
)

// Valid reports whether r is one of the three roles.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleOperator || r == RoleAuditor }

// Token is an API credential. Only the hash of the secret is stored; the
// secret is shown once, when the token is created.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Unit      string    `json:"unit"`      // "" = the whole tree
	UnitPath  string    `json:"unit_path"` // the unit's path, for scope checks without a lookup
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	// ExpiresAt is when the token stops working; zero for never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// LastUsed is when the token was last accepted, to the minute: it is
	// written at most once a minute per token, not at every request.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Expired reports whether the token has expired at now.
func (t Token) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// Covers reports whether the token's scope includes something at path.
func (t Token) Covers(path string) bool {
	return t.UnitPath == "" || Below(path, t.UnitPath)
}

// NewTokenSecret returns a fresh bearer token. The prefix lets secret
// scanners and people recognise a leaked loaxa token.
func NewTokenSecret() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return "lxa_" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

// HashToken is how tokens are stored and looked up. A plain SHA-256 is
// enough: tokens carry 160 random bits, so there is nothing to stretch.
func HashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}
