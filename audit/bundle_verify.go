package audit

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"path"
	"slices"

	"github.com/loaxa/loaxa/broadcast"
)

// Limits on what a verifier reads into memory. The logs are streamed; only
// the manifest and the device list are held, and both are bounded by what a
// national daemon can hold (100,000 devices are about 20 MB of JSON).
const (
	maxManifest = 16 << 20
	maxDevices  = 256 << 20
	maxLine     = 16 << 20 // an event payload is at most 8 KiB; an operation's detail is small
)

// VerifyBundle checks an evidence bundle offline: every file against the
// manifest's sha256, the as-run and operations chains from the manifest's
// prev_hash to its last_hash, every device signature with the keys of
// devices.json, and the seals the manifest carries against the entries they
// name. Signatures are checked on all cores; memory does not grow with the
// log (files that arrive before what they need are spooled to a temporary
// file).
//
// The Result names each problem by log ("asrun", "oplog", or "bundle" for
// the files and the manifest) and entry. An error means the bundle could not
// be read at all (not gzip, not tar, no manifest, a format this code does
// not know), so there is no verdict.
func VerifyBundle(r io.Reader) (Result, error) {
	res, _, err := CheckBundle(r, "")
	return res, err
}

// VerifyBundleFile is VerifyBundle of a file.
func VerifyBundleFile(name string) (Result, error) {
	f, err := os.Open(name)
	if err != nil {
		return Result{}, fmt.Errorf("verify bundle: %w", err)
	}
	defer f.Close()
	res, err := VerifyBundle(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return res, fmt.Errorf("verify bundle %s: %w", name, err)
	}
	return res, nil
}

// CheckBundle is VerifyBundle that also returns the manifest, whose
// segments an auditor compares with the seals recorded by the daemon.
// tempDir is where out-of-order files are spooled ("": os.TempDir).
func CheckBundle(r io.Reader, tempDir string) (Result, Manifest, error) {
	c, err := checkBundle(r, tempDir)
	if err != nil {
		if c != nil && c.m != nil {
			return Result{}, *c.m, err
		}
		return Result{}, Manifest{}, err
	}
	return c.result(), *c.m, nil
}

// checkBundle reads the whole bundle; what it found is put together by
// result.
func checkBundle(r io.Reader, tempDir string) (*bundleCheck, error) {
	c := &bundleCheck{tempDir: tempDir, seen: map[string]FileSum{}, asrunCP: map[uint64]checkpoint{}, opCP: map[uint64]checkpoint{}}
	defer c.cleanup()
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not a gzip'd tar: %w", err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the bundle's tar: %w", err)
		}
		if err := c.file(hdr, tr); err != nil {
			return nil, err
		}
	}
	// The gzip trailer's CRC is checked when its stream is read to the end.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return nil, fmt.Errorf("read the bundle's gzip stream: %w", err)
	}
	if c.m == nil {
		return nil, fmt.Errorf("no %s: not a loaxa evidence bundle", FileManifest)
	}
	if err := c.spooledFiles(); err != nil {
		return c, err
	}
	return c, nil
}

type checkpoint struct {
	hash broadcast.Hash
	what string
}

type bundleCheck struct {
	tempDir string
	m       *Manifest
	devices map[string]deviceInfo // nil until devices.json is read
	seen    map[string]FileSum
	spooled map[string]*os.File // logs that came before what they need

	v                    *ParallelVerifier
	asrunDone, oplogDone bool

	// Problems of the files and the manifest, then of the seals; the
	// verifier holds those of the chains.
	fileProblems, sealProblems []Problem
	asrunCP, opCP              map[uint64]checkpoint // seq → hash a seal expects

	// required.json: the plan, a replay of the as-run entries over it for
	// each of its months, and the problems of its sealed figures.
	plan      *Plan
	replays   []*monthReplay
	sealed    map[broadcast.Month]*BundleSeal // the seals whose figures check out
	planProbs []Problem
	figures   []FigureCheck // set by figureProblems
}

func (c *bundleCheck) fileProblem(format string, args ...any) {
	c.fileProblems = append(c.fileProblems, Problem{Log: "bundle", Problem: fmt.Sprintf(format, args...)})
}

func (c *bundleCheck) cleanup() {
	for _, f := range c.spooled {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	if c.v != nil {
		c.v.Close()
	}
}

// hashingReader hashes and counts what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// file reads one member of the tar.
func (c *bundleCheck) file(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg:
	default:
		c.fileProblem("file %s is not a regular file", hdr.Name)
		return nil
	}
	// Flat names; one leading directory (an auditor who unpacked and
	// re-packed the bundle) does not matter.
	name := path.Base(path.Clean(hdr.Name))
	if _, dup := c.seen[name]; dup {
		c.fileProblem("file %s appears twice; the first was checked", name)
		return nil
	}
	hr := &hashingReader{r: r, h: sha256.New()}
	var err error
	switch name {
	case FileManifest:
		err = c.readManifest(hr)
	case FileDevices:
		err = c.readDevices(hr)
	case FileRequired:
		err = c.readRequired(hr)
	case FileAsRun:
		if c.asrunReady() {
			err = c.readAsRun(hr)
		} else {
			err = c.spool(name, hr)
		}
	case FileOplog:
		if c.m != nil {
			err = c.readOplog(hr)
		} else {
			err = c.spool(name, hr)
		}
	}
	if err != nil {
		return err
	}
	// Whatever a reader left (or a file we do not read) still counts in
	// the file's hash.
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	c.seen[name] = FileSum{SHA256: hex.EncodeToString(hr.h.Sum(nil)), Size: hr.n}
	// A log spooled for want of the devices or the plan can go now.
	if (name == FileDevices || name == FileRequired) && c.asrunReady() {
		if f := c.spooled[FileAsRun]; f != nil {
			return c.replay(FileAsRun, f)
		}
	}
	return nil
}

func (c *bundleCheck) spool(name string, r io.Reader) error {
	f, err := os.CreateTemp(c.tempDir, "loaxa-verify-*")
	if err != nil {
		return fmt.Errorf("spool %s: %w", name, err)
	}
	if c.spooled == nil {
		c.spooled = map[string]*os.File{}
	}
	c.spooled[name] = f
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("spool %s: %w", name, err)
	}
	return nil
}

// replay reads a spooled log, once what it needs is known.
func (c *bundleCheck) replay(name string, f *os.File) error {
	delete(c.spooled, name)
	defer func() { _ = f.Close(); _ = os.Remove(f.Name()) }()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spooled %s: %w", name, err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	if name == FileAsRun {
		return c.readAsRun(br)
	}
	return c.readOplog(br)
}

// spooledFiles reads, at the end, the logs that were waiting for the
// manifest or the devices. Without devices.json every signature fails, as
// it should: the bundle lacks the keys.
func (c *bundleCheck) spooledFiles() error {
	if c.devices == nil {
		c.devices = map[string]deviceInfo{}
	}
	for _, name := range []string{FileAsRun, FileOplog} {
		if f := c.spooled[name]; f != nil {
			if err := c.replay(name, f); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *bundleCheck) readManifest(r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, maxManifest+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", FileManifest, err)
	}
	if len(b) > maxManifest {
		return fmt.Errorf("%s is larger than %d bytes: not a loaxa evidence bundle", FileManifest, maxManifest)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", FileManifest, err)
	}
	if m.Format != BundleFormat {
		return fmt.Errorf("%s: format %q, want %q: not a loaxa evidence bundle", FileManifest, m.Format, BundleFormat)
	}
	if m.Version < minBundleVersion || m.Version > BundleVersion {
		return fmt.Errorf("%s: bundle format version %d; this loaxa reads versions %d to %d", FileManifest, m.Version, minBundleVersion, BundleVersion)
	}
	c.m = &m
	c.v = NewParallelVerifier(func(id string) (DeviceKey, bool) {
		d := c.devices[id]
		return d.DeviceKey, d.known
	}, 0)
	c.v.SetHashForms(m.HashForms)
	for _, s := range []struct {
		log string
		seg Segment
	}{{"asrun", m.AsRun}, {"oplog", m.Oplog}} {
		if s.seg.FirstSeq == 0 || s.seg.LastSeq+1 < s.seg.FirstSeq || s.seg.Entries != s.seg.LastSeq+1-s.seg.FirstSeq {
			c.fileProblem("the manifest's %s segment is inconsistent: entries %d to %d, counted %d", s.log, s.seg.FirstSeq, s.seg.LastSeq, s.seg.Entries)
		}
	}
	c.v.StartAsRun(m.AsRun.FirstSeq-min(m.AsRun.FirstSeq, 1), m.AsRun.PrevHash)
	c.v.StartOps(m.Oplog.FirstSeq-min(m.Oplog.FirstSeq, 1), m.Oplog.PrevHash)
	for _, o := range m.Seals {
		c.sealCheckpoints(o)
	}
	if f := c.spooled[FileOplog]; f != nil {
		if err := c.replay(FileOplog, f); err != nil {
			return err
		}
	}
	if f := c.spooled[FileAsRun]; f != nil && c.asrunReady() {
		return c.replay(FileAsRun, f)
	}
	return nil
}

// asrunReady says whether the as-run entries can be checked as they come:
// the manifest and the keys are known, and the plan they are replayed over
// if the bundle has one.
func (c *bundleCheck) asrunReady() bool {
	if c.m == nil || c.devices == nil {
		return false
	}
	_, planned := c.m.Files[FileRequired]
	return !planned || c.plan != nil
}

// sealCheckpoints checks a seal record the manifest carries and notes the
// hashes it expects of the bundle's entries. A seal is only as good as the
// manifest that carries it; what it adds is that a log rewritten after the
// seal disagrees with the seal, and an auditor holding the seal's hash from
// elsewhere can compare it.
func (c *bundleCheck) sealCheckpoints(o broadcast.OpEntry) {
	m := c.m
	seal := func(format string, args ...any) {
		c.sealProblems = append(c.sealProblems, Problem{Log: "oplog", Entry: o.Seq, Problem: fmt.Sprintf(format, args...)})
	}
	if o.ChainHashIn(m.HashForms) != o.Hash {
		seal("the seal record of %s in the manifest was altered: its content does not match its hash", o.Subject)
		return
	}
	var rec SealRecord
	if o.Action != ActionSeal || json.Unmarshal(o.Detail, &rec) != nil || rec.Period != o.Subject {
		seal("the manifest lists operation %d as a seal, but it is not one", o.Seq)
		return
	}
	what := fmt.Sprintf("sealed for %s (operation %d)", rec.Period, o.Seq)
	for _, s := range []struct {
		log         string
		sealed, got Segment
		cp          map[uint64]checkpoint
	}{{"asrun", rec.AsRun, m.AsRun, c.asrunCP}, {"oplog", rec.Oplog, m.Oplog, c.opCP}} {
		if s.sealed.FirstSeq < s.got.FirstSeq || s.sealed.LastSeq > s.got.LastSeq {
			seal("the %s entries %s (%d to %d) are not all in this bundle (%d to %d)", s.log, what, s.sealed.FirstSeq, s.sealed.LastSeq, s.got.FirstSeq, s.got.LastSeq)
			continue
		}
		for _, p := range []Head{{Seq: s.sealed.FirstSeq - 1, Hash: s.sealed.PrevHash}, {Seq: s.sealed.LastSeq, Hash: s.sealed.LastHash}} {
			switch {
			case p.Seq+1 == s.got.FirstSeq:
				if p.Hash != s.got.PrevHash {
					c.sealProblems = append(c.sealProblems, Problem{Log: s.log, Entry: s.got.FirstSeq, Problem: fmt.Sprintf("the chain hash before it differs from the one %s: the log was changed after the seal", what)})
				}
			default:
				s.cp[p.Seq] = checkpoint{hash: p.Hash, what: what}
			}
		}
	}
	// The seal entry itself, when the bundle's operations include it.
	if o.Seq >= m.Oplog.FirstSeq && o.Seq <= m.Oplog.LastSeq {
		c.opCP[o.Seq] = checkpoint{hash: o.Hash, what: "of the seal of " + rec.Period + " in the manifest"}
	}
}

func (c *bundleCheck) checkpoint(log string, cp map[uint64]checkpoint, seq uint64, h broadcast.Hash) {
	if want, ok := cp[seq]; ok && want.hash != h {
		c.sealProblems = append(c.sealProblems, Problem{Log: log, Entry: seq, Problem: fmt.Sprintf("its hash differs from the one %s: the log was changed after the seal", want.what)})
	}
}

func (c *bundleCheck) readDevices(r io.Reader) error {
	var devs map[string]BundleDevice
	dec := json.NewDecoder(io.LimitReader(r, maxDevices))
	if err := dec.Decode(&devs); err != nil {
		c.fileProblem("%s is not a device list: %v", FileDevices, err)
		devs = nil
	}
	c.devices = make(map[string]deviceInfo, len(devs))
	for id, d := range devs {
		if n := len(d.PublicKey); n != 0 && n != ed25519.PublicKeySize {
			// ed25519.Verify panics on a key of the wrong size; the
			// device's entries are named as unverifiable instead.
			c.fileProblem("device %s in %s has a public key of %d bytes, not %d", id, FileDevices, n, ed25519.PublicKeySize)
			continue
		}
		c.devices[id] = deviceInfo{DeviceKey: DeviceKey{PublicKey: d.PublicKey, Station: d.Station}, known: true}
	}
	return nil
}

// lines calls fn with each non-empty line of r; a line longer than maxLine
// is reported through long and skipped.
func lines(r io.Reader, fn func(n int, line []byte), long func(n int)) error {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 256<<10)
	}
	var own []byte // a line longer than br's buffer, gathered
	for n := 1; ; n++ {
		part, err := br.ReadSlice('\n')
		line, tooLong := part, false // the common case: no copy
		if errors.Is(err, bufio.ErrBufferFull) {
			own = append(own[:0], part...)
			for errors.Is(err, bufio.ErrBufferFull) {
				part, err = br.ReadSlice('\n')
				if len(own)+len(part) > maxLine {
					tooLong = true // read on to the line's end, keep nothing
				} else {
					own = append(own, part...)
				}
			}
			line = own
		}
		if tooLong {
			long(n)
		} else if line = bytes.TrimSpace(line); len(line) > 0 {
			fn(n, line)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (c *bundleCheck) readAsRun(r io.Reader) error {
	if c.asrunDone {
		return nil
	}
	c.asrunDone = true
	err := lines(r, func(n int, line []byte) {
		if bytes.Contains(line, withheldKey) {
			var w Withheld
			if err := json.Unmarshal(line, &w); err != nil {
				c.fileProblem("%s line %d is not a withheld as-run entry: %v", FileAsRun, n, err)
				return
			}
			c.checkpoint("asrun", c.asrunCP, w.Seq, w.Hash)
			c.v.AsRunWithheld(w)
			for _, r := range c.replays {
				r.seg.take(w.Seq, w.At, w.PrevHash, w.Hash)
			}
			return
		}
		var e broadcast.AsRunEntry
		if err := json.Unmarshal(line, &e); err != nil {
			c.fileProblem("%s line %d is not an as-run entry: %v", FileAsRun, n, err)
			return
		}
		c.checkpoint("asrun", c.asrunCP, e.Seq, e.Hash)
		for _, r := range c.replays {
			r.apply(&e)
		}
		c.v.AsRun(e)
	}, func(n int) { c.fileProblem("%s line %d is longer than %d bytes", FileAsRun, n, maxLine) })
	if err != nil {
		return fmt.Errorf("read %s: %w", FileAsRun, err)
	}
	return nil
}

func (c *bundleCheck) readOplog(r io.Reader) error {
	if c.oplogDone {
		return nil
	}
	c.oplogDone = true
	err := lines(r, func(n int, line []byte) {
		if bytes.Contains(line, withheldKey) {
			var w Withheld
			if err := json.Unmarshal(line, &w); err != nil {
				c.fileProblem("%s line %d is not a withheld operations-log entry: %v", FileOplog, n, err)
				return
			}
			c.checkpoint("oplog", c.opCP, w.Seq, w.Hash)
			c.v.OpWithheld(w)
			return
		}
		var o broadcast.OpEntry
		if err := json.Unmarshal(line, &o); err != nil {
			c.fileProblem("%s line %d is not an operations-log entry: %v", FileOplog, n, err)
			return
		}
		c.checkpoint("oplog", c.opCP, o.Seq, o.Hash)
		c.v.Op(o)
	}, func(n int) { c.fileProblem("%s line %d is longer than %d bytes", FileOplog, n, maxLine) })
	if err != nil {
		return fmt.Errorf("read %s: %w", FileOplog, err)
	}
	return nil
}

// result puts the verdict together: the files first (a changed file is the
// first thing an auditor should hear of), then the chains, then the seals.
func (c *bundleCheck) result() Result {
	m := c.m
	for _, name := range []string{FileReadme, FileDevices, FileAsRun, FileOplog} {
		if _, listed := m.Files[name]; !listed {
			c.fileProblem("file %s is not listed in the manifest", name)
		}
	}
	for _, name := range sortedNames(m.Files) {
		want := m.Files[name]
		got, ok := c.seen[name]
		switch {
		case !ok:
			c.fileProblem("file %s is listed in the manifest but missing", name)
		case got.SHA256 != want.SHA256:
			c.fileProblem("file %s: its sha256 %s is not the manifest's %s: the file was changed", name, got.SHA256, want.SHA256)
		case got.Size != want.Size:
			c.fileProblem("file %s: %d bytes, the manifest says %d", name, got.Size, want.Size)
		}
	}
	for _, name := range sortedNames(c.seen) {
		if _, listed := m.Files[name]; !listed && name != FileManifest && name != FileReadme && name != FileDevices && name != FileAsRun && name != FileOplog && name != FileRequired {
			c.fileProblem("file %s is not part of a bundle and not listed in the manifest", name)
		}
	}
	res := c.v.Result(m.AsRun.LastHash, m.AsRun.LastSeq, m.Oplog.LastHash, m.Oplog.LastSeq)
	problems := append(append(append([]Problem{}, c.fileProblems...), res.Problems...), c.sealProblems...)
	problems = append(problems, c.figureProblems()...)
	if res.Entries != m.AsRun.Entries {
		problems = append(problems, Problem{Log: "asrun", Entry: m.AsRun.LastSeq, Problem: fmt.Sprintf("the bundle holds %d entries, its manifest counts %d", res.Entries, m.AsRun.Entries)})
	}
	if res.OpEntries != m.Oplog.Entries {
		problems = append(problems, Problem{Log: "oplog", Entry: m.Oplog.LastSeq, Problem: fmt.Sprintf("the bundle holds %d entries, its manifest counts %d", res.OpEntries, m.Oplog.Entries)})
	}
	res.Problems, res.OK = problems, len(problems) == 0
	return res
}

// withheldKey marks a withheld entry's line: a full entry's strings are
// JSON-escaped, so their quotes never precede a colon this way, and its
// bytes (payload, detail) are base64.
var withheldKey = []byte(`"content_hash":`)

func sortedNames[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
