package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/configs"
	"github.com/loaxa/loaxa/storage"
)

// nationalYear fills dir with the year 2026 of the whole country, as the
// store holds it once the year is over: 10,047 stations with two devices
// each, and every station-month's premiere and three replays with their
// evidence (four as-run references a device). One airing in twenty was
// missed, its devices out of power, and was made up.
func nationalYear(tb testing.TB, dir string) (stations, airings int) {
	tb.Helper()
	f, err := os.Open("../../../configs/data/vietnam-units-2025-03.csv")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	units, sts, err := broadcast.ParseUnitsCSV(f)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	ict := time.FixedZone("ICT", 7*3600)
	s, err := storage.Open(dir, storage.Options{Policy: broadcast.DefaultPolicy(), Now: func() time.Time { return time.Date(2027, 1, 5, 9, 0, 0, 0, ict) }})
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ImportUnits(ctx, units, sts, nil); err != nil {
		tb.Fatal(err)
	}
	var devs []broadcast.Device
	for _, st := range sts {
		for i := 1; i <= 2; i++ {
			devs = append(devs, broadcast.Device{ID: fmt.Sprintf("%s-%02d", st.ID, i), Station: st.ID})
		}
	}
	if err := s.AddDevices(ctx, devs, nil); err != nil {
		tb.Fatal(err)
	}
	entry := uint64(0)
	var batch []*broadcast.Airing
	flush := func() {
		if err := s.PutAirings(ctx, batch, nil); err != nil {
			tb.Fatal(err)
		}
		airings += len(batch)
		batch = batch[:0]
	}
	kinds := []broadcast.Kind{broadcast.KindPremiere, broadcast.KindReplay, broadcast.KindReplay, broadcast.KindReplay}
	for m := 1; m <= 12; m++ {
		month := broadcast.Month(fmt.Sprintf("2026-%02d", m))
		for n, st := range sts {
			for i, kind := range kinds {
				start := time.Date(2026, time.Month(m), 1+7*i, 6, 0, 0, 0, ict)
				a := &broadcast.Airing{ID: fmt.Sprintf("a%s-%02d-%d", st.ID, m, i), Programme: fmt.Sprintf("p%02d", m), Station: st.ID, Month: month,
					Kind: kind, Title: "Chuyển đổi số", Start: start, NotAfter: start.Add(30 * time.Minute), Status: broadcast.StatusAired,
					Audio:   broadcast.Audio{SHA256: strings.Repeat("ab", 32), Size: 1 << 20, Format: "mp3", DurationMS: 900_000},
					Devices: map[string]*broadcast.DeviceAiring{}}
				missed := (n+m+i)%20 == 0
				if missed {
					a.Status, a.Reason = broadcast.StatusMissed, broadcast.ReasonNoFinish
				}
				for _, d := range devs[2*n : 2*n+2] {
					da := &broadcast.DeviceAiring{Status: broadcast.StatusAired, StartedAt: start}
					if missed {
						da.Status, da.Reason = broadcast.StatusFailed, "power"
					}
					for _, ev := range []broadcast.EventType{broadcast.EventReceived, broadcast.EventReady, broadcast.EventStarted, broadcast.EventFinished} {
						entry++
						da.Events = append(da.Events, broadcast.EventRef{Entry: entry, Event: ev, At: start})
					}
					a.Devices[d.ID] = da
				}
				batch = append(batch, a)
				if missed { // its make-up, a week later
					mk := *a
					mk.ID, mk.Kind, mk.Replaces, mk.Start, mk.NotAfter = a.ID+"-mk", broadcast.KindMakeup, a.ID, start.Add(24*time.Hour), start.Add(24*time.Hour+30*time.Minute)
					mk.Status, mk.Reason, mk.Devices = broadcast.StatusAired, "", map[string]*broadcast.DeviceAiring{
						devs[2*n].ID: {Status: broadcast.StatusAired, StartedAt: mk.Start, Events: []broadcast.EventRef{{Entry: entry + 1, Event: broadcast.EventFinished, At: mk.Start}}}}
					entry++
					batch = append(batch, &mk)
				}
			}
			if len(batch) >= 10000 {
				flush()
			}
		}
	}
	flush()
	return len(sts), airings
}

// BenchmarkComplianceNationalYear asks the real daemon, over HTTP, for the
// report an auditor of the whole country files at the end of the year:
// 2026 for 10,047 stations, 120,564 station-months of 482,256 airings and
// their 24,113 make-ups. Storage keeps each airing's summary beside its
// station-month index, so the report reads neither the as-run log nor the
// airing records.
//
//	go test -run='^$' -bench=ComplianceNationalYear -benchtime=5x ./cmd/loaxad/daemon/
func BenchmarkComplianceNationalYear(b *testing.B) {
	cfg := configs.Default()
	cfg.DataDir = b.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.PublicURL = ""
	cfg.MQTT.Embedded.Listen = "127.0.0.1:0"
	stations, airings := nationalYear(b, cfg.DataDir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := Start(ctx, Options{Config: cfg, Logger: testLogger(nil), Clock: newShiftedClock(time.Date(2027, 1, 5, 9, 0, 0, 0, time.FixedZone("ICT", 7*3600)))})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	admin, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d stations, %d airings", stations, airings)
	for _, format := range []string{"csv", "json", "xlsx"} {
		b.Run(format, func(b *testing.B) {
			var size int64
			for b.Loop() {
				req, _ := http.NewRequest("GET", "http://"+d.HTTPAddr()+"/api/v1/compliance?period=2026&format="+format, nil)
				req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				if format == "csv" {
					size = checkNationalCSV(b, resp.Body, stations*12)
				} else if size, err = io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.ReportMetric(float64(size)/(1<<20), "MiB/report")
		})
	}
}

// checkNationalCSV reads the CSV report to its end and checks that it has a
// row for each station and month.
func checkNationalCSV(b *testing.B, r io.Reader, want int) int64 {
	var n, size int64
	rows := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		size += int64(len(sc.Bytes())) + 1
		if strings.Contains(sc.Text(), ",2026-") {
			rows++
		}
		n++
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	if rows != want {
		b.Fatalf("%d station-month rows in %d lines, want %d", rows, n, want)
	}
	return size
}
