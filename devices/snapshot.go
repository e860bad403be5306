package devices

import "github.com/loaxa/loaxa/broadcast"

// checkSnapshot refuses a snapshot that broadcast.DecodeSnapshot, as a
// device runs it, would refuse once marshalled to size bytes. It checks the
// struct rather than decoding the payload again: decoding cost as much as
// marshalling, a quarter of the daemon's CPU in a national fan-out.
// TestCheckSnapshotAgreesWithDecode keeps the two in step.
func checkSnapshot(s broadcast.Snapshot, size int) error {
	switch {
	case size > broadcast.MaxSnapshotPayload:
		return reject(broadcast.RejectTooLarge, "snapshot payload is %d bytes, the limit is %d", size, broadcast.MaxSnapshotPayload)
	case s.V != broadcast.ProtocolVersion:
		return reject(broadcast.RejectVersion, "snapshot v=%d, want %d", s.V, broadcast.ProtocolVersion)
	case !broadcast.ValidID(s.Device) || s.Rev == 0:
		return reject(broadcast.RejectSchema, "snapshot needs a device id and a rev >= 1")
	}
	for i, it := range s.Items {
		switch {
		case !broadcast.ValidID(it.Airing):
			return reject(broadcast.RejectSchema, "item %d: airing %q is not a valid id", i, it.Airing)
		case it.Start.IsZero() || !it.NotAfter.After(it.Start):
			return reject(broadcast.RejectSchema, "item %d: start and not_after are required and not_after must follow start", i)
		case !lowerHex64(it.Audio.SHA256) || it.Audio.Size <= 0 || it.Audio.URL == "":
			return reject(broadcast.RejectSchema, "item %d: audio needs sha256, size and url", i)
		case it.Priority < broadcast.PriorityNormal || it.Priority > broadcast.PriorityEmergency:
			return reject(broadcast.RejectSchema, "item %d: priority %d is not 0, 1 or 2", i, it.Priority)
		}
	}
	return nil
}

// lowerHex64 is a sha256 as the protocol writes it: 64 lowercase hex digits.
func lowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
