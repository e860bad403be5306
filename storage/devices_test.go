package storage

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

func TestDevices(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	seedStations(t, s, 2)
	base := opsSeq(t, s)

	op := &broadcast.OpEntry{Actor: "tok1", Action: "device.add", Subject: "d1"}
	must(t, s.AddDevice(ctx, broadcast.Device{ID: "d1", Station: "38001", SecretHash: "$7$101$abc$def"}, op))
	if op.Seq != base+1 || len(op.Records) != 1 || op.Records[0].Key != "device/d1" {
		t.Errorf("op seq %d", op.Seq)
	}
	must(t, s.AddDevice(ctx, broadcast.Device{ID: "d2", Station: "38001"}, nil))
	must(t, s.AddDevice(ctx, broadcast.Device{ID: "d3", Station: "38002"}, nil))

	err := s.AddDevice(ctx, broadcast.Device{ID: "d1", Station: "38001"}, &broadcast.OpEntry{Action: "device.add"})
	if broadcast.ErrorCode(err) != broadcast.EConflict {
		t.Errorf("duplicate id: %v", err)
	}
	err = s.AddDevice(ctx, broadcast.Device{ID: "d9", Station: "nowhere"}, nil)
	if !broadcast.IsNotFound(err) {
		t.Errorf("unknown station: %v", err)
	}
	if err := s.AddDevice(ctx, broadcast.Device{ID: "bad/id", Station: "38001"}, nil); broadcast.ErrorCode(err) != broadcast.EInvalid {
		t.Errorf("bad id: %v", err)
	}
	// d2 and d3, added without an entry of their own, got one each.
	if seq, _, _ := s.OpsHead(); seq != base+3 {
		t.Errorf("failed adds were logged: ops head %d", seq)
	}

	d, err := s.Device("d1")
	must(t, err)
	if d.SecretHash != "$7$101$abc$def" || d.Station != "38001" || !d.CreatedAt.Equal(t0) {
		t.Errorf("Device(d1) = %+v", d)
	}
	if _, err := s.Device("nope"); !broadcast.IsNotFound(err) {
		t.Errorf("Device(nope): %v", err)
	}
	ds, err := s.Devices("38001")
	must(t, err)
	if len(ds) != 2 || ds[0].ID != "d1" || ds[1].ID != "d2" {
		t.Errorf("Devices(38001) = %v", ds)
	}
	all, err := s.Devices("")
	must(t, err)
	if len(all) != 3 {
		t.Errorf("Devices() = %d", len(all))
	}

	must(t, s.view(func(tx *boltTx) error {
		if n := enabledDevices(tx, "38001"); n != 2 {
			t.Errorf("enabled = %d", n)
		}
		return nil
	}))
	must(t, s.DisableDevice(ctx, "d2", t0, &broadcast.OpEntry{Action: "device.disable", Subject: "d2"}))
	must(t, s.DisableDevice(ctx, "d2", t0, &broadcast.OpEntry{Action: "device.disable", Subject: "d2"})) // no-op
	if seq, _, _ := s.OpsHead(); seq != base+4 {
		t.Errorf("ops head %d, want %d (the second disable changed nothing)", seq, base+4)
	}
	d, _ = s.Device("d2")
	if !d.Disabled || !d.DisabledAt.Equal(t0) {
		t.Errorf("d2 = %+v", d)
	}
	must(t, s.view(func(tx *boltTx) error {
		if n := enabledDevices(tx, "38001"); n != 1 {
			t.Errorf("enabled after disable = %d", n)
		}
		return nil
	}))
	if err := s.DisableDevice(ctx, "nope", t0, nil); !broadcast.IsNotFound(err) {
		t.Errorf("disable unknown: %v", err)
	}
}

// Device answers from its cache between changes, and never with a record
// older than the last change that returned.
func TestDeviceCacheFollowsChanges(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	seedStations(t, s, 1)
	key := ed25519.PublicKey(bytes.Repeat([]byte{7}, ed25519.PublicKeySize))
	must(t, s.AddDevice(ctx, broadcast.Device{ID: "d1", Station: "38001", PublicKey: key}, nil))

	d, err := s.Device("d1")
	must(t, err)
	d.PublicKey[0] = 9 // a caller scribbling on its copy
	again, err := s.Device("d1")
	must(t, err)
	if !bytes.Equal(again.PublicKey, key) {
		t.Fatalf("a caller's change reached the cache: key %x", again.PublicKey)
	}
	if _, err := s.Device("d2"); !broadcast.IsNotFound(err) {
		t.Fatalf("unknown device: %v", err)
	}
	must(t, s.AddDevice(ctx, broadcast.Device{ID: "d2", Station: "38001"}, nil))
	if _, err := s.Device("d2"); err != nil {
		t.Fatalf("a device added after a miss: %v", err)
	}

	// Readers racing the change: once DisableDevice has returned, no read
	// that starts may see the device enabled.
	var (
		stop     = make(chan struct{})
		disabled atomic.Bool
		wg       sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := disabled.Load()
				d, err := s.Device("d1")
				if err != nil {
					t.Error(err)
					return
				}
				if after && !d.Disabled {
					t.Error("device read enabled after DisableDevice returned")
					return
				}
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	must(t, s.DisableDevice(ctx, "d1", t0, nil))
	disabled.Store(true)
	time.Sleep(5 * time.Millisecond)
	close(stop)
	wg.Wait()
}

func TestNextSnapshotRev(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenDir(t, dir)
	ctx := context.Background()
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				n, err := s.NextSnapshotRev(ctx, "d1")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[n] {
					t.Errorf("rev %d twice", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 200 || !seen[1] || !seen[200] {
		t.Fatalf("%d revs", len(seen))
	}
	must(t, s.Close())
	s = mustOpenDir(t, dir)
	n, err := s.NextSnapshotRev(ctx, "d1")
	must(t, err)
	if n != 201 {
		t.Errorf("after reopen: %d, want 201", n)
	}
	n, _ = s.NextSnapshotRev(ctx, "d2")
	if n != 1 {
		t.Errorf("another device starts at %d", n)
	}
	if _, err := s.NextSnapshotRev(ctx, ""); broadcast.ErrorCode(err) != broadcast.EInvalid {
		t.Errorf("empty device: %v", err)
	}
}

func TestTokens(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	secret := broadcast.NewTokenSecret()
	tok := broadcast.Token{ID: "tok1", Name: "alice", Role: broadcast.RoleOperator, Unit: "380", UnitPath: "38/380", Hash: broadcast.HashToken(secret)}
	op := &broadcast.OpEntry{Actor: "admin", Action: "token.create", Subject: "tok1"}
	must(t, s.PutToken(ctx, tok, op))
	if op.Seq != 1 {
		t.Errorf("op %+v", op)
	}
	got, err := s.TokenByHash(broadcast.HashToken(secret))
	must(t, err)
	if got.ID != "tok1" || got.Hash != tok.Hash || got.Role != broadcast.RoleOperator || !got.CreatedAt.Equal(t0) {
		t.Errorf("TokenByHash = %+v", got)
	}
	if _, err := s.TokenByHash("nope"); !broadcast.IsNotFound(err) {
		t.Errorf("unknown hash: %v", err)
	}
	// Another token cannot take the same secret.
	if err := s.PutToken(ctx, broadcast.Token{ID: "tok2", Hash: tok.Hash}, nil); broadcast.ErrorCode(err) != broadcast.EConflict {
		t.Errorf("shared hash: %v", err)
	}
	// Rotating the secret drops the old hash.
	tok.Hash = broadcast.HashToken("new")
	must(t, s.PutToken(ctx, tok, nil))
	if _, err := s.TokenByHash(broadcast.HashToken(secret)); !broadcast.IsNotFound(err) {
		t.Errorf("old hash still finds the token: %v", err)
	}
	must(t, s.PutToken(ctx, broadcast.Token{ID: "tok0", Name: "bob", Role: broadcast.RoleAuditor, Hash: "h0"}, nil))
	all, err := s.Tokens()
	must(t, err)
	if len(all) != 2 || all[0].ID != "tok0" || all[1].ID != "tok1" || all[1].Hash != tok.Hash {
		t.Errorf("Tokens() = %+v", all)
	}
	must(t, s.DeleteToken(ctx, "tok0", &broadcast.OpEntry{Action: "token.revoke", Subject: "tok0"}))
	if _, err := s.TokenByHash("h0"); !broadcast.IsNotFound(err) {
		t.Errorf("revoked token found: %v", err)
	}
	if err := s.DeleteToken(ctx, "tok0", nil); !broadcast.IsNotFound(err) {
		t.Errorf("delete twice: %v", err)
	}
	if err := s.PutToken(ctx, broadcast.Token{ID: "t"}, nil); broadcast.ErrorCode(err) != broadcast.EInvalid {
		t.Errorf("token without hash: %v", err)
	}
}
