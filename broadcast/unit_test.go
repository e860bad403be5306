package broadcast

import (
	"os"
	"strings"
	"testing"
)

func TestParseUnitsCSVThanhHoa(t *testing.T) {
	f, err := os.Open("../configs/data/thanh-hoa-units-2025-03.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	units, stations, err := ParseUnitsCSV(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(stations) != 549 {
		t.Errorf("stations = %d, want Thanh Hoa's 549 communes", len(stations))
	}
	levels := map[Level]int{}
	for _, u := range units {
		levels[u.Level]++
	}
	if levels[LevelProvince] != 1 || levels[LevelDistrict] != 26 || levels[LevelCommune] != 549 {
		t.Errorf("levels = %v, want 1 province, 26 districts, 549 communes", levels)
	}
	var hamRong Station
	for _, s := range stations {
		if s.ID == "14755" {
			hamRong = s
		}
	}
	if hamRong.Path != "38/380/14755" || hamRong.Name != "Phường Hàm Rồng" {
		t.Errorf("14755 = %+v, want path 38/380/14755 named Phường Hàm Rồng", hamRong)
	}
	if !Below(hamRong.Path, "38/380") || Below(hamRong.Path, "38/38") || !Below(hamRong.Path, "38") {
		t.Error("Below must compare whole path segments")
	}
}

// The lists of today: two levels, communes straight under their province.
func TestParseUnitsCSV2025July(t *testing.T) {
	for _, tc := range []struct {
		file                string
		provinces, communes int
	}{
		{"../configs/data/thanh-hoa-units-2025-07.csv", 1, 166},
		{"../configs/data/vietnam-units-2025-07.csv", 34, 3321},
	} {
		f, err := os.Open(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		units, stations, err := ParseUnitsCSV(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		levels := map[Level]int{}
		for _, u := range units {
			levels[u.Level]++
		}
		if len(stations) != tc.communes || levels[LevelProvince] != tc.provinces || levels[LevelDistrict] != 0 || levels[LevelCommune] != tc.communes {
			t.Errorf("%s: %d stations, levels %v; want %d provinces and %d communes, no district", tc.file, len(stations), levels, tc.provinces, tc.communes)
		}
		for _, st := range stations {
			if strings.Count(st.Path, "/") != 1 {
				t.Fatalf("%s: station %s at %s, not under its province", tc.file, st.ID, st.Path)
			}
		}
	}
}

func TestParseUnitsCSVTwoLevels(t *testing.T) {
	csv := "province_code,province_name,district_code,district_name,district_type,commune_code,commune_name,commune_type\n" +
		"38,Tỉnh Thanh Hóa,,,,14755,Phường Hạc Thành,Phường\n"
	units, stations, err := ParseUnitsCSV(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	if len(units) != 2 || stations[0].Path != "38/14755" || units[1].Parent != "38" {
		t.Errorf("units %+v stations %+v: want the commune directly under its province", units, stations)
	}
}

func TestParseUnitsCSVErrors(t *testing.T) {
	header := "province_code,province_name,district_code,district_name,district_type,commune_code,commune_name,commune_type\n"
	for name, tc := range map[string]struct{ in, want string }{
		"empty":          {"", "empty file"},
		"bad header":     {"a,b,c,d,e,f,g,h\n", "line 1: column 1"},
		"no communes":    {header, "no communes"},
		"missing code":   {header + "38,Tỉnh Thanh Hóa,380,TP,Thành phố,,Phường X,Phường\n", "line 2: commune_code is empty"},
		"letters":        {header + "38,Tỉnh Thanh Hóa,380,TP,Thành phố,14x55,Phường X,Phường\n", "line 2: commune_code \"14x55\""},
		"duplicate":      {header + "38,T,380,TP,TP,1,A,X\n38,T,380,TP,TP,1,A,X\n", "line 3: commune_code 1 appears twice"},
		"renamed parent": {header + "38,T,380,TP,TP,1,A,X\n38,T,380,Other,TP,2,B,X\n", "line 3: district_code 380"},
		"short row":      {header + "38,T,380\n", "wrong number of fields"},
		"half district":  {header + "38,T,380,,TP,1,A,X\n", "both be set"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := ParseUnitsCSV(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func FuzzParseUnitsCSV(f *testing.F) {
	f.Add("province_code,province_name,district_code,district_name,district_type,commune_code,commune_name,commune_type\n38,T,380,TP,TP,1,A,X\n")
	f.Add("province_code,province_name,district_code,district_name,district_type,commune_code,commune_name,commune_type\n38,T,,,,1,A,X\n")
	f.Fuzz(func(t *testing.T, in string) {
		units, stations, err := ParseUnitsCSV(strings.NewReader(in))
		if err != nil {
			return
		}
		byCode := map[string]Unit{}
		for _, u := range units {
			byCode[u.Code] = u
		}
		for _, s := range stations {
			u, ok := byCode[s.Unit]
			if !ok || u.Path != s.Path || !strings.HasSuffix(s.Path, s.ID) {
				t.Fatalf("station %+v has no matching unit", s)
			}
			if u.Parent != "" && !Below(u.Path, byCode[u.Parent].Path) {
				t.Fatalf("unit %+v is not below its parent", u)
			}
		}
	})
}
