package broadcast

import (
	"crypto/ed25519"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Device is one receiver of a station: an IP receiver driving a loudspeaker
// cluster, or an integration device for wired and FM clusters.
type Device struct {
	ID         string            `json:"id"`
	Station    string            `json:"station"`
	SecretHash string            `json:"-"` // Mosquitto's $7$ format, see HashSecret
	PublicKey  ed25519.PublicKey `json:"public_key,omitempty"`
	Disabled   bool              `json:"disabled"`
	CreatedAt  time.Time         `json:"created_at"`
	DisabledAt time.Time         `json:"disabled_at,omitzero"`
}

// NewSecret returns a random device secret: 32 bytes in base64url, enough
// entropy that the hash needs no stretching to resist guessing.
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// secretIterations matches mosquitto_passwd's default for $7$. The secrets we
// issue are random, so more iterations would buy nothing but CPU time on every
// one of 100,000 devices reconnecting after an outage.
const secretIterations = 101

// HashSecret hashes a device secret in Mosquitto 2.0's password-file format
// ($7$<iterations>$<salt>$<PBKDF2-SHA512>), so that the same stored hash
// serves the embedded broker and an external Mosquitto, and no plaintext
// secret is ever kept.
func HashSecret(secret string) string {
	salt := make([]byte, 12)
	_, _ = rand.Read(salt)
	return hashSecretWith(secret, salt, secretIterations)
}

func hashSecretWith(secret string, salt []byte, iterations int) string {
	key, err := pbkdf2.Key(sha512.New, secret, salt, iterations, sha512.Size)
	if err != nil {
		panic(fmt.Sprintf("pbkdf2 with fixed valid parameters: %v", err)) // cannot happen
	}
	return fmt.Sprintf("$7$%d$%s$%s", iterations, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(key))
}

// VerifySecret reports whether secret matches a hash made by HashSecret (or by
// mosquitto_passwd), in constant time.
func VerifySecret(hash, secret string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "7" {
		return false
	}
	iterations, err := strconv.Atoi(parts[2])
	if err != nil || iterations < 1 || iterations > 1_000_000 {
		return false
	}
	salt, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil {
		return false
	}
	want, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(want) != sha512.Size {
		return false
	}
	got, err := pbkdf2.Key(sha512.New, secret, salt, iterations, sha512.Size)
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// ParsePublicKey decodes a device's ed25519 public key, given in base64
// (standard or URL alphabet, padded or not) as operators paste it from
// `loaxa-station keygen`.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("public key is %d bytes, an ed25519 key has %d", len(b), ed25519.PublicKeySize)
			}
			return ed25519.PublicKey(b), nil
		}
	}
	return nil, fmt.Errorf("public key is not base64")
}
