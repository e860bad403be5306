package storage

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// ImportResult counts what ImportUnits created and what the store holds
// after. It is the domain's type, shared with the API.
type ImportResult = broadcast.ImportResult

// ImportUnits creates the units and stations that do not exist and updates
// those that changed (a renamed commune, a commune moved under its province
// by the 2025 reform), in one transaction: importing the same file twice
// changes nothing. The whole country (10,047 stations) fits in one call.
func (s *Store) ImportUnits(ctx context.Context, units []broadcast.Unit, stations []broadcast.Station, op *broadcast.OpEntry) (ImportResult, error) {
	return s.ImportUnitsWithin(ctx, units, stations, "", op)
}

// ImportUnitsWithin is ImportUnits for a token scoped to the unit at path
// within ("" for the whole tree): every unit or station it creates or
// changes must lie below within, before and after the change, so that a
// district's administrator can neither take a commune from another district
// nor give one of theirs away. What it leaves as it is may lie anywhere (the
// province row every line of the file repeats). The check is made in the
// import's transaction, against what is stored then. Names are stored in NFC.
func (s *Store) ImportUnitsWithin(ctx context.Context, units []broadcast.Unit, stations []broadcast.Station, within string, op *broadcast.OpEntry) (ImportResult, error) {
	units, stations = slices.Clone(units), slices.Clone(stations)
	for i := range units {
		units[i].Name, units[i].Type = broadcast.NFC(units[i].Name), broadcast.NFC(units[i].Type)
	}
	for i := range stations {
		stations[i].Name = broadcast.NFC(stations[i].Name)
	}
	inside := func(what, code, path string) error {
		if within != "" && !broadcast.Below(path, within) {
			return broadcast.Errorf(broadcast.EForbidden, "%s %s at %s is outside the unit of this token (%s): a scoped token may only create or change units below its own", what, code, path, within)
		}
		return nil
	}
	for _, u := range units {
		if u.Code == "" || u.Path == "" {
			return ImportResult{}, broadcast.Errorf(broadcast.EInvalid, "unit %q: code and path are required", u.Code)
		}
	}
	for _, st := range stations {
		if st.ID == "" || st.Path == "" {
			return ImportResult{}, broadcast.Errorf(broadcast.EInvalid, "station %q: id and path are required", st.ID)
		}
	}
	// Insert in key order: bbolt then fills pages left to right instead of
	// splitting them at random.
	units = slices.SortedFunc(slices.Values(units), func(a, b broadcast.Unit) int { return cmp.Compare(a.Code, b.Code) })
	stations = slices.SortedFunc(slices.Values(stations), func(a, b broadcast.Station) int { return cmp.Compare(a.ID, b.ID) })
	var res ImportResult
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		ub, kids := tx.Bucket(bktUnits), tx.Bucket(bktUnitKids)
		for _, u := range units {
			v, err := json.Marshal(u)
			if err != nil {
				return fmt.Errorf("encode unit %s: %w", u.Code, err)
			}
			old := ub.Get([]byte(u.Code))
			if bytes.Equal(old, v) {
				continue
			}
			if err := inside("unit", u.Code, u.Path); err != nil {
				return err
			}
			if old == nil {
				res.UnitsCreated++
			} else {
				res.UnitsUpdated++
				var was broadcast.Unit
				if err := json.Unmarshal(old, &was); err != nil {
					return fmt.Errorf("decode unit %s: %w", u.Code, err)
				}
				if err := inside("unit", u.Code, was.Path); err != nil {
					return err
				}
				if err := kids.Delete(key(was.Parent, was.Code)); err != nil {
					return err
				}
			}
			s.noteRecord(broadcast.RecordUnit, u.Code, broadcast.HashRecord(broadcast.RecordUnit, u.Code, v))
			if err := ub.Put([]byte(u.Code), v); err != nil {
				return fmt.Errorf("store unit %s: %w", u.Code, err)
			}
			if err := kids.Put(key(u.Parent, u.Code), nil); err != nil {
				return fmt.Errorf("index unit %s: %w", u.Code, err)
			}
		}
		sb, byPath := tx.Bucket(bktStations), tx.Bucket(bktStationPath)
		for _, st := range stations {
			v, err := json.Marshal(st)
			if err != nil {
				return fmt.Errorf("encode station %s: %w", st.ID, err)
			}
			old := sb.Get([]byte(st.ID))
			if bytes.Equal(old, v) {
				continue
			}
			if err := inside("station", st.ID, st.Path); err != nil {
				return err
			}
			if old == nil {
				res.StationsCreated++
			} else {
				res.StationsUpdated++
				var was broadcast.Station
				if err := json.Unmarshal(old, &was); err != nil {
					return fmt.Errorf("decode station %s: %w", st.ID, err)
				}
				if err := inside("station", st.ID, was.Path); err != nil {
					return err
				}
				if err := byPath.Delete(key(was.Path, was.ID)); err != nil {
					return err
				}
			}
			s.noteRecord(broadcast.RecordStation, st.ID, broadcast.HashRecord(broadcast.RecordStation, st.ID, v))
			if err := sb.Put([]byte(st.ID), v); err != nil {
				return fmt.Errorf("store station %s: %w", st.ID, err)
			}
			if err := byPath.Put(key(st.Path, st.ID), nil); err != nil {
				return fmt.Errorf("index station %s: %w", st.ID, err)
			}
		}
		// Bucket.Stats reads committed pages only; a cursor sees this
		// transaction's writes too.
		res.UnitsTotal, res.StationsTotal = countKeys(ub), countKeys(sb)
		if res.UnitsCreated+res.StationsCreated+res.UnitsUpdated+res.StationsUpdated == 0 {
			// Nothing new: no operations-log entry for a no-op re-import.
			return errNoChange
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, fmt.Errorf("import units: %w", err)
	}
	return res, nil
}

// Unit returns the unit with the given code.
func (s *Store) Unit(code string) (broadcast.Unit, error) {
	var u broadcast.Unit
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bktUnits).Get([]byte(code))
		if v == nil {
			return notFound("unit", code)
		}
		return json.Unmarshal(v, &u)
	})
	if err != nil {
		return broadcast.Unit{}, fmt.Errorf("unit %s: %w", code, err)
	}
	return u, nil
}

// Units returns the direct children of the unit parent ("" for the top
// level, the provinces), sorted by code.
func (s *Store) Units(parent string) ([]broadcast.Unit, error) {
	var out []broadcast.Unit
	err := s.view(func(tx *bolt.Tx) error {
		ub := tx.Bucket(bktUnits)
		prefix := key(parent, "")
		return scan(tx.Bucket(bktUnitKids), prefix, func(k, _ []byte) error {
			code := k[len(prefix):]
			var u broadcast.Unit
			if err := json.Unmarshal(ub.Get(code), &u); err != nil {
				return fmt.Errorf("decode unit %s: %w", code, err)
			}
			out = append(out, u)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("units under %q: %w", parent, err)
	}
	return out, nil
}

// Station returns the station with the given id.
func (s *Store) Station(id string) (broadcast.Station, error) {
	var st broadcast.Station
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bktStations).Get([]byte(id))
		if v == nil {
			return notFound("station", id)
		}
		return json.Unmarshal(v, &st)
	})
	if err != nil {
		return broadcast.Station{}, fmt.Errorf("station %s: %w", id, err)
	}
	return st, nil
}

// Stations returns every station at or below the unit path ("" for all),
// sorted by path. The path index makes it a prefix scan.
func (s *Store) Stations(path string) ([]broadcast.Station, error) {
	var out []broadcast.Station
	err := s.view(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bktStations)
		return scanStationIDs(tx, path, func(id []byte) error {
			var st broadcast.Station
			if err := json.Unmarshal(sb.Get(id), &st); err != nil {
				return fmt.Errorf("decode station %s: %w", id, err)
			}
			out = append(out, st)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("stations below %q: %w", path, err)
	}
	return out, nil
}

// scanStationIDs calls fn with the id of every station at or below path, in
// path order. Keys are path \0 id; seeking to path finds the station at path
// itself and those below (path/…), but also siblings that merely share the
// prefix (path 38/380 vs 38/3801), which the Below test drops.
func scanStationIDs(tx *bolt.Tx, path string, fn func(id []byte) error) error {
	return scan(tx.Bucket(bktStationPath), []byte(path), func(k, _ []byte) error {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			return fmt.Errorf("station path index: bad key %q", k)
		}
		if path != "" && !broadcast.Below(string(k[:i]), path) {
			return nil
		}
		return fn(k[i+1:])
	})
}

func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
