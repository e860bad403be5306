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
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

var ict = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		panic(err)
	}
	return loc
}()

// memLog is a store's logs and device registry in memory: the same
// interface as *storage.Store, for what audit reads.
type memLog struct {
	asrun   []broadcast.AsRunEntry
	ops     []broadcast.OpEntry
	devices map[string]broadcast.Device
	keys    map[string]ed25519.PrivateKey
	dseq    map[string]uint64
	forms   broadcast.HashForms // zero: every entry in the first form
}

func newMemLog(t testing.TB, devices ...string) *memLog {
	l := &memLog{devices: map[string]broadcast.Device{}, keys: map[string]ed25519.PrivateKey{}, dseq: map[string]uint64{}}
	for _, id := range devices {
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		l.devices[id] = broadcast.Device{ID: id, Station: strings.Split(id, "-")[0], PublicKey: pub, CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		l.keys[id] = priv
	}
	return l
}

// event is a signed payload of device as a device would send it, of about
// the size of a real finished event (440 bytes).
func signedEvent(t testing.TB, device string, seq uint64, at time.Time, key ed25519.PrivateKey) []byte {
	ev := broadcast.Event{
		V: 1, ID: broadcast.NewID(at), Device: device, Seq: seq, Airing: "01JF3Q7W6Z9M2X8K4T5R1N0ABC", Rev: 42,
		Event: broadcast.EventFinished, At: at, StartedAt: at.Add(-15 * time.Minute), PlayedMS: 900412,
		SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", ClockSynced: true,
	}
	p, err := broadcast.SignEvent(ev, key)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// add appends a signed event of device, received at at.
func (l *memLog) add(t testing.TB, device string, at time.Time) broadcast.AsRunEntry {
	l.dseq[device]++
	e := broadcast.AsRunEntry{
		Seq: uint64(len(l.asrun)) + 1, ReceivedAt: at.UTC(), Device: device, Station: l.devices[device].Station,
		Airing: "01JF3Q7W6Z9M2X8K4T5R1N0ABC", DeviceSeq: l.dseq[device], Event: broadcast.EventFinished,
		Payload: signedEvent(t, device, l.dseq[device], at, l.keys[device]),
	}
	if n := len(l.asrun); n > 0 {
		e.PrevHash = l.asrun[n-1].Hash
	}
	e.Hash = e.ChainHashIn(l.forms)
	l.asrun = append(l.asrun, e)
	return e
}

func (l *memLog) op(at time.Time, action, subject string, detail []byte) broadcast.OpEntry {
	o := broadcast.OpEntry{Seq: uint64(len(l.ops)) + 1, At: at.UTC(), Actor: "t1 tester", Action: action, Subject: subject, Detail: detail}
	if n := len(l.ops); n > 0 {
		o.PrevHash = l.ops[n-1].Hash
	}
	o.Hash = o.ChainHashIn(l.forms)
	l.ops = append(l.ops, o)
	return o
}

func (l *memLog) AsRun(after uint64, fn func(broadcast.AsRunEntry) error) error {
	for _, e := range l.asrun {
		if e.Seq > after {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *memLog) Ops(after uint64, fn func(broadcast.OpEntry) error) error {
	for _, o := range l.ops {
		if o.Seq > after {
			if err := fn(o); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *memLog) AsRunHead() (uint64, broadcast.Hash, error) {
	if len(l.asrun) == 0 {
		return 0, broadcast.Hash{}, nil
	}
	e := l.asrun[len(l.asrun)-1]
	return e.Seq, e.Hash, nil
}

func (l *memLog) AsRunBase() (uint64, broadcast.Hash, error) { return 0, broadcast.Hash{}, nil }

func (l *memLog) HashForms() (broadcast.HashForms, error) { return l.forms, nil }

func (l *memLog) OpsHead() (uint64, broadcast.Hash, error) {
	if len(l.ops) == 0 {
		return 0, broadcast.Hash{}, nil
	}
	o := l.ops[len(l.ops)-1]
	return o.Seq, o.Hash, nil
}

func (l *memLog) Device(id string) (broadcast.Device, error) {
	d, ok := l.devices[id]
	if !ok {
		return d, broadcast.Errorf(broadcast.ENotFound, "device %s not found", id)
	}
	return d, nil
}

// threeMonths is a log of events received every 10 hours from mid-November
// to mid-January (ICT), and an operation a day.
func threeMonths(t testing.TB) *memLog {
	l := newMemLog(t, "14755-01", "14755-02", "14758-01")
	devs := []string{"14755-01", "14755-02", "14758-01"}
	start := time.Date(2026, 11, 15, 6, 0, 0, 0, ict)
	for i, at := 0, start; at.Before(time.Date(2027, 1, 15, 0, 0, 0, 0, ict)); i, at = i+1, at.Add(10*time.Hour) {
		l.add(t, devs[i%len(devs)], at)
		if i%3 == 0 {
			l.op(at, "airing.move", fmt.Sprintf("A%d", i), []byte(`{"start":"x"}`))
		}
	}
	return l
}

func bundleOf(t testing.TB, l *memLog, period string, now time.Time) ([]byte, Manifest) {
	t.Helper()
	p, err := broadcast.ParsePeriod(period)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	m, err := WriteBundle(context.Background(), &buf, l, BundleSpec{Period: p, Location: ict, Now: now, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), m
}

// unpacked is a bundle's files, in tar order, for tampering.
type unpacked struct {
	names []string
	files map[string][]byte
}

func unpack(t *testing.T, b []byte) unpacked {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	u := unpacked{files: map[string][]byte{}}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return u
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		u.names = append(u.names, hdr.Name)
		u.files[hdr.Name] = body
	}
}

func (u unpacked) pack(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range u.names {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(u.files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(u.files[name])
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func (u unpacked) manifest(t *testing.T) Manifest {
	var m Manifest
	if err := json.Unmarshal(u.files[FileManifest], &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (u unpacked) setManifest(t *testing.T, m Manifest) {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	u.files[FileManifest] = b
}

// fixSum makes the manifest agree with a changed file, as a forger would.
func (u unpacked) fixSum(t *testing.T, name string) {
	m := u.manifest(t)
	h := sha256.Sum256(u.files[name])
	m.Files[name] = FileSum{SHA256: hex.EncodeToString(h[:]), Size: int64(len(u.files[name]))}
	u.setManifest(t, m)
}

func (u unpacked) entries(t *testing.T) []broadcast.AsRunEntry {
	var out []broadcast.AsRunEntry
	for _, line := range bytes.Split(bytes.TrimSpace(u.files[FileAsRun]), []byte("\n")) {
		var e broadcast.AsRunEntry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func (u unpacked) setEntries(t *testing.T, es []broadcast.AsRunEntry) {
	var b bytes.Buffer
	for _, e := range es {
		line, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	u.files[FileAsRun] = b.Bytes()
}

func verifyBytes(t *testing.T, b []byte) Result {
	t.Helper()
	res, err := VerifyBundle(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func problemsOf(r Result) string {
	var s []string
	for _, p := range r.Problems {
		s = append(s, fmt.Sprintf("%s %d: %s", p.Log, p.Entry, p.Problem))
	}
	return strings.Join(s, "\n")
}

func hasProblem(r Result, log string, entry uint64, words string) bool {
	for _, p := range r.Problems {
		if p.Log == log && p.Entry == entry && strings.Contains(p.Problem, words) {
			return true
		}
	}
	return false
}

func TestBundleSelectsTheMonthAndItsGrace(t *testing.T) {
	l := threeMonths(t)
	b, m := bundleOf(t, l, "2026-12", time.Date(2027, 2, 1, 0, 0, 0, 0, ict))
	from, until := time.Date(2026, 12, 1, 0, 0, 0, 0, ict), time.Date(2027, 1, 8, 0, 0, 0, 0, ict)
	first, last := l.asrun[m.AsRun.FirstSeq-1], l.asrun[m.AsRun.LastSeq-1]
	before, after := l.asrun[m.AsRun.FirstSeq-2], l.asrun[m.AsRun.LastSeq]
	if first.ReceivedAt.Before(from) || !before.ReceivedAt.Before(from) || !last.ReceivedAt.Before(until) || after.ReceivedAt.Before(until) {
		t.Fatalf("segment %+v: first %v (before it %v), last %v (after it %v); want the cut at %v and %v", m.AsRun, first.ReceivedAt, before.ReceivedAt, last.ReceivedAt, after.ReceivedAt, from, until)
	}
	if m.AsRun.PrevHash != before.Hash || m.AsRun.LastHash != last.Hash || m.AsRun.Entries != m.AsRun.LastSeq-m.AsRun.FirstSeq+1 {
		t.Fatalf("segment hashes or count wrong: %+v", m.AsRun)
	}
	if !m.Complete || m.Devices != 3 || m.Oplog.Entries == 0 || m.TimeZone != "Asia/Ho_Chi_Minh" {
		t.Fatalf("manifest %+v", m)
	}
	u := unpack(t, b)
	if strings.Join(u.names, " ") != "manifest.json README.txt devices.json asrun.jsonl oplog.jsonl" {
		t.Fatalf("files %v", u.names)
	}
	if r := verifyBytes(t, b); !r.OK || r.Entries != m.AsRun.Entries || r.Head != m.AsRun.LastHash {
		t.Fatalf("an intact bundle: %+v\n%s", r, problemsOf(r))
	}
	// A period still in its grace is marked incomplete; one with nothing
	// received is empty, and verifies.
	if _, m := bundleOf(t, l, "2026-12", time.Date(2027, 1, 3, 0, 0, 0, 0, ict)); m.Complete {
		t.Error("a bundle made inside the grace says it is complete")
	}
	eb, em := bundleOf(t, l, "2027-06", time.Date(2027, 8, 1, 0, 0, 0, 0, ict))
	if em.AsRun.Entries != 0 || em.AsRun.FirstSeq != uint64(len(l.asrun))+1 || em.AsRun.PrevHash != l.asrun[len(l.asrun)-1].Hash {
		t.Fatalf("an empty period: %+v", em.AsRun)
	}
	if r := verifyBytes(t, eb); !r.OK {
		t.Fatalf("an empty bundle: %s", problemsOf(r))
	}
	// A half-year spans its months.
	_, hm := bundleOf(t, l, "2026-H2", time.Date(2027, 2, 1, 0, 0, 0, 0, ict))
	if hm.AsRun.FirstSeq != 1 || hm.AsRun.LastSeq != m.AsRun.LastSeq {
		t.Fatalf("2026-H2: %+v, want 1 to %d", hm.AsRun, m.AsRun.LastSeq)
	}
}

func TestBundleTamper(t *testing.T) {
	l := threeMonths(t)
	b, m := bundleOf(t, l, "2026-12", time.Date(2027, 2, 1, 0, 0, 0, 0, ict))
	victim := m.AsRun.FirstSeq + 10      // an entry well inside the segment
	at := int(victim - m.AsRun.FirstSeq) // its line

	t.Run("payload byte", func(t *testing.T) {
		u := unpack(t, b)
		es := u.entries(t)
		p := es[at].Payload
		i := bytes.Index(p, []byte(`"played_ms":9`)) + len(`"played_ms":`)
		p[i] = '8' // 900412 ms becomes 800412: still a valid event
		u.setEntries(t, es)
		u.fixSum(t, FileAsRun)
		r := verifyBytes(t, u.pack(t))
		if r.OK || !hasProblem(r, "asrun", victim, "altered") || !hasProblem(r, "asrun", victim, "signature") {
			t.Fatalf("want entry %d named altered and badly signed:\n%s", victim, problemsOf(r))
		}
		for _, p := range r.Problems {
			if p.Log == "bundle" {
				t.Errorf("the file's sum was fixed, yet: %s", p.Problem)
			}
		}
	})
	t.Run("deleted entry", func(t *testing.T) {
		u := unpack(t, b)
		es := u.entries(t)
		u.setEntries(t, append(es[:at:at], es[at+1:]...))
		u.fixSum(t, FileAsRun)
		r := verifyBytes(t, u.pack(t))
		if r.OK || !hasProblem(r, "asrun", victim+1, fmt.Sprintf("entries %d to %d are missing", victim, victim)) {
			t.Fatalf("want the gap at %d named:\n%s", victim, problemsOf(r))
		}
	})
	t.Run("reordered", func(t *testing.T) {
		u := unpack(t, b)
		es := u.entries(t)
		es[at], es[at+1] = es[at+1], es[at]
		u.setEntries(t, es)
		u.fixSum(t, FileAsRun)
		r := verifyBytes(t, u.pack(t))
		if r.OK || !hasProblem(r, "asrun", victim, "out of order") {
			t.Fatalf("want the swap named:\n%s", problemsOf(r))
		}
	})
	t.Run("forged signature", func(t *testing.T) {
		// A forger who re-signs an event with their own key and rewrites
		// the chain and the manifest from there: only the signature can
		// tell.
		u := unpack(t, b)
		es := u.entries(t)
		_, forger, _ := ed25519.GenerateKey(nil)
		es[at].Payload = signedEvent(t, es[at].Device, es[at].DeviceSeq, es[at].ReceivedAt, forger)
		for i := at; i < len(es); i++ {
			if i > 0 {
				es[i].PrevHash = es[i-1].Hash
			}
			es[i].Hash = es[i].ChainHash()
		}
		u.setEntries(t, es)
		m := u.manifest(t)
		m.AsRun.LastHash = es[len(es)-1].Hash
		u.setManifest(t, m)
		u.fixSum(t, FileAsRun)
		r := verifyBytes(t, u.pack(t))
		if r.OK || len(r.Problems) != 1 || !hasProblem(r, "asrun", victim, "signature does not verify") {
			t.Fatalf("want only entry %d's signature named:\n%s", victim, problemsOf(r))
		}
	})
	t.Run("file sum", func(t *testing.T) {
		for _, name := range []string{FileReadme, FileAsRun, FileDevices, FileOplog} {
			u := unpack(t, b)
			u.files[name] = append(u.files[name], ' ')
			r := verifyBytes(t, u.pack(t))
			if r.OK || !hasProblem(r, "bundle", 0, "file "+name+": its sha256") {
				t.Fatalf("a changed %s:\n%s", name, problemsOf(r))
			}
		}
	})
	t.Run("missing and extra files", func(t *testing.T) {
		u := unpack(t, b)
		u.names = append(u.names[:1], u.names[2:]...) // no README
		u.names = append(u.names, "notes.txt")
		u.files["notes.txt"] = []byte("hi")
		r := verifyBytes(t, u.pack(t))
		if !hasProblem(r, "bundle", 0, "README.txt is listed in the manifest but missing") || !hasProblem(r, "bundle", 0, "notes.txt is not part of a bundle") {
			t.Fatalf("%s", problemsOf(r))
		}
	})
	t.Run("station field", func(t *testing.T) {
		// The station is not in the chain hash: it is checked against the
		// device's registered station instead.
		u := unpack(t, b)
		es := u.entries(t)
		es[at].Station = "99999"
		u.setEntries(t, es)
		u.fixSum(t, FileAsRun)
		r := verifyBytes(t, u.pack(t))
		if r.OK || !hasProblem(r, "asrun", victim, "names station 99999") {
			t.Fatalf("%s", problemsOf(r))
		}
	})
	t.Run("cut at the end", func(t *testing.T) {
		u := unpack(t, b)
		es := u.entries(t)
		u.setEntries(t, es[:len(es)-1])
		u.fixSum(t, FileAsRun)
		r := verifyBytes(t, u.pack(t))
		if r.OK || !hasProblem(r, "asrun", m.AsRun.LastSeq, "ends at entry") {
			t.Fatalf("%s", problemsOf(r))
		}
	})
	t.Run("files in another order", func(t *testing.T) {
		// An auditor who unpacked and re-packed the bundle: the logs come
		// before the manifest and the keys, and are spooled.
		u := unpack(t, b)
		u.names = []string{"x/" + FileAsRun, "x/" + FileOplog, "x/" + FileDevices, "x/" + FileReadme, "x/" + FileManifest}
		for _, n := range []string{FileAsRun, FileOplog, FileDevices, FileReadme, FileManifest} {
			u.files["x/"+n] = u.files[n]
		}
		if r := verifyBytes(t, u.pack(t)); !r.OK || r.Entries != m.AsRun.Entries {
			t.Fatalf("re-packed: %+v\n%s", r, problemsOf(r))
		}
	})
	t.Run("not a bundle", func(t *testing.T) {
		if _, err := VerifyBundle(bytes.NewReader(b[:len(b)/2])); err == nil {
			t.Error("a truncated bundle verified without error")
		}
		u := unpack(t, b)
		u.names = u.names[1:]
		if _, err := VerifyBundle(bytes.NewReader(u.pack(t))); err == nil || !strings.Contains(err.Error(), "no manifest.json") {
			t.Errorf("no manifest: %v", err)
		}
		if _, err := VerifyBundle(strings.NewReader("hello")); err == nil {
			t.Error("text verified")
		}
	})
}

func TestVerifyBundleFile(t *testing.T) {
	l := threeMonths(t)
	b, _ := bundleOf(t, l, "2026-12", time.Date(2027, 2, 1, 0, 0, 0, 0, ict))
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := VerifyBundleFile(path); err != nil || !r.OK {
		t.Fatalf("%v %s", err, problemsOf(r))
	}
	if _, err := VerifyBundleFile(path + ".missing"); err == nil {
		t.Fatal("a missing file verified")
	}
}

func TestSeal(t *testing.T) {
	l := threeMonths(t)
	ctx := context.Background()
	if _, err := Seal(ctx, l, "2026-12", ict, time.Date(2027, 1, 7, 23, 0, 0, 0, ict)); broadcast.ErrorCode(err) != broadcast.EConflict {
		t.Fatalf("sealing inside the grace: %v, want a conflict", err)
	}
	now := time.Date(2027, 1, 20, 0, 0, 0, 0, ict)
	rec, err := Seal(ctx, l, "2026-12", ict, now)
	if err != nil {
		t.Fatal(err)
	}
	op, err := SealOp(rec, "t1 auditor", now)
	if err != nil {
		t.Fatal(err)
	}
	sealOp := l.op(now, op.Action, op.Subject, op.Detail)
	if _, err := Seal(ctx, l, "2026-12", ict, now); broadcast.ErrorCode(err) != broadcast.EConflict || !strings.Contains(err.Error(), "already sealed") {
		t.Fatalf("sealing twice: %v", err)
	}

	// The month's bundle and its seal cut the log at the same places.
	b, m := bundleOf(t, l, "2026-12", now)
	if m.AsRun != rec.AsRun || len(m.Seals) != 1 || m.Seals[0].Hash != sealOp.Hash {
		t.Fatalf("bundle %+v with seals %+v; seal %+v", m.AsRun, m.Seals, rec.AsRun)
	}
	if r := verifyBytes(t, b); !r.OK {
		t.Fatalf("a sealed month: %s", problemsOf(r))
	}
	// A half-year holds the month's seal and its range.
	hb, _ := bundleOf(t, l, "2026-H2", now)
	if r := verifyBytes(t, hb); !r.OK {
		t.Fatalf("a half-year with a sealed month: %s", problemsOf(r))
	}

	// Someone rewrites the log after the seal — one entry re-signed with a
	// stolen key, the chain recomputed from there — and makes a new
	// bundle: the chain holds, the signatures hold, the seal does not.
	victim := rec.AsRun.FirstSeq + 5
	i := victim - 1
	e := &l.asrun[i]
	e.Payload = bytes.Replace(e.Payload, []byte(`"played_ms":900412`), []byte(`"played_ms":900413`), 1)
	var env broadcast.Envelope
	json.Unmarshal(e.Payload, &env)
	env.Sig = ""
	e.Payload = resign(t, env.Body, l.keys[e.Device])
	for j := i; j < uint64(len(l.asrun)); j++ {
		if j > 0 {
			l.asrun[j].PrevHash = l.asrun[j-1].Hash
		}
		l.asrun[j].Hash = l.asrun[j].ChainHash()
	}
	b, _ = bundleOf(t, l, "2026-12", now)
	r := verifyBytes(t, b)
	if r.OK || !hasProblem(r, "asrun", rec.AsRun.LastSeq, "differs from the one sealed for 2026-12") {
		t.Fatalf("a log rewritten after its seal: %s", problemsOf(r))
	}
	// A seal record altered in the manifest is named.
	u := unpack(t, b)
	mm := u.manifest(t)
	mm.Seals[0].Detail = bytes.Replace(mm.Seals[0].Detail, []byte(rec.AsRun.LastHash.String()), []byte(l.asrun[rec.AsRun.LastSeq-1].Hash.String()), 1)
	u.setManifest(t, mm)
	r = verifyBytes(t, u.pack(t))
	if !hasProblem(r, "oplog", sealOp.Seq, "seal record of 2026-12 in the manifest was altered") {
		t.Fatalf("an altered seal: %s", problemsOf(r))
	}
}

func resign(t *testing.T, body []byte, key ed25519.PrivateKey) []byte {
	var ev broadcast.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	p, err := broadcast.SignEvent(ev, key)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLinesLongerThanTheBuffer(t *testing.T) {
	long := strings.Repeat("x", 100)
	huge := strings.Repeat("y", maxLine+1)
	in := "a\n" + long + "\n\n" + huge + "\nb"
	var got []string
	var tooLong []int
	err := lines(bufio.NewReaderSize(strings.NewReader(in), 16), func(n int, line []byte) {
		got = append(got, fmt.Sprintf("%d:%d", n, len(line)))
	}, func(n int) { tooLong = append(tooLong, n) })
	if err != nil || strings.Join(got, " ") != "1:1 2:100 5:1" || len(tooLong) != 1 || tooLong[0] != 4 {
		t.Fatalf("lines %v, too long %v, err %v", got, tooLong, err)
	}
}
