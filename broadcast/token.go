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
