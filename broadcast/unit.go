package broadcast

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Level is a unit's place in the tree. Nothing depends on there being three:
// since 2025-07-01 Vietnam has provinces and communes only.
type Level string

const (
	LevelProvince Level = "province"
	LevelDistrict Level = "district"
	LevelCommune  Level = "commune"
)

// DefaultTimezone is where every station is unless configured otherwise.
const DefaultTimezone = "Asia/Ho_Chi_Minh"

// Unit is an administrative unit with its official code (General Statistics
// Office). Path lists the codes from the root down to and including the unit,
// joined by "/", so that "is X below Y" is a prefix test rather than a walk.
type Unit struct {
	Code   string `json:"code"`
	Name   string `json:"name"`
	Type   string `json:"type,omitempty"` // as published: "Tỉnh", "Huyện", "Xã", "Phường"…
	Level  Level  `json:"level"`
	Parent string `json:"parent,omitempty"`
	Path   string `json:"path"`
}

// Station is a commune's radio. It has the commune's code as its id, and the
// commune's path, so that scoping a station is scoping its unit.
type Station struct {
	ID       string `json:"id"`
	Unit     string `json:"unit"`
	Name     string `json:"name"`
	Path     string `json:"path"`
	Timezone string `json:"timezone"`
}

// Below reports whether a unit or station at path lies at or below the unit
// whose path is ancestor.
func Below(path, ancestor string) bool {
	return path == ancestor || strings.HasPrefix(path, ancestor+"/")
}

// unitColumns is the format of the official lists in configs/data.
var unitColumns = []string{"province_code", "province_name", "district_code", "district_name", "district_type", "commune_code", "commune_name", "commune_type"}

// ParseUnitsCSV reads units in the shared data format and returns the unit
// tree (parents before children) and one station per commune-level unit. An
// empty district puts the commune directly under its province (the two-level
// structure since 2025-07-01). Errors name the line and the column.
func ParseUnitsCSV(r io.Reader) ([]Unit, []Station, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(unitColumns)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, Errorf(EInvalid, "units csv: empty file, expected the header %s", strings.Join(unitColumns, ","))
		}
		return nil, nil, Errorf(EMalformed, "units csv: %v", err)
	}
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // spreadsheets like to add a BOM
	for i, want := range unitColumns {
		if strings.TrimSpace(header[i]) != want {
			return nil, nil, Errorf(EInvalid, "units csv: line 1: column %d is %q, want %q (header: %s)", i+1, header[i], want, strings.Join(unitColumns, ","))
		}
	}
	var (
		units    []Unit
		stations []Station
		seen     = map[string]Unit{}
	)
	// add records a unit once, and refuses a code that reappears with another
	// name or parent: that is a broken file, not an update.
	add := func(line int, col string, u Unit) error {
		if old, ok := seen[u.Code]; ok {
			if old.Name != u.Name || old.Parent != u.Parent || old.Level != u.Level {
				return Errorf(EInvalid, "units csv: line %d: %s %s is %q under %q here but %q under %q earlier", line, col, u.Code, u.Name, u.Parent, old.Name, old.Parent)
			}
			return nil
		}
		seen[u.Code] = u
		units = append(units, u)
		return nil
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// csv.ParseError names the line and column itself.
			return nil, nil, Errorf(EMalformed, "units csv: %v", err)
		}
		line, _ := cr.FieldPos(0) // only valid for a record read without error

		f := make(map[string]string, len(unitColumns))
		for i, c := range unitColumns {
			f[c] = NFC(strings.TrimSpace(rec[i]))
		}
		for _, c := range []string{"province_code", "province_name", "commune_code", "commune_name"} {
			if f[c] == "" {
				return nil, nil, Errorf(EInvalid, "units csv: line %d: %s is empty", line, c)
			}
		}
		for _, c := range []string{"province_code", "district_code", "commune_code"} {
			if f[c] != "" && !digits(f[c]) {
				return nil, nil, Errorf(EInvalid, "units csv: line %d: %s %q is not a numeric code", line, c, f[c])
			}
		}
		if (f["district_code"] == "") != (f["district_name"] == "") {
			return nil, nil, Errorf(EInvalid, "units csv: line %d: district_code and district_name must both be set or both be empty", line)
		}
		prov := Unit{Code: f["province_code"], Name: f["province_name"], Level: LevelProvince, Path: f["province_code"]}
		if err := add(line, "province_code", prov); err != nil {
			return nil, nil, err
		}
		parent := prov
		if f["district_code"] != "" {
			d := Unit{Code: f["district_code"], Name: f["district_name"], Type: f["district_type"], Level: LevelDistrict, Parent: prov.Code, Path: prov.Path + "/" + f["district_code"]}
			if err := add(line, "district_code", d); err != nil {
				return nil, nil, err
			}
			parent = d
		}
		c := Unit{Code: f["commune_code"], Name: f["commune_name"], Type: f["commune_type"], Level: LevelCommune, Parent: parent.Code, Path: parent.Path + "/" + f["commune_code"]}
		if _, dup := seen[c.Code]; dup {
			return nil, nil, Errorf(EInvalid, "units csv: line %d: commune_code %s appears twice", line, c.Code)
		}
		if err := add(line, "commune_code", c); err != nil {
			return nil, nil, err
		}
		stations = append(stations, Station{ID: c.Code, Unit: c.Code, Name: c.Name, Path: c.Path, Timezone: DefaultTimezone})
	}
	if len(stations) == 0 {
		return nil, nil, Errorf(EInvalid, "units csv: no communes after the header")
	}
	return units, stations, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0 && len(s) <= 16
}

// String renders a unit for logs and error messages.
func (u Unit) String() string { return fmt.Sprintf("%s %s", u.Code, u.Name) }
