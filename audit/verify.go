package audit

import (
	"crypto/ed25519"
	"fmt"

	"github.com/loaxa/loaxa/broadcast"
)

// Problem is one thing wrong with the evidence, named by log and entry.
type Problem struct {
	Log   string `json:"log"` // "asrun", "oplog" or "records"
	Entry uint64 `json:"entry"`
	// Record names the record at fault ("programme/01J…") in log
	// "records"; Entry is then the operations-log entry that last
	// recorded it, or 0.
	Record  string `json:"record,omitempty"`
	Problem string `json:"problem"`
}

// Verifier checks a log entry by entry, in order, without holding it in
// memory: the chain links, each entry's hash, the numbering (a deleted entry
// shows as a gap) and, for the as-run log, each device's signature.
type Verifier struct {
	// Key returns a device's registered public key (nil: the device signs
	// nothing) and whether the device is known.
	Key func(device string) (ed25519.PublicKey, bool)
	// Forms is where the logs switched to the second hash form; the zero
	// value, never.
	Forms broadcast.HashForms

	Problems []Problem
	asrun    chainState
	oplog    chainState
}

type chainState struct {
	entries uint64
	last    uint64
	head    broadcast.Hash
}

func (c *chainState) link(log string, seq uint64, prev, hash, computed broadcast.Hash, add func(Problem)) {
	if seq != c.last+1 {
		if seq > c.last+1 {
			add(Problem{Log: log, Entry: seq, Problem: fmt.Sprintf("entries %d to %d are missing", c.last+1, seq-1)})
		} else {
			add(Problem{Log: log, Entry: seq, Problem: fmt.Sprintf("entry number %d follows %d: out of order or repeated", seq, c.last)})
		}
	}
	if prev != c.head {
		add(Problem{Log: log, Entry: seq, Problem: "its previous hash does not match the entry before it"})
	}
	if computed != hash {
		add(Problem{Log: log, Entry: seq, Problem: "its content does not match its hash: the entry was altered"})
	}
	c.entries++
	c.last = seq
	c.head = hash
}

func (v *Verifier) add(p Problem) { v.Problems = append(v.Problems, p) }

// AsRun checks the next as-run entry.
func (v *Verifier) AsRun(e broadcast.AsRunEntry) {
	v.asrun.link("asrun", e.Seq, e.PrevHash, e.Hash, e.ChainHashIn(v.Forms), v.add)
	ev, env, err := broadcast.DecodeEvent(e.Payload)
	if err != nil {
		v.add(Problem{Log: "asrun", Entry: e.Seq, Problem: "its payload is not a valid event: " + err.Error()})
		return
	}
	if ev.Device != e.Device || ev.Seq != e.DeviceSeq || ev.Airing != e.Airing {
		v.add(Problem{Log: "asrun", Entry: e.Seq, Problem: "its payload names another device, seq or airing than the entry"})
	}
	if p, bad := unmatchedProblem(&e); bad {
		v.add(p)
	}
	if v.Key == nil {
		return
	}
	key, known := v.Key(e.Device)
	if !known {
		v.add(Problem{Log: "asrun", Entry: e.Seq, Problem: fmt.Sprintf("device %s is not registered", e.Device)})
		return
	}
	if err := env.VerifySignature(key); err != nil {
		v.add(Problem{Log: "asrun", Entry: e.Seq, Problem: "device signature: " + err.Error()})
	}
}

// Op checks the next operations log entry.
func (v *Verifier) Op(o broadcast.OpEntry) {
	v.oplog.link("oplog", o.Seq, o.PrevHash, o.Hash, o.ChainHashIn(v.Forms), v.add)
}

// Result is the verdict of docs/api.md's /audit/verify.
type Result struct {
	OK        bool           `json:"ok"`
	Entries   uint64         `json:"entries"`
	Head      broadcast.Hash `json:"head"`
	OpEntries uint64         `json:"op_entries"`
	OpHead    broadcast.Hash `json:"op_head"`
	// AsRunBase is the last purged as-run entry: the log was checked from
	// the one after it.
	AsRunBase uint64 `json:"asrun_base,omitempty"`
	// Records is how many covered records were re-hashed, and Airings how
	// many airings' verdicts were rebuilt from their evidence (VerifyRecords).
	Records  uint64    `json:"records,omitempty"`
	Airings  uint64    `json:"airings,omitempty"`
	Problems []Problem `json:"problems"`
}

// Result summarises what was checked. head and opHead are the heads the
// store claims; a log cut short at its end shows as a mismatch with them.
func (v *Verifier) Result(head broadcast.Hash, lastSeq uint64, opHead broadcast.Hash, lastOp uint64) Result {
	if v.asrun.last != lastSeq || v.asrun.head != head {
		v.add(Problem{Log: "asrun", Entry: lastSeq, Problem: fmt.Sprintf("the log ends at entry %d but its head says %d", v.asrun.last, lastSeq)})
	}
	if v.oplog.last != lastOp || v.oplog.head != opHead {
		v.add(Problem{Log: "oplog", Entry: lastOp, Problem: fmt.Sprintf("the log ends at entry %d but its head says %d", v.oplog.last, lastOp)})
	}
	problems := v.Problems
	if problems == nil {
		problems = []Problem{}
	}
	return Result{OK: len(problems) == 0, Entries: v.asrun.entries, Head: v.asrun.head, OpEntries: v.oplog.entries, OpHead: v.oplog.head, Problems: problems}
}

// unmatchedProblem names an entry marked unmatched for a reason the daemon
// never writes: the mark is not covered by the hash, so a changed one is
// caught only this way.
func unmatchedProblem(e *broadcast.AsRunEntry) (Problem, bool) {
	switch e.Unmatched {
	case "", broadcast.UnmatchedUnknownAiring, broadcast.UnmatchedOtherStation, broadcast.UnmatchedFuture:
		return Problem{}, false
	}
	return Problem{Log: "asrun", Entry: e.Seq, Problem: fmt.Sprintf("it is marked unmatched for a reason the daemon never gives, %q", e.Unmatched)}, true
}
