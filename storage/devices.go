package storage

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// deviceRec is a device as stored: broadcast.Device keeps its secret hash out
// of JSON (so that no API response leaks it), but the store must keep it.
type deviceRec struct {
	broadcast.Device
	SecretHash string `json:"secret_hash,omitempty"`
}

func encodeDevice(d broadcast.Device) ([]byte, error) {
	return json.Marshal(deviceRec{Device: d, SecretHash: d.SecretHash})
}

func decodeDevice(v []byte) (broadcast.Device, error) {
	var r deviceRec
	if err := json.Unmarshal(v, &r); err != nil {
		return broadcast.Device{}, err
	}
	r.Device.SecretHash = r.SecretHash
	return r.Device, nil
}

func enabledFlag(d broadcast.Device) []byte {
	if d.Disabled {
		return []byte{0}
	}
	return []byte{1}
}

// AddDevice registers a device of an existing station. It refuses an id that
// exists (EConflict) and a station that does not (ENotFound).
func (s *Store) AddDevice(ctx context.Context, d broadcast.Device, op *broadcast.OpEntry) error {
	return s.AddDevices(ctx, []broadcast.Device{d}, op)
}

// AddDevices registers devices in one transaction (provisioning a province's
// receivers is one import): all of them or, on any refusal, none.
func (s *Store) AddDevices(ctx context.Context, devices []broadcast.Device, op *broadcast.OpEntry) error {
	now := s.now()
	for i := range devices {
		d := &devices[i]
		if !broadcast.ValidID(d.ID) {
			return broadcast.FieldError(broadcast.EInvalid, "id", "device id %q is not 1-64 characters of [A-Za-z0-9_-]", d.ID)
		}
	}
	defer s.devices.changed()
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		db, sb, idx := tx.Bucket(bktDevices), tx.Bucket(bktStations), tx.Bucket(bktStationDevs)
		for _, d := range devices {
			if d.CreatedAt.IsZero() {
				d.CreatedAt = now
			}
			if db.Get([]byte(d.ID)) != nil {
				return broadcast.Errorf(broadcast.EConflict, "device %s already exists", d.ID)
			}
			if sb.Get([]byte(d.Station)) == nil {
				return notFound("station", d.Station)
			}
			v, err := encodeDevice(d)
			if err != nil {
				return fmt.Errorf("encode device %s: %w", d.ID, err)
			}
			s.noteRecord(broadcast.RecordDevice, d.ID, broadcast.HashRecord(broadcast.RecordDevice, d.ID, v))
			if err := db.Put([]byte(d.ID), v); err != nil {
				return fmt.Errorf("store device %s: %w", d.ID, err)
			}
			if err := idx.Put(key(d.Station, d.ID), enabledFlag(d)); err != nil {
				return fmt.Errorf("index device %s: %w", d.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		if len(devices) == 1 {
			return fmt.Errorf("add device %s: %w", devices[0].ID, err)
		}
		return fmt.Errorf("add %d devices: %w", len(devices), err)
	}
	return nil
}

// Device returns a device, with its secret hash.
func (s *Store) Device(id string) (broadcast.Device, error) {
	d, gen, ok := s.devices.get(id)
	if ok {
		return d, nil
	}
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bktDevices).Get([]byte(id))
		if v == nil {
			return notFound("device", id)
		}
		var err error
		d, err = decodeDevice(v)
		return err
	})
	if err != nil {
		return broadcast.Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	s.devices.put(gen, d)
	return d, nil
}

// Devices returns the devices of a station ("" for every device), sorted by
// station then id.
func (s *Store) Devices(station string) ([]broadcast.Device, error) {
	var out []broadcast.Device
	err := s.view(func(tx *bolt.Tx) error {
		db := tx.Bucket(bktDevices)
		prefix := []byte(nil)
		if station != "" {
			prefix = key(station, "")
		}
		return scan(tx.Bucket(bktStationDevs), prefix, func(k, _ []byte) error {
			id := afterZero(k)
			d, err := decodeDevice(db.Get(id))
			if err != nil {
				return fmt.Errorf("decode device %s: %w", id, err)
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("devices of station %q: %w", station, err)
	}
	return out, nil
}

// afterZero is what follows the first 0 byte of k.
func afterZero(k []byte) []byte {
	for i, c := range k {
		if c == 0 {
			return k[i+1:]
		}
	}
	return nil
}

// DisableDevice disables a device from at on: it no longer counts towards
// its station's enabled devices. Disabling a disabled device changes nothing
// and logs nothing.
func (s *Store) DisableDevice(ctx context.Context, id string, at time.Time, op *broadcast.OpEntry) error {
	defer s.devices.changed()
	err := s.update(ctx, op, func(tx *bolt.Tx) error {
		db := tx.Bucket(bktDevices)
		v := db.Get([]byte(id))
		if v == nil {
			return notFound("device", id)
		}
		d, err := decodeDevice(v)
		if err != nil {
			return err
		}
		if d.Disabled {
			return errNoChange
		}
		d.Disabled, d.DisabledAt = true, at
		if v, err = encodeDevice(d); err != nil {
			return err
		}
		if err := db.Put([]byte(id), v); err != nil {
			return err
		}
		s.noteRecord(broadcast.RecordDevice, id, broadcast.HashRecord(broadcast.RecordDevice, id, v))
		return tx.Bucket(bktStationDevs).Put(key(d.Station, d.ID), enabledFlag(d))
	})
	if err != nil {
		return fmt.Errorf("disable device %s: %w", id, err)
	}
	return nil
}

// enabledDevices counts a station's enabled devices from the index, whose
// values carry the enabled flag so that no device record is decoded.
func enabledDevices(tx *bolt.Tx, station string) int {
	n := 0
	_ = scan(tx.Bucket(bktStationDevs), key(station, ""), func(_, v []byte) error {
		if len(v) == 1 && v[0] == 1 {
			n++
		}
		return nil
	})
	return n
}

// NextSnapshotRev returns the next revision of a device's schedule snapshot:
// 1, 2, 3… strictly increasing across restarts, because the counter is
// committed before the revision is returned and a device ignores a snapshot
// whose rev is not above the last it applied. It goes through the
// group-commit writer, so that re-publishing to thousands of devices costs a
// handful of fsyncs.
func (s *Store) NextSnapshotRev(ctx context.Context, device string) (uint64, error) {
	if device == "" {
		return 0, broadcast.FieldError(broadcast.EInvalid, "device", "a device id is required")
	}
	res, err := s.submit(ctx, request{rev: device})
	if err != nil {
		return 0, fmt.Errorf("next snapshot rev of %s: %w", device, err)
	}
	return res.rev, nil
}

func nextRev(tx *bolt.Tx, device string) (uint64, error) {
	b := tx.Bucket(bktSnapRev)
	var n uint64
	if v := b.Get([]byte(device)); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	} else if v != nil {
		return 0, errors.New("corrupt snapshot rev")
	}
	n++
	return n, b.Put([]byte(device), u64(n))
}
