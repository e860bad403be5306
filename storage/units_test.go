package storage

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/loaxa/loaxa/broadcast"
)

func unitsCSV(t testing.TB) string {
	for _, p := range []string{"../configs/data/vietnam-units-2025-03.csv", "/work/main/configs/data/vietnam-units-2025-03.csv", "/work/shared/data/vietnam-units-2025-03.csv"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("vietnam-units-2025-03.csv not found")
	return ""
}

func loadUnits(t testing.TB) ([]broadcast.Unit, []broadcast.Station) {
	f, err := os.Open(unitsCSV(t))
	must(t, err)
	defer f.Close()
	units, stations, err := broadcast.ParseUnitsCSV(f)
	must(t, err)
	return units, stations
}

func TestImportVietnam(t *testing.T) {
	units, stations := loadUnits(t)
	s := mustOpen(t)
	ctx := context.Background()

	start := time.Now()
	op := &broadcast.OpEntry{Actor: "system", Action: "units.import", Subject: "vietnam-units-2025-03.csv"}
	res, err := s.ImportUnits(ctx, units, stations, op)
	must(t, err)
	t.Logf("imported %d units, %d stations in %s", res.UnitsCreated, res.StationsCreated, time.Since(start))
	if res.StationsCreated != len(stations) || res.StationsTotal != len(stations) || res.UnitsCreated != len(units) || res.UnitsTotal != len(units) {
		t.Fatalf("first import: %+v, want %d units and %d stations", res, len(units), len(stations))
	}
	if len(stations) != 10047 {
		t.Errorf("the file has %d communes, the country 10,047", len(stations))
	}
	if op.Seq != 1 || op.Hash.IsZero() {
		t.Errorf("op not logged: %+v", op)
	}

	// Idempotent: nothing created, nothing logged.
	op2 := &broadcast.OpEntry{Actor: "system", Action: "units.import"}
	res, err = s.ImportUnits(ctx, units, stations, op2)
	must(t, err)
	if res.UnitsCreated+res.StationsCreated != 0 || res.StationsTotal != len(stations) || res.UnitsTotal != len(units) {
		t.Errorf("second import: %+v", res)
	}
	if seq, _, _ := s.OpsHead(); seq != 1 {
		t.Errorf("a no-op import was logged (ops head %d)", seq)
	}

	// A district's stations are its communes.
	var district broadcast.Unit
	want := map[string]bool{}
	for _, u := range units {
		if u.Level == broadcast.LevelDistrict && strings.HasPrefix(u.Path, "38/") {
			district = u
			break
		}
	}
	for _, st := range stations {
		if broadcast.Below(st.Path, district.Path) {
			want[st.ID] = true
		}
	}
	got, err := s.Stations(district.Path)
	must(t, err)
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("Stations(%s) = %d stations, want %d", district.Path, len(got), len(want))
	}
	for i, st := range got {
		if !want[st.ID] {
			t.Errorf("station %s is not in district %s", st.ID, district)
		}
		if i > 0 && got[i-1].Path >= st.Path {
			t.Errorf("not sorted by path: %s before %s", got[i-1].Path, st.Path)
		}
	}
	kids, err := s.Units(district.Code)
	must(t, err)
	if len(kids) != len(want) {
		t.Errorf("Units(%s) = %d, want %d", district.Code, len(kids), len(want))
	}
	all, err := s.Stations("")
	must(t, err)
	if len(all) != len(stations) {
		t.Errorf("Stations(\"\") = %d", len(all))
	}
	provinces, err := s.Units("")
	must(t, err)
	if len(provinces) != 63 {
		t.Errorf("Units(\"\") = %d provinces, want 63", len(provinces))
	}
}

func TestUnitsAndStations(t *testing.T) {
	s := mustOpen(t)
	seedStations(t, s, 12)

	u, err := s.Unit("380")
	must(t, err)
	if u.Name != "TP Thanh Hóa" || u.Path != "38/380" {
		t.Errorf("Unit(380) = %+v", u)
	}
	if _, err := s.Unit("999"); !broadcast.IsNotFound(err) {
		t.Errorf("Unit(999): %v", err)
	}
	if _, err := s.Station("999"); !broadcast.IsNotFound(err) {
		t.Errorf("Station(999): %v", err)
	}
	st, err := s.Station("38005")
	must(t, err)
	if st.Path != "38/380/38005" {
		t.Errorf("Station = %+v", st)
	}
	kids, err := s.Units("38")
	must(t, err)
	if len(kids) != 2 || kids[0].Code != "380" || kids[1].Code != "381" {
		t.Errorf("Units(38) = %v", kids)
	}
	// 38/380 must not pick up a sibling whose code merely starts the same.
	for path, n := range map[string]int{"38/380": 12, "38/381": 1, "38": 13, "": 13, "38/38": 0, "38/380/38005": 1} {
		got, err := s.Stations(path)
		must(t, err)
		if len(got) != n {
			t.Errorf("Stations(%q) = %d, want %d", path, len(got), n)
		}
	}

	// A commune moves under its province (the 2025 reform): updated, and
	// re-indexed.
	moved := broadcast.Station{ID: "38005", Unit: "38005", Name: "Xã 38005", Path: "38/38005", Timezone: broadcast.DefaultTimezone}
	res, err := s.ImportUnits(context.Background(), nil, []broadcast.Station{moved}, nil)
	must(t, err)
	if res.StationsCreated != 0 || res.StationsTotal != 13 {
		t.Errorf("move: %+v", res)
	}
	if st, _ := s.Station("38005"); st.Path != "38/38005" {
		t.Errorf("moved station: %+v", st)
	}
	got, _ := s.Stations("38/380")
	if len(got) != 11 {
		t.Errorf("after the move, 38/380 has %d stations", len(got))
	}
	if _, err := s.ImportUnits(context.Background(), []broadcast.Unit{{Code: "", Path: "x"}}, nil, nil); broadcast.ErrorCode(err) != broadcast.EInvalid {
		t.Errorf("unit without code: %v", err)
	}
}

// TestImportUnitsWithin: a scoped import creates and changes only what lies
// below its unit, before and after, refusing the whole file otherwise;
// updates are counted, and names stored in NFC.
func TestImportUnitsWithin(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	prov := broadcast.Unit{Code: "38", Name: "Tỉnh Thanh Hóa", Level: broadcast.LevelProvince, Path: "38"}
	d380 := broadcast.Unit{Code: "380", Name: "Thành phố Thanh Hóa", Level: broadcast.LevelDistrict, Parent: "38", Path: "38/380"}
	d381 := broadcast.Unit{Code: "381", Name: "Thị xã Bỉm Sơn", Level: broadcast.LevelDistrict, Parent: "38", Path: "38/381"}
	commune := func(code, name, parent string) (broadcast.Unit, broadcast.Station) {
		path := "38/" + parent + "/" + code
		return broadcast.Unit{Code: code, Name: name, Level: broadcast.LevelCommune, Parent: parent, Path: path},
			broadcast.Station{ID: code, Unit: code, Name: name, Path: path, Timezone: broadcast.DefaultTimezone}
	}
	c1, s1 := commune("14755", "Phường Hàm Rồng", "380")
	c2, s2 := commune("14809", "Phường Bắc Sơn", "381")
	_, err := s.ImportUnits(ctx, []broadcast.Unit{prov, d380, d381, c1, c2}, []broadcast.Station{s1, s2}, nil)
	must(t, err)

	moved, movedSt := commune("14809", "Phường Bắc Sơn", "380")
	if _, err := s.ImportUnitsWithin(ctx, []broadcast.Unit{prov, d380, moved}, []broadcast.Station{movedSt}, "38/380", nil); broadcast.ErrorCode(err) != broadcast.EForbidden {
		t.Fatalf("moving 14809 into 380: %v, want forbidden", err)
	}
	if u, _ := s.Unit("14809"); u.Parent != "381" {
		t.Fatalf("14809 moved: %+v", u)
	}
	renamed, renamedSt := commune("14755", "Phường Hàm Rồng Mới", "380")
	nfd := renamed
	nfd.Name = norm.NFD.String(renamed.Name)
	if nfd.Name == renamed.Name {
		t.Fatal("the NFD name is the NFC one")
	}
	res, err := s.ImportUnitsWithin(ctx, []broadcast.Unit{prov, d380, nfd}, []broadcast.Station{renamedSt}, "38/380", nil)
	must(t, err)
	if res.UnitsUpdated != 1 || res.StationsUpdated != 1 || res.UnitsCreated != 0 {
		t.Fatalf("a rename inside the scope: %+v", res)
	}
	if u, _ := s.Unit("14755"); u.Name != renamed.Name {
		t.Fatalf("stored name %q, want the NFC %q", u.Name, renamed.Name)
	}
}

// TestTouchTokenNeverRevives: a late write of a token's last use finds it
// revoked and leaves it so.
func TestTouchTokenNeverRevives(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	tok := broadcast.Token{ID: "01TOKEN", Name: "Lan", Role: broadcast.RoleOperator, Hash: broadcast.HashToken("lxa_x"), CreatedAt: at}
	must(t, s.PutToken(ctx, tok, nil))
	must(t, s.TouchToken(ctx, tok.ID, at.Add(time.Minute)))
	got, err := s.Token(tok.ID)
	must(t, err)
	if !got.LastUsed.Equal(at.Add(time.Minute)) {
		t.Fatalf("last used %s", got.LastUsed)
	}
	must(t, s.TouchToken(ctx, tok.ID, at)) // older: no change
	if got, _ := s.Token(tok.ID); !got.LastUsed.Equal(at.Add(time.Minute)) {
		t.Fatalf("an older touch moved last used back to %s", got.LastUsed)
	}
	must(t, s.DeleteToken(ctx, tok.ID, nil))
	must(t, s.TouchToken(ctx, tok.ID, at.Add(2*time.Minute)))
	if _, err := s.TokenByHash(tok.Hash); !broadcast.IsNotFound(err) {
		t.Fatalf("the revoked token is back: %v", err)
	}
}
