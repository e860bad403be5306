package broadcast

import (
	"testing"
	"time"
)

// An operation's unit is evidence like the rest of it: changing it breaks
// the hash. Entries written before the field existed hash as they did.
func TestOpEntryUnitIsHashed(t *testing.T) {
	o := OpEntry{Seq: 7, At: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), Actor: "tok1 Lan", Action: "airing.cancel", Subject: "a1", Detail: []byte(`{}`)}
	before := chain(o.PrevHash, o.Seq, o.At, []byte(o.Actor), []byte(o.Action), []byte(o.Subject), o.Detail)
	if o.ChainHash() != before {
		t.Fatal("an entry without a unit no longer hashes as it did")
	}
	o.Unit = "38/380/14755"
	withUnit := o.ChainHash()
	if withUnit == before {
		t.Fatal("the unit is not hashed")
	}
	o.Unit = "38/381/14755"
	if o.ChainHash() == withUnit {
		t.Fatal("another unit hashes the same")
	}
	// The unit's bytes moved into Detail make another entry.
	o.Unit, o.Detail = "", append([]byte(`{}`), "38/380/14755"...)
	if o.ChainHash() == withUnit {
		t.Fatal("a unit and a longer detail hash the same")
	}
}
