package audit

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// Evidence bundles: a period's evidence in one file that an auditor checks
// offline, with nothing but the file and `loaxa audit verify --bundle FILE`.
// docs/evidence.md describes the format (its files, which entries, unit
// bundles, what the manifest and the seals prove); BundleFormat and
// BundleVersion name it in the manifest, and a verifier refuses a version it
// does not know. Version 2 added the hash forms, withheld entries (a unit's
// bundle) and required.json.
const (
	BundleFormat  = "loaxa-evidence-bundle"
	BundleVersion = 2
)

// minBundleVersion is the oldest version a verifier still reads: version 1
// is version 2 without the hash forms (every entry in the first), withheld
// entries or required.json.
const minBundleVersion = 1

// BundleGrace is how long after a period's end entries received still belong
// to its evidence. A week covers a receiver that was offline for days (its
// outbox keeps the events) and is the same for every bundle and seal, so
// that a month's bundle and its seal cut the log at the same places.
const BundleGrace = 7 * 24 * time.Hour

// The files of a bundle.
const (
	FileManifest = "manifest.json"
	FileReadme   = "README.txt"
	FileDevices  = "devices.json"
	FileAsRun    = "asrun.jsonl"
	FileOplog    = "oplog.jsonl"
	FileRequired = "required.json"
)

// ActionSeal is the operations-log action of a seal; its subject is the
// month, its detail a SealRecord.
const ActionSeal = "period.seal"

// Manifest is manifest.json.
type Manifest struct {
	Format   string   `json:"format"`
	Version  int      `json:"version"`
	Period   string   `json:"period"`
	Unit     string   `json:"unit,omitempty"`
	Stations []string `json:"stations,omitempty"` // the stations below Unit
	// UnitPath is Unit's path in the tree ("38/380"); with Withheld, the
	// entries of other units are given as their content hashes only.
	UnitPath    string    `json:"unit_path,omitempty"`
	Withheld    bool      `json:"withheld,omitempty"`
	TimeZone    string    `json:"time_zone"`
	From        time.Time `json:"from"`        // the period's first instant
	To          time.Time `json:"to"`          // the instant after the period
	GraceUntil  time.Time `json:"grace_until"` // To + BundleGrace: the segments' cut
	Selection   string    `json:"selection"`
	Complete    bool      `json:"complete"` // false: GraceUntil had not passed; later bundles hold more
	GeneratedAt time.Time `json:"generated_at"`
	Generator   string    `json:"generator,omitempty"`

	AsRun Segment `json:"asrun"`
	Oplog Segment `json:"oplog"`
	// HashForms is where the logs switched to the second hash form, which
	// chains an entry's content hash (zero: never).
	HashForms broadcast.HashForms `json:"hash_forms"`
	// WithheldAsRun and WithheldOplog count the entries given as their
	// content hash only.
	WithheldAsRun uint64 `json:"withheld_asrun,omitempty"`
	WithheldOplog uint64 `json:"withheld_oplog,omitempty"`
	// The whole logs' heads when the bundle was made: the segments lie at
	// or before them.
	AsRunHead Head `json:"asrun_head"`
	OplogHead Head `json:"oplog_head"`
	Devices   int  `json:"devices"`

	// Seals are the operations-log entries that sealed months of the
	// period, as logged (their detail is a SealRecord).
	Seals []broadcast.OpEntry `json:"seals"`
	// Files are the sha256 (hex) and size of every file but the manifest.
	Files  map[string]FileSum `json:"files"`
	Verify string             `json:"verify"`
}

// Segment is a contiguous run of a log: entries FirstSeq..LastSeq (none when
// LastSeq = FirstSeq-1), PrevHash the chain hash before FirstSeq, LastHash
// that of LastSeq (PrevHash when empty).
type Segment struct {
	FirstSeq uint64         `json:"first_seq"`
	LastSeq  uint64         `json:"last_seq"`
	PrevHash broadcast.Hash `json:"prev_hash"`
	LastHash broadcast.Hash `json:"last_hash"`
	Entries  uint64         `json:"entries"`
}

// Head is a log's last entry and its hash.
type Head struct {
	Seq  uint64         `json:"seq"`
	Hash broadcast.Hash `json:"hash"`
}

// FileSum is a file's sha256 (hex) and size in the manifest.
type FileSum struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// BundleDevice is a device in devices.json.
type BundleDevice struct {
	Station    string            `json:"station"`
	PublicKey  ed25519.PublicKey `json:"public_key,omitempty"` // base64; none: the device signs nothing
	Disabled   bool              `json:"disabled,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	DisabledAt time.Time         `json:"disabled_at,omitzero"`
}

const selectionRule = "as-run: the contiguous entries from the first received at or after from, up to the last before the first received at or after grace_until (or the log's head); operations: the same by their time"

// BundleSpec says which bundle to make.
type BundleSpec struct {
	Period   broadcast.Period
	Location *time.Location // the zone of the period's months; nil: UTC
	Unit     string         // "" for the whole tree
	Stations []string       // the stations below Unit
	// UnitPath and Withhold make a unit's bundle: the as-run entries of
	// stations not in Stations, and the operations of units neither above
	// nor below UnitPath, are given as their content hashes. Without
	// Withhold, Unit and Stations are only recorded.
	UnitPath string
	Withhold bool
	// Plan is what the period required of the bundle's stations, written
	// to required.json with the seals' figures of those stations (nil: no
	// required.json).
	Plan *Plan
	// Sealed returns the figures sealed for a month, the stations' salts
	// included (nil, nil: not sealed).
	Sealed func(month broadcast.Month) ([]SealedFigure, error)
	Now    time.Time // when the bundle is made
	// Generator names the program in the manifest ("loaxad 1.2.0").
	Generator string
	// TempDir is where the logs' segments are spooled before the bundle is
	// written; "" is os.TempDir.
	TempDir string
}

// window is a period's cut of the logs.
type window struct{ from, to, until time.Time }

func periodWindow(p broadcast.Period, loc *time.Location) (window, error) {
	if len(p.Months) == 0 {
		return window{}, errors.New("the period has no months")
	}
	from, _ := p.Months[0].Bounds(loc)
	_, to := p.Months[len(p.Months)-1].Bounds(loc)
	if from.IsZero() || to.IsZero() {
		return window{}, fmt.Errorf("period %s: bad month", p.Name)
	}
	return window{from: from, to: to, until: to.Add(BundleGrace)}, nil
}

// segmenter applies the selection rule to a log read in order.
type segmenter struct {
	w        window
	in, over bool
	seg      Segment
	prevSeq  uint64
	prevHash broadcast.Hash
}

// take reports whether the entry belongs to the segment; over is set once
// the segment has ended (nothing after belongs).
func (s *segmenter) take(seq uint64, at time.Time, prev, hash broadcast.Hash) bool {
	if s.over {
		return false
	}
	if !s.in {
		if at.Before(s.w.from) {
			s.prevSeq, s.prevHash = seq, hash
			return false
		}
		if !at.Before(s.w.until) {
			s.over = true // an empty segment, here
			return false
		}
		s.in = true
		s.seg.FirstSeq, s.seg.PrevHash = seq, prev
	} else if !at.Before(s.w.until) {
		s.over = true
		return false
	}
	s.seg.LastSeq, s.seg.LastHash = seq, hash
	s.seg.Entries++
	return true
}

func (s *segmenter) segment() Segment {
	if !s.in {
		return Segment{FirstSeq: s.prevSeq + 1, LastSeq: s.prevSeq, PrevHash: s.prevHash, LastHash: s.prevHash}
	}
	return s.seg
}

// hashFile is a spool file that hashes what is written to it.
type hashFile struct {
	f    *os.File
	bw   *bufio.Writer
	h    hash.Hash
	size int64
	enc  *json.Encoder
}

func newHashFile(dir, pattern string) (*hashFile, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	hf := &hashFile{f: f, h: sha256.New()}
	hf.bw = bufio.NewWriterSize(io.MultiWriter(f, hf.h, countWriter{&hf.size}), 256<<10)
	hf.enc = json.NewEncoder(hf.bw)
	hf.enc.SetEscapeHTML(false)
	return hf, nil
}

type countWriter struct{ n *int64 }

func (c countWriter) Write(p []byte) (int, error) { *c.n += int64(len(p)); return len(p), nil }

func (hf *hashFile) sum() FileSum {
	return FileSum{SHA256: hex.EncodeToString(hf.h.Sum(nil)), Size: hf.size}
}

// rewind flushes the spool and returns to its start, for copying.
func (hf *hashFile) rewind() error {
	if err := hf.bw.Flush(); err != nil {
		return fmt.Errorf("spool %s: %w", hf.f.Name(), err)
	}
	if _, err := hf.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spool %s: %w", hf.f.Name(), err)
	}
	return nil
}

func (hf *hashFile) remove() {
	_ = hf.f.Close()
	_ = os.Remove(hf.f.Name())
}

// WriteBundle writes the evidence bundle of spec.Period to w and returns its
// manifest. It reads everything it needs (spooling the segments to
// spec.TempDir, so that memory does not grow with the log) before it writes
// the first byte: an error from the source leaves w untouched, and a server
// can still answer with an error status.
func WriteBundle(ctx context.Context, w io.Writer, src LogSource, spec BundleSpec) (Manifest, error) {
	loc := spec.Location
	if loc == nil {
		loc = time.UTC
	}
	win, err := periodWindow(spec.Period, loc)
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle: %w", err)
	}
	if err := purged(src, spec.Period); err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
	}
	m := Manifest{
		Format: BundleFormat, Version: BundleVersion, Period: spec.Period.Name,
		Unit: spec.Unit, Stations: spec.Stations, UnitPath: spec.UnitPath, Withheld: spec.Withhold, TimeZone: loc.String(),
		From: win.from, To: win.to, GraceUntil: win.until, Selection: selectionRule,
		Complete: !spec.Now.Before(win.until), GeneratedAt: spec.Now.UTC(), Generator: spec.Generator,
		Seals: []broadcast.OpEntry{}, Files: map[string]FileSum{},
		Verify: "loaxa audit verify --bundle FILE",
	}
	// Heads first: what is appended while we read lies beyond them.
	if m.AsRunHead.Seq, m.AsRunHead.Hash, err = src.AsRunHead(); err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
	}
	if m.OplogHead.Seq, m.OplogHead.Hash, err = src.OpsHead(); err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
	}
	if m.HashForms, err = src.HashForms(); err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
	}
	ours := map[string]bool{}
	for _, st := range spec.Stations {
		ours[st] = true
	}

	asrun, err := newHashFile(spec.TempDir, "bundle-asrun-*.jsonl")
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
	}
	defer asrun.remove()
	oplog, err := newHashFile(spec.TempDir, "bundle-oplog-*.jsonl")
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
	}
	defer oplog.remove()

	devices := map[string]bool{}
	seg := segmenter{w: win}
	n := 0
	err = src.AsRun(0, func(e broadcast.AsRunEntry) error {
		if e.Seq > m.AsRunHead.Seq {
			return errBeyondHead
		}
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if !seg.take(e.Seq, e.ReceivedAt, e.PrevHash, e.Hash) {
			if seg.over {
				return errBeyondHead
			}
			return nil
		}
		if spec.Withhold && !ours[e.Station] {
			if m.HashForms.AsRun(e.Seq) != broadcast.HashForm2 {
				return broadcast.Errorf(broadcast.EConflict,
					"as-run entry %d (received %s) is another unit's and chained in the first hash form, which covers its content itself: a bundle of unit %s cannot leave it out, so it cannot be made for %s; the logs chain content hashes from entry %d on, and a bundle of the whole tree holds every period",
					e.Seq, e.ReceivedAt.In(loc).Format(time.RFC3339), spec.Unit, spec.Period.Name, m.HashForms.AsRunFrom)
			}
			m.WithheldAsRun++
			return asrun.enc.Encode(Withheld{Seq: e.Seq, At: e.ReceivedAt, ContentHash: e.ContentHash(), PrevHash: e.PrevHash, Hash: e.Hash})
		}
		devices[e.Device] = true
		return asrun.enc.Encode(e)
	})
	if err != nil && !errors.Is(err, errBeyondHead) {
		if broadcast.ErrorCode(err) == broadcast.EConflict {
			return Manifest{}, err
		}
		return Manifest{}, fmt.Errorf("bundle %s: as-run log: %w", spec.Period.Name, err)
	}
	m.AsRun = seg.segment()

	months := map[string]bool{}
	for _, mo := range spec.Period.Months {
		months[string(mo)] = true
	}
	opSeg := segmenter{w: win}
	planned := map[string]int{} // airing → its index in the plan
	if spec.Plan != nil {
		for i, a := range spec.Plan.Airings {
			planned[a.ID] = i
		}
	}
	err = src.Ops(0, func(o broadcast.OpEntry) error {
		if o.Seq > m.OplogHead.Seq {
			return errBeyondHead
		}
		// Seals are written after their month, so the whole log is read
		// for them; it is small beside the as-run log.
		if o.Action == ActionSeal && months[o.Subject] {
			m.Seals = append(m.Seals, o)
		}
		if i, ok := planned[o.Subject]; ok && strings.HasPrefix(o.Action, "airing.") {
			spec.Plan.Airings[i].Changes = append(spec.Plan.Airings[i].Changes, o.Seq)
		}
		if !opSeg.take(o.Seq, o.At, o.PrevHash, o.Hash) {
			return nil
		}
		if spec.Withhold && !related(o.Unit, spec.UnitPath) {
			if m.HashForms.Oplog(o.Seq) != broadcast.HashForm2 {
				return broadcast.Errorf(broadcast.EConflict,
					"operation %d (%s) is another unit's and chained in the first hash form, which covers its content itself: a bundle of unit %s cannot leave it out, so it cannot be made for %s; the logs chain content hashes from operation %d on, and a bundle of the whole tree holds every period",
					o.Seq, o.At.In(loc).Format(time.RFC3339), spec.Unit, spec.Period.Name, m.HashForms.OplogFrom)
			}
			m.WithheldOplog++
			return oplog.enc.Encode(Withheld{Seq: o.Seq, At: o.At, ContentHash: o.ContentHash(), PrevHash: o.PrevHash, Hash: o.Hash})
		}
		return oplog.enc.Encode(o)
	})
	if err != nil && !errors.Is(err, errBeyondHead) {
		if broadcast.ErrorCode(err) == broadcast.EConflict {
			return Manifest{}, err
		}
		return Manifest{}, fmt.Errorf("bundle %s: operations log: %w", spec.Period.Name, err)
	}
	m.Oplog = opSeg.segment()

	var required []byte
	if spec.Plan != nil {
		if required, err = requiredFile(spec, m.Seals); err != nil {
			return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
		}
	}

	devs := map[string]BundleDevice{}
	for id := range devices {
		d, err := src.Device(id)
		if broadcast.IsNotFound(err) {
			continue // the verifier names its entries: the device is not registered
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
		}
		devs[id] = BundleDevice{Station: d.Station, PublicKey: d.PublicKey, Disabled: d.Disabled, CreatedAt: d.CreatedAt, DisabledAt: d.DisabledAt}
	}
	m.Devices = len(devs)
	devJSON, err := json.MarshalIndent(devs, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: devices: %w", spec.Period.Name, err)
	}
	devJSON = append(devJSON, '\n')
	readme := []byte(readmeText(m))

	if err := asrun.rewind(); err != nil {
		return Manifest{}, err
	}
	if err := oplog.rewind(); err != nil {
		return Manifest{}, err
	}
	m.Files[FileReadme] = sumOf(readme)
	m.Files[FileDevices] = sumOf(devJSON)
	m.Files[FileAsRun] = asrun.sum()
	m.Files[FileOplog] = oplog.sum()
	if required != nil {
		m.Files[FileRequired] = sumOf(required)
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: manifest: %w", spec.Period.Name, err)
	}
	manifest = append(manifest, '\n')

	// Everything is read: from here on only w can fail.
	// BestSpeed: a national month is gigabytes of base64 payloads, and the
	// daemon's time is worth more than the last tenth of the size.
	gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
	}
	tw := tar.NewWriter(gz)
	put := func(name string, size int64, r io.Reader) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: m.GeneratedAt, Typeflag: tar.TypeReg, Uname: "loaxa", Gname: "loaxa"}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("bundle %s: write %s: %w", spec.Period.Name, name, err)
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("bundle %s: write %s: %w", spec.Period.Name, name, err)
		}
		return nil
	}
	type member struct {
		name string
		size int64
		r    io.Reader
	}
	files := []member{
		{FileManifest, int64(len(manifest)), bytes.NewReader(manifest)},
		{FileReadme, int64(len(readme)), bytes.NewReader(readme)},
		{FileDevices, int64(len(devJSON)), bytes.NewReader(devJSON)},
	}
	if required != nil {
		// Before the as-run entries, which the verifier replays over it as
		// it reads them.
		files = append(files, member{FileRequired, int64(len(required)), bytes.NewReader(required)})
	}
	files = append(files, member{FileAsRun, asrun.size, asrun.f}, member{FileOplog, oplog.size, oplog.f})
	for _, f := range files {
		if err := put(f.name, f.size, f.r); err != nil {
			return Manifest{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
	}
	if err := gz.Close(); err != nil {
		return Manifest{}, fmt.Errorf("bundle %s: %w", spec.Period.Name, err)
	}
	return m, nil
}

// related reports whether an operation of unit belongs to the bundle of
// the unit at path: its own, its descendants' and its ancestors' (a
// province's programme is every district's), and the whole tree's ("").
func related(unit, path string) bool {
	return unit == "" || unit == path || strings.HasPrefix(unit, path+"/") || strings.HasPrefix(path, unit+"/")
}

// requiredFile is required.json: the plan, with the seals' figures of its
// stations.
func requiredFile(spec BundleSpec, seals []broadcast.OpEntry) ([]byte, error) {
	plan := *spec.Plan
	plan.Sealed = []BundleSeal{}
	ours := map[string]bool{}
	for _, st := range plan.Stations {
		ours[st.ID] = true
	}
	for _, o := range seals {
		if spec.Sealed == nil {
			break
		}
		figs, err := spec.Sealed(broadcast.Month(o.Subject))
		if err != nil {
			return nil, fmt.Errorf("sealed figures of %s: %w", o.Subject, err)
		}
		if figs == nil {
			continue
		}
		bs := BundleSeal{Month: broadcast.Month(o.Subject), Op: o.Seq, Leaves: make([]broadcast.Hash, len(figs)), Figures: []SealedFigure{}}
		for i, f := range figs {
			bs.Leaves[i] = f.Leaf()
			if ours[f.Station] {
				bs.Figures = append(bs.Figures, f)
			}
		}
		plan.Sealed = append(plan.Sealed, bs)
	}
	b, err := json.MarshalIndent(plan, "", " ")
	if err != nil {
		return nil, fmt.Errorf("required.json: %w", err)
	}
	return append(b, '\n'), nil
}

func sumOf(b []byte) FileSum {
	h := sha256.Sum256(b)
	return FileSum{SHA256: hex.EncodeToString(h[:]), Size: int64(len(b))}
}

func readmeText(m Manifest) string {
	seals := "none yet"
	if len(m.Seals) > 0 {
		var s []string
		for _, o := range m.Seals {
			s = append(s, fmt.Sprintf("%s (operation %d, hash %s)", o.Subject, o.Seq, o.Hash))
		}
		seals = strings.Join(s, "; ")
	}
	complete := "yes"
	if !m.Complete {
		complete = "no: the period or its grace had not ended; a later bundle will hold more"
	}
	return fmt.Sprintf(`loaxa evidence bundle
=====================

Period    %s: from %s to %s (%s)
Grace     entries received until %s still belong to it
As-run    entries %d to %d (%d)
Ops log   entries %d to %d (%d)
Complete  %s

What it holds
-------------
manifest.json  what the bundle covers: the period, the as-run and operations
               entries, the chain hash before the first entry (prev_hash) and
               of the last (last_hash) of each, and the sha256 of every other
               file.
devices.json   every device whose entries are here in full: its station and
               ed25519 public key.
required.json  what the period required of the bundle's stations (their planned
               airings, the policy) and the sealed figures of those stations.
asrun.jsonl    one as-run entry per line; "payload" is base64 of the exact bytes
               the device signed and sent. "unmatched", where present, says
               that the event named no airing of its station when it was
               logged (unknown_airing, other_station): it counts for none.
               Like "station", it is the daemon's note, not covered by the
               hash; the payload is the evidence.
oplog.jsonl    one operations-log entry per line: who did what.

A bundle of a unit holds the other units' entries of both logs as their
content hash only ("content_hash", no payload, device or station): their
place in the chain is checked, their content cannot be.

Devices send late what they played while offline, so entries received up to
7 days after the period still belong to it. The entries are contiguous, so that
their hash chain can be checked from its first link; the bundles of
consecutive months overlap by up to those 7 days.

How to verify
-------------
    loaxa audit verify --bundle FILE

checks, offline: every file against its sha256 in the manifest; the hash
chain of both logs from the manifest's prev_hash (a changed, deleted,
inserted or reordered entry is named); that each chain ends at the
manifest's last_hash; every device signature with the keys in devices.json;
and the seals below against the entries they name. It recomputes each
station's month (required, aired, status) from the entries and
required.json and compares it with the figures the daemon sealed, and says
whether the period was over and sealed (--require-sealed: exit 8 if not).
docs/evidence.md in loaxa's sources describes this file.

What the manifest cannot prove alone
------------------------------------
Whoever can write this file can write a manifest that agrees with it. Compare
the manifest's "asrun" and "oplog" segments (first_seq, last_seq, prev_hash,
last_hash) with the seal of each month: an operations-log entry, action
"period.seal", written once the month and its 7 days of grace were over, as
the daemon shows it (GET /api/v1/audit/seals) or as you kept it from an
earlier bundle. A log changed after its seal no longer matches it.

Seals of this period when the bundle was made: %s.
`, m.Period, m.From.Format(time.RFC3339), m.To.Format(time.RFC3339), m.TimeZone,
		m.GraceUntil.Format(time.RFC3339),
		m.AsRun.FirstSeq, m.AsRun.LastSeq, m.AsRun.Entries, m.Oplog.FirstSeq, m.Oplog.LastSeq, m.Oplog.Entries,
		complete, seals)
}
