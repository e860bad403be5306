package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/broadcast/audio/audiotest"
	"github.com/loaxa/loaxa/storage"
)

// The daemon's clock (and the devices') is moved to the first morning of a
// month, as the daemon's end-to-end tests do, so that every snapshot holds
// the same airings whatever the day the benchmark runs: on the 30th of a
// real month the premieres would not fit.
var benchInstant = time.Date(2026, 12, 1, 5, 0, 0, 0, time.FixedZone("ICT", 7*3600))

// programmesPerProvince is how many approved programmes each province has
// that month. Each plans its premiere in the first week, so a device's
// snapshot (the next 7 days) holds about this many items: ~2 KB, the size
// of a real commune's week.
const programmesPerProvince = 4

// planMargin is the scheduler's default PlanMargin: nothing is planned to
// start sooner than this.
const planMargin = 10 * time.Minute

var programmeTitles = [programmesPerProvince]string{
	"Phổ biến pháp luật: Luật Đất đai năm 2024",
	"Chuyển đổi số tháng 12/2026",
	"Phòng, chống thiên tai mùa mưa bão",
	"Bản tin nông nghiệp và thời tiết tháng 12",
}

// benchClock is real time moved to benchInstant; it is the daemon's
// scheduler.Clock and the devices' clock.
type benchClock struct{ offset time.Duration }

func newBenchClock() benchClock                           { return benchClock{offset: time.Until(benchInstant)} }
func (c benchClock) Now() time.Time                       { return time.Now().Add(c.offset) }
func (benchClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Devices' credentials and keys are derived from a per-run key, so that
// the scenario process (which registers them) and the devices process
// (which uses them) agree without passing 10,000 secrets around.

func deviceSecret(runKey []byte, id string) string {
	return base64.RawURLEncoding.EncodeToString(derive(runKey, "secret", id))
}

func deviceKey(runKey []byte, id string) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(derive(runKey, "key", id))
}

func derive(runKey []byte, what, id string) []byte {
	m := hmac.New(sha256.New, runKey)
	m.Write([]byte(what + "\x00" + id))
	return m.Sum(nil)
}

// deviceID is the device of a commune's station: its first loudspeaker
// cluster, as docs/protocol.md names them.
func deviceID(station string) string { return station + "-01" }

// readCommunes returns the header and the rows of the first n communes of a
// units CSV (the shared data format), in file order: a 2,000-device run is
// the first provinces of the country.
func readCommunes(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("units: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("units %s: %w", path, err)
	}
	col := slices.IndexFunc(header, func(h string) bool { return strings.TrimPrefix(h, "\ufeff") == "commune_code" })
	if col < 0 {
		return nil, fmt.Errorf("units %s: no commune_code column", path)
	}
	var out bytes.Buffer
	w := csv.NewWriter(&out)
	_ = w.Write(header)
	seen := map[string]bool{}
	for len(seen) < n {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("units %s has %d communes, fewer than the %d devices asked for", path, len(seen), n)
		}
		if err != nil {
			return nil, fmt.Errorf("units %s: %w", path, err)
		}
		if code := rec[col]; code != "" && !seen[code] {
			seen[code] = true
			_ = w.Write(rec)
		}
	}
	w.Flush()
	return out.Bytes(), w.Error()
}

// fixture is what a scenario's store holds, as the scenario needs it.
type fixture struct {
	devices []broadcast.Device
	// items are each device's snapshot items (in the order of devices: one
	// per station), read back as the scheduler will put them in its
	// snapshots: the broker round trip runs before the daemon has sent
	// any, and its events must name the same airings as the devices'
	// later ones to be as large.
	items    [][]broadcast.Item
	airings  int
	stations int
}

// prepareStore fills a new data directory as a national deployment looks on
// the first morning of a month: the units and stations of n communes, one
// registered device per station (secret hash and ed25519 public key), and
// each province's approved programmes planned at every station with the
// planner the scheduler uses (broadcast.PlanStation). It writes through the
// store's own API and closes it, so that the daemon then opens it as after
// a restart.
func prepareStore(ctx context.Context, dir, unitsCSV string, n int, runKey []byte, policy broadcast.Policy, now time.Time) (*fixture, error) {
	raw, err := readCommunes(unitsCSV, n)
	if err != nil {
		return nil, err
	}
	units, stations, err := broadcast.ParseUnitsCSV(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("units %s: %w", unitsCSV, err)
	}
	s, err := storage.Open(dir, storage.Options{Policy: policy, Now: func() time.Time { return now }})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if _, err := s.ImportUnits(ctx, units, stations, nil); err != nil {
		return nil, err
	}

	fx := &fixture{stations: len(stations)}
	for _, st := range stations {
		id := deviceID(st.ID)
		fx.devices = append(fx.devices, broadcast.Device{
			ID: id, Station: st.ID, CreatedAt: now,
			SecretHash: broadcast.HashSecret(deviceSecret(runKey, id)),
			PublicKey:  deviceKey(runKey, id).Public().(ed25519.PublicKey),
		})
	}
	if err := s.AddDevices(ctx, fx.devices, nil); err != nil {
		return nil, err
	}

	// One audio file per programme slot; real WAVs, so that the facts in
	// the snapshots (sha256, size, duration) are those of a stored blob.
	var audios [programmesPerProvince]broadcast.Audio
	for k := range audios {
		w := audiotest.Tone(2*time.Second, 16+k) // its own sha256 per programme
		sha, size, err := s.PutBlob(bytes.NewReader(w))
		if err != nil {
			return nil, err
		}
		audios[k] = broadcast.Audio{SHA256: sha, Size: size, Format: "wav", Type: "audio/wav", DurationMS: 2000}
	}
	// The month as the stations see it: 05:00 on the 1st in Vietnam is
	// still the month before in UTC.
	month, err := broadcast.ParseMonth(now.In(benchInstant.Location()).Format("2006-01"))
	if err != nil {
		return nil, err
	}
	programmes := map[string][]broadcast.Programme{} // province code → its programmes
	for _, u := range units {
		if u.Level != broadcast.LevelProvince {
			continue
		}
		for k, title := range programmeTitles {
			p := broadcast.Programme{
				ID: broadcast.NewID(now), Unit: u.Code, UnitPath: u.Path, Month: month,
				Title: title, Audio: audios[k], Status: broadcast.ProgrammeApproved,
				UploadedBy: "loaxa-bench", ApprovedBy: "loaxa-bench", CreatedAt: now, ApprovedAt: now,
			}
			if err := s.CreateProgramme(ctx, p, nil); err != nil {
				return nil, err
			}
			programmes[u.Code] = append(programmes[u.Code], p)
		}
	}

	// Plan as the scheduler's PlanProgramme does, in batches of its size.
	const planBatch = 10000
	var batch []*broadcast.Airing
	horizon := now.Add(policy.Lead)
	for _, st := range stations {
		province, _, _ := strings.Cut(st.Path, "/")
		loc := location(st)
		var planned []*broadcast.Airing
		for _, p := range programmes[province] {
			planned = append(planned, broadcast.PlanStation(broadcast.PlanRequest{
				Programme: p, Station: st, Location: loc, Existing: planned,
				Earliest: now.Add(planMargin), Policy: policy, Now: now,
			})...)
		}
		if !slices.ContainsFunc(planned, func(a *broadcast.Airing) bool { return a.Start.Before(horizon) }) {
			return nil, fmt.Errorf("station %s: no airing in the first week; its snapshot would be empty", st.ID)
		}
		fx.airings += len(planned)
		batch = append(batch, planned...)
		if len(batch) >= planBatch {
			if err := s.PutAirings(ctx, batch, nil); err != nil {
				return nil, err
			}
			batch = batch[:0]
		}
	}
	if err := s.PutAirings(ctx, batch, nil); err != nil {
		return nil, err
	}
	for _, st := range stations {
		items, err := snapshotItems(s, st.ID, now, policy)
		if err != nil {
			return nil, err
		}
		// The scheduler gives the times in the station's zone: "+07:00"
		// rather than "Z", five bytes in each started and finished event.
		loc := location(st)
		for i := range items {
			items[i].Start, items[i].NotAfter = items[i].Start.In(loc), items[i].NotAfter.In(loc)
		}
		fx.items = append(fx.items, items)
	}
	return fx, s.Close()
}

// signEvents signs each device's events 1 to per (ids[i]'s for items[i])
// as the devices process's sign does, on every CPU: ed25519 is slow enough
// that 40,000 signatures in a row would take seconds.
func signEvents(ids []string, items [][]broadcast.Item, runKey []byte, rev uint64, per int, now time.Time) ([][][]byte, error) {
	out := make([][][]byte, len(ids))
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	var next atomic.Int64
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(ids); i = int(next.Add(1)) - 1 {
				key := deviceKey(runKey, ids[i])
				for seq := uint64(1); seq <= uint64(per); seq++ {
					p, err := broadcast.SignEvent(deviceEvent(ids[i], rev, items[i], seq, now), key)
					if err != nil {
						err = fmt.Errorf("device %s seq %d: %w", ids[i], seq, err)
						failed.CompareAndSwap(nil, &err)
						return
					}
					out[i] = append(out[i], p)
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return nil, *err
	}
	return out, nil
}

// snapshotItems are a station's items as the scheduler puts them in its
// devices' snapshots: the airings not cancelled whose not_after is ahead,
// up to the lead time, by start.
func snapshotItems(s *storage.Store, station string, now time.Time, policy broadcast.Policy) ([]broadcast.Item, error) {
	as, err := s.StationAirings(station, now.Add(-policy.StartTolerance-time.Hour), now.Add(policy.Lead))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(as, func(a, b *broadcast.Airing) int { return a.Start.Compare(b.Start) })
	var items []broadcast.Item
	for _, a := range as {
		if a.Status != broadcast.StatusCancelled && a.NotAfter.After(now) {
			items = append(items, broadcast.ItemOf(a, ""))
		}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("station %s has no upcoming airing", station)
	}
	return items, nil
}

// location is a station's time zone, as the scheduler finds it.
func location(st broadcast.Station) *time.Location {
	name := st.Timezone
	if name == "" {
		name = broadcast.DefaultTimezone
	}
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	return time.FixedZone("ICT", 7*3600)
}

var eventCycle = [...]broadcast.EventType{broadcast.EventReceived, broadcast.EventReady, broadcast.EventStarted, broadcast.EventFinished}

// deviceEvent is a device's seq-th event (from 1): the four events of an
// airing of its snapshot (received, ready, started, finished), one airing
// after another, as a broadcast produces them. A finished event carries
// what the daemon judges (start, time played, sha256 of the audio), so that
// the airing is counted as aired.
func deviceEvent(device string, rev uint64, items []broadcast.Item, seq uint64, now time.Time) broadcast.Event {
	it := items[int((seq-1)/4)%len(items)]
	ev := broadcast.Event{
		V: broadcast.ProtocolVersion, Device: device, Seq: seq, Airing: it.Airing, Rev: rev,
		Event: eventCycle[(seq-1)%4], At: now, ClockSynced: true,
	}
	switch ev.Event {
	case broadcast.EventStarted:
		ev.At = it.Start
	case broadcast.EventFinished:
		ev.At = it.Start.Add(time.Duration(it.Audio.DurationMS) * time.Millisecond)
		ev.StartedAt, ev.PlayedMS, ev.SHA256 = it.Start, it.Audio.DurationMS, it.Audio.SHA256
	}
	ev.ID = broadcast.NewID(ev.At)
	return ev
}
