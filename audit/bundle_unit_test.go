package audit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

const unitAudioSHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// twoDistricts is December 2026 at two stations, 14755 of district 380 and
// 14780 of district 381, one device each, four airings each: 14755 airs
// all four, 14780 two. The logs chain content hashes from entry 1.
type twoDistricts struct {
	l    *memLog
	plan *Plan
	figs []SealedFigure
	seal broadcast.OpEntry
}

func (l *memLog) appendOp(o broadcast.OpEntry) broadcast.OpEntry {
	o.Seq = uint64(len(l.ops)) + 1
	o.At = o.At.UTC()
	if n := len(l.ops); n > 0 {
		o.PrevHash = l.ops[n-1].Hash
	}
	o.Hash = o.ChainHashIn(l.forms)
	l.ops = append(l.ops, o)
	return o
}

// played appends a finished event of device for airing a, received at at.
func (l *memLog) played(t testing.TB, device string, a PlanAiring, at time.Time) broadcast.AsRunEntry {
	l.dseq[device]++
	ev := broadcast.Event{V: 1, ID: broadcast.NewID(at), Device: device, Seq: l.dseq[device], Airing: a.ID, Rev: 1,
		Event: broadcast.EventFinished, At: a.Start.Add(15 * time.Minute), StartedAt: a.Start, PlayedMS: a.Audio.DurationMS,
		SHA256: a.Audio.SHA256, ClockSynced: true}
	p, err := broadcast.SignEvent(ev, l.keys[device])
	if err != nil {
		t.Fatal(err)
	}
	e := broadcast.AsRunEntry{Seq: uint64(len(l.asrun)) + 1, ReceivedAt: at.UTC(), Device: device, Station: l.devices[device].Station,
		Airing: a.ID, DeviceSeq: l.dseq[device], Event: broadcast.EventFinished, Payload: p}
	if n := len(l.asrun); n > 0 {
		e.PrevHash = l.asrun[n-1].Hash
	}
	e.Hash = e.ChainHashIn(l.forms)
	l.asrun = append(l.asrun, e)
	return e
}

func newTwoDistricts(t testing.TB, forms broadcast.HashForms) *twoDistricts {
	l := newMemLog(t, "14755-01", "14780-01")
	l.forms = forms
	plan := &Plan{Months: []broadcast.Month{"2026-12"}, Policy: broadcast.DefaultPolicy(), Stations: []PlanStation{
		{ID: "14755", Name: "Phường Hàm Rồng", Unit: "14755", Devices: 1},
		{ID: "14780", Name: "Xã Đông Hưng", Unit: "14780", Devices: 1},
	}}
	for _, st := range []string{"14755", "14780"} {
		for i := range 4 {
			start := time.Date(2026, 12, 2+7*i, 6, 0, 0, 0, ict)
			plan.Airings = append(plan.Airings, PlanAiring{ID: fmt.Sprintf("A%s-%d", st, i), Station: st, Month: "2026-12",
				Kind: broadcast.KindReplay, Start: start, NotAfter: start.Add(time.Hour), Planned: broadcast.StatusPlanned,
				Audio: broadcast.Audio{SHA256: unitAudioSHA, DurationMS: 900_000}})
		}
	}
	l.appendOp(broadcast.OpEntry{At: time.Date(2026, 12, 1, 8, 0, 0, 0, ict), Actor: "01T Lan", Action: "programme.approve", Subject: "P380", Unit: "38/380"})
	for i := range 4 {
		l.played(t, "14755-01", plan.Airings[i], plan.Airings[i].Start.Add(20*time.Minute))
		if i < 2 {
			l.played(t, "14780-01", plan.Airings[4+i], plan.Airings[4+i].Start.Add(25*time.Minute))
		}
	}
	l.appendOp(broadcast.OpEntry{At: time.Date(2026, 12, 20, 8, 0, 0, 0, ict), Actor: "01T Hoa", Action: "airing.cancel", Subject: "A14780-3",
		Unit: "38/381/14780", Detail: []byte(`{"station":"14780","device":"14780-01"}`)})
	d := &twoDistricts{l: l, plan: plan}
	rec, figs, err := SealWithFigures(context.Background(), l, "2026-12", ict, time.Date(2027, 1, 10, 0, 0, 0, 0, ict), plan, []byte("the daemon's figures key"))
	if err != nil {
		t.Fatal(err)
	}
	op, err := SealOp(rec, "01T Sở", time.Date(2027, 1, 10, 0, 0, 0, 0, ict))
	if err != nil {
		t.Fatal(err)
	}
	d.seal, d.figs = l.appendOp(op), figs
	return d
}

// bundle of district 380 (withhold) or the whole tree.
func (d *twoDistricts) bundle(t testing.TB, unit bool) []byte {
	t.Helper()
	p, _ := broadcast.ParsePeriod("2026-12")
	spec := BundleSpec{Period: p, Location: ict, Now: time.Date(2027, 1, 11, 0, 0, 0, 0, ict), TempDir: t.TempDir(),
		Sealed: func(m broadcast.Month) ([]SealedFigure, error) { return d.figs, nil }}
	plan := *d.plan
	if unit {
		spec.Unit, spec.UnitPath, spec.Stations, spec.Withhold = "380", "38/380", []string{"14755"}, true
		plan.Stations, plan.Airings = plan.Stations[:1], plan.Airings[:4]
	}
	spec.Plan = &plan
	var buf bytes.Buffer
	if _, err := WriteBundle(context.Background(), &buf, d.l, spec); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func checkBytes(t *testing.T, b []byte) BundleCheck {
	t.Helper()
	c, err := CheckBundleFigures(bytes.NewReader(b), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// everything is a bundle's files, unzipped, one after the other.
func everything(t *testing.T, b []byte) string {
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	tr := tar.NewReader(gz)
	for {
		if _, err := tr.Next(); err == io.EOF {
			return all.String()
		} else if err != nil {
			t.Fatal(err)
		}
		io.Copy(&all, tr)
	}
}

// A bundle of district 380 verifies offline, chain and all: 380's entries in
// full, with their signatures checked; 381's entries and operations as
// their content hashes, with nothing of their payload, device or station.
// Its per-station table is recomputed from the bundle and matches the
// seal, whose other leaves are salted hashes.
func TestUnitBundle(t *testing.T) {
	d := newTwoDistricts(t, broadcast.HashForms{AsRunFrom: 1, OplogFrom: 1})
	b := d.bundle(t, true)
	c := checkBytes(t, b)
	if !c.Result.OK || c.Result.Entries != 6 || c.Result.OpEntries != 2 {
		t.Fatalf("district 380's bundle: %+v\n%s", c.Result, problemsOf(c.Result))
	}
	if m := c.Manifest; !m.Withheld || m.WithheldAsRun != 2 || m.WithheldOplog != 1 || m.Unit != "380" {
		t.Fatalf("manifest: withheld %v, %d as-run, %d ops, unit %q", m.Withheld, m.WithheldAsRun, m.WithheldOplog, m.Unit)
	}
	if len(c.Figures) != 1 || c.Figures[0].Station != "14755" || c.Figures[0].Aired != 4 || c.Figures[0].Status != Compliant || !c.Figures[0].Match {
		t.Fatalf("per-station table: %+v", c.Figures)
	}
	if len(c.Sealed) != 1 || len(c.Unsealed) != 0 || !c.Over || !c.Complete {
		t.Fatalf("sealed %v unsealed %v over %v complete %v", c.Sealed, c.Unsealed, c.Over, c.Complete)
	}
	all := everything(t, b)
	for _, secret := range []string{"14780", "38/381", "Đông Hưng", base64.StdEncoding.EncodeToString(d.l.asrun[1].Payload)} {
		if strings.Contains(all, secret) {
			t.Errorf("district 380's bundle holds %.40q of district 381", secret)
		}
	}
	if !strings.Contains(all, base64.StdEncoding.EncodeToString(d.l.asrun[0].Payload)) {
		t.Fatal("district 380's bundle lacks its own payload")
	}

	// The whole tree's bundle holds everything, and 381's figures too.
	whole := checkBytes(t, d.bundle(t, false))
	if !whole.Result.OK || len(whole.Figures) != 2 || whole.Figures[1].Station != "14780" || whole.Figures[1].Aired != 2 || !whole.Figures[1].Match {
		t.Fatalf("whole tree's bundle: %+v %+v", whole.Result, whole.Figures)
	}
	if !strings.Contains(everything(t, d.bundle(t, false)), "14780-01") {
		t.Fatal("the whole tree's bundle lacks district 381's device")
	}
}

// A byte changed in one of a unit bundle's entries — its own or a withheld
// one — is named, by log and entry.
func TestUnitBundleTamper(t *testing.T) {
	d := newTwoDistricts(t, broadcast.HashForms{AsRunFrom: 1, OplogFrom: 1})
	b := d.bundle(t, true)
	for _, tc := range []struct {
		name  string
		file  string
		entry uint64
		edit  func(line []byte) []byte
	}{
		{"own payload", FileAsRun, 1, func(l []byte) []byte {
			var e broadcast.AsRunEntry
			json.Unmarshal(l, &e)
			e.Payload[40] ^= 1
			out, _ := json.Marshal(e)
			return out
		}},
		{"withheld content hash", FileAsRun, 2, func(l []byte) []byte {
			var w Withheld
			json.Unmarshal(l, &w)
			w.ContentHash[0] ^= 1
			out, _ := json.Marshal(w)
			return out
		}},
		{"withheld operation", FileOplog, 2, func(l []byte) []byte {
			var w Withheld
			json.Unmarshal(l, &w)
			w.At = w.At.Add(time.Second)
			out, _ := json.Marshal(w)
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := unpack(t, b)
			lines := bytes.Split(bytes.TrimSpace(u.files[tc.file]), []byte("\n"))
			lines[tc.entry-1] = tc.edit(lines[tc.entry-1])
			u.files[tc.file] = append(bytes.Join(lines, []byte("\n")), '\n')
			u.fixSum(t, tc.file)
			log := "asrun"
			if tc.file == FileOplog {
				log = "oplog"
			}
			r := verifyBytes(t, u.pack(t))
			if r.OK || !hasProblem(r, log, tc.entry, "altered") {
				t.Fatalf("want %s entry %d named as altered:\n%s", log, tc.entry, problemsOf(r))
			}
		})
	}
}

// The per-station table is recomputed from the bundle alone: a plan
// changed in the bundle names the station whose sealed figure it no longer
// gives, and a sealed figure changed is named as changed.
func TestBundleFiguresAgainstTheSeal(t *testing.T) {
	d := newTwoDistricts(t, broadcast.HashForms{AsRunFrom: 1, OplogFrom: 1})
	b := d.bundle(t, true)

	u := unpack(t, b)
	var plan Plan
	json.Unmarshal(u.files[FileRequired], &plan)
	plan.Airings[2].Start = plan.Airings[2].Start.Add(time.Hour) // the play is now off schedule
	u.files[FileRequired], _ = json.Marshal(plan)
	u.fixSum(t, FileRequired)
	c := checkBytes(t, u.pack(t))
	if c.Result.OK || !hasProblem(c.Result, "figures", 0, "station 14755, 2026-12: the bundle's evidence gives aired 3 of 4") {
		t.Fatalf("a changed plan:\n%s", problemsOf(c.Result))
	}
	if len(c.Figures) != 1 || c.Figures[0].Match || c.Figures[0].Sealed == nil || c.Figures[0].Sealed.Aired != 4 {
		t.Fatalf("a changed plan: %+v", c.Figures)
	}

	u = unpack(t, b)
	json.Unmarshal(u.files[FileRequired], &plan)
	plan.Sealed[0].Figures[0].Aired = 3
	u.files[FileRequired], _ = json.Marshal(plan)
	u.fixSum(t, FileRequired)
	c = checkBytes(t, u.pack(t))
	if c.Result.OK || !hasProblem(c.Result, "figures", 0, "the sealed figure of station 14755 for 2026-12 is not the one its seal") {
		t.Fatalf("a changed sealed figure:\n%s", problemsOf(c.Result))
	}
}

// A period whose other units' entries are chained in the first form cannot
// be bundled for a unit: they cannot be left out. The whole tree's bundle
// of it still verifies across the switch-over.
func TestUnitBundleBeforeTheSwitchOver(t *testing.T) {
	d := newTwoDistricts(t, broadcast.HashForms{AsRunFrom: 4, OplogFrom: 2})
	p, _ := broadcast.ParsePeriod("2026-12")
	_, err := WriteBundle(context.Background(), io.Discard, d.l, BundleSpec{Period: p, Location: ict, Now: time.Date(2027, 1, 11, 0, 0, 0, 0, ict),
		TempDir: t.TempDir(), Unit: "380", UnitPath: "38/380", Stations: []string{"14755"}, Withhold: true})
	if broadcast.ErrorCode(err) != broadcast.EConflict || !strings.Contains(err.Error(), "as-run entry 2") {
		t.Fatalf("unit bundle over first-form entries: %v", err)
	}
	if c := checkBytes(t, d.bundle(t, false)); !c.Result.OK || c.Result.Entries != 6 {
		t.Fatalf("whole tree across the switch-over:\n%s", problemsOf(c.Result))
	}
}

// The figures follow the daemon's rules on what the hash covers: a play
// claimed later than its receipt counts for nothing, whatever the entry's
// unhashed mark says, and so does a play started after its airing was
// cancelled; one started before the cancellation counts.
func TestFiguresJudgeEventsAsTheDaemonDoes(t *testing.T) {
	l := newMemLog(t, "14755-01")
	l.forms = broadcast.HashForms{AsRunFrom: 1, OplogFrom: 1}
	plan := &Plan{Months: []broadcast.Month{"2026-12"}, Policy: broadcast.DefaultPolicy(), Stations: []PlanStation{{ID: "14755", Devices: 1}}}
	for i := range 4 {
		start := time.Date(2026, 12, 2+7*i, 6, 0, 0, 0, ict)
		plan.Airings = append(plan.Airings, PlanAiring{ID: fmt.Sprintf("A%d", i), Station: "14755", Month: "2026-12", Kind: broadcast.KindReplay,
			Start: start, NotAfter: start.Add(time.Hour), Planned: broadcast.StatusPlanned, Audio: broadcast.Audio{SHA256: unitAudioSHA, DurationMS: 900_000}})
	}
	plan.Airings[2].Planned, plan.Airings[2].CancelledAt = broadcast.StatusCancelled, plan.Airings[2].Start.Add(-time.Hour)
	plan.Airings[3].Planned, plan.Airings[3].CancelledAt = broadcast.StatusCancelled, plan.Airings[3].Start.Add(time.Hour)
	l.played(t, "14755-01", plan.Airings[0], plan.Airings[0].Start.Add(20*time.Minute)) // counts
	l.played(t, "14755-01", plan.Airings[1], plan.Airings[1].Start.Add(-24*time.Hour))  // a play a day ahead of its receipt
	l.played(t, "14755-01", plan.Airings[2], plan.Airings[2].Start.Add(20*time.Minute)) // after the cancellation
	l.played(t, "14755-01", plan.Airings[3], plan.Airings[3].Start.Add(20*time.Minute)) // before it: counts
	_, figs, err := SealWithFigures(context.Background(), l, "2026-12", ict, time.Date(2027, 1, 10, 0, 0, 0, 0, ict), plan, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if len(figs) != 1 || figs[0].Aired != 2 {
		t.Fatalf("figures: %+v, want 2 aired (the future play and the play after the cancellation count for nothing)", figs)
	}
}
