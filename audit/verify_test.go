package audit

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

func chainOf(t *testing.T, priv ed25519.PrivateKey, n int) []broadcast.AsRunEntry {
	var out []broadcast.AsRunEntry
	var prev broadcast.Hash
	for i := 1; i <= n; i++ {
		ev := broadcast.Event{V: 1, ID: broadcast.NewID(time.Now()), Device: "14755-01", Seq: uint64(i), Airing: "A1", Event: broadcast.EventReceived, At: time.Now()}
		payload, err := broadcast.SignEvent(ev, priv)
		if err != nil {
			t.Fatal(err)
		}
		e := broadcast.AsRunEntry{Seq: uint64(i), ReceivedAt: time.Unix(1_800_000_000+int64(i), 0), Device: "14755-01", Station: "14755", Airing: "A1", DeviceSeq: uint64(i), Event: ev.Event, Payload: payload, PrevHash: prev}
		e.Hash = e.ChainHash()
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

func verifyAll(entries []broadcast.AsRunEntry, pub ed25519.PublicKey, head broadcast.Hash, last uint64) Result {
	v := &Verifier{Key: func(d string) (ed25519.PublicKey, bool) { return pub, d == "14755-01" }}
	for _, e := range entries {
		v.AsRun(e)
	}
	return v.Result(head, last, broadcast.Hash{}, 0)
}

func TestVerifierNamesTheTamperedEntry(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	entries := chainOf(t, priv, 5)
	head, last := entries[4].Hash, uint64(5)
	if r := verifyAll(entries, pub, head, last); !r.OK || r.Entries != 5 {
		t.Fatalf("an intact chain: %+v", r)
	}

	altered := append([]broadcast.AsRunEntry(nil), entries...)
	altered[2].Payload = []byte(strings.Replace(string(altered[2].Payload), "received", "finished", 1))
	r := verifyAll(altered, pub, head, last)
	if r.OK || !names(r, 3, "altered") {
		t.Fatalf("one changed payload: %+v, want entry 3 named as altered", r.Problems)
	}

	deleted := append(append([]broadcast.AsRunEntry(nil), entries[:1]...), entries[2:]...)
	r = verifyAll(deleted, pub, head, last)
	if r.OK || !names(r, 3, "entries 2 to 2 are missing") {
		t.Fatalf("one deleted entry: %+v, want the gap named", r.Problems)
	}

	_, otherKey, _ := ed25519.GenerateKey(nil)
	forged := chainOf(t, otherKey, 5)
	r = verifyAll(forged, pub, forged[4].Hash, 5)
	if r.OK || !names(r, 1, "signature") {
		t.Fatalf("forged signatures: %+v, want each named", r.Problems)
	}

	// The unmatched mark is outside the hash: a valid one passes, any
	// other value is named.
	marked := append([]broadcast.AsRunEntry(nil), entries...)
	marked[1].Unmatched = broadcast.UnmatchedUnknownAiring
	if r := verifyAll(marked, pub, head, last); !r.OK {
		t.Fatalf("an entry marked unknown_airing: %+v", r.Problems)
	}
	marked[1].Unmatched = "because"
	if r := verifyAll(marked, pub, head, last); r.OK || !names(r, 2, "unmatched") {
		t.Fatalf("an entry marked unmatched for no known reason: %+v, want entry 2 named", r.Problems)
	}

	r = verifyAll(entries[:4], pub, head, last)
	if r.OK || !names(r, 5, "ends at entry 4") {
		t.Fatalf("a log cut at its end: %+v", r.Problems)
	}
}

func names(r Result, entry uint64, words string) bool {
	for _, p := range r.Problems {
		if p.Entry == entry && strings.Contains(p.Problem, words) {
			return true
		}
	}
	return false
}
