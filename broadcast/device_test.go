package broadcast

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
)

func TestSecretHashMosquittoFormat(t *testing.T) {
	secret := NewSecret()
	h := HashSecret(secret)
	if !strings.HasPrefix(h, "$7$101$") || strings.Count(h, "$") != 4 {
		t.Fatalf("hash %q is not in Mosquitto's $7$ format", h)
	}
	if !VerifySecret(h, secret) {
		t.Fatal("the secret does not verify against its own hash")
	}
	if VerifySecret(h, secret+"x") || VerifySecret(h, "") || VerifySecret("$6$x$y", secret) || VerifySecret("", secret) {
		t.Fatal("a wrong secret or a malformed hash verified")
	}
	if HashSecret(secret) == h {
		t.Fatal("two hashes of one secret are equal: the salt is not random")
	}
}

// A hash made by mosquitto_passwd must verify too: the same file serves both
// brokers. This one was produced by
// `mosquitto_passwd -c -b passwd dev s3cret` (Mosquitto 2.0.11).
func TestVerifySecretKnownVector(t *testing.T) {
	const fromMosquitto = "$7$101$6pdObE6sioajibxY$SB1Sk63slEThWCdZuL+uegFt9j9jJDDn+fgugkn0jdmJ2sk4PPlJ1+8MVn/Vq1yJkl0/reJrlk2juh6M42fOHA=="
	if !VerifySecret(fromMosquitto, "s3cret") {
		t.Fatal("a hash made by mosquitto_passwd 2.0.11 does not verify")
	}
	if VerifySecret(fromMosquitto, "s3cret ") {
		t.Fatal("a wrong secret verified against mosquitto_passwd's hash")
	}
}

func TestParsePublicKey(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		got, err := ParsePublicKey(enc.EncodeToString(pub))
		if err != nil || !got.Equal(pub) {
			t.Fatalf("ParsePublicKey = %v, %v", got, err)
		}
	}
	if _, err := ParsePublicKey(base64.StdEncoding.EncodeToString([]byte("short"))); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
	if _, err := ParsePublicKey("not base64 !!"); err == nil {
		t.Fatal("garbage was accepted")
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	a := NewID(mustTime(t, "2026-12-01T00:00:00Z"))
	b := NewID(mustTime(t, "2026-12-01T00:00:01Z"))
	if len(a) != 26 || !ValidID(a) || a >= b {
		t.Fatalf("ids %s, %s: want 26 valid characters, sorted by time", a, b)
	}
}
