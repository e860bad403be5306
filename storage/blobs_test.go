package storage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

func blobFiles(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(filepath.Join(s.Dir(), "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(s.Dir(), p)
			out = append(out, rel)
		}
		return err
	}))
	return out
}

func TestPutBlob(t *testing.T) {
	s := mustOpen(t)
	data := bytes.Repeat([]byte("loa xã "), 100_000)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])

	sha, size, err := s.PutBlob(bytes.NewReader(data))
	must(t, err)
	if sha != want || size != int64(len(data)) {
		t.Fatalf("PutBlob = %s %d, want %s %d", sha, size, want, len(data))
	}
	if p := s.BlobPath(sha); p != filepath.Join(s.Dir(), "blobs", sha[:2], sha) {
		t.Errorf("BlobPath = %s", p)
	}
	// Idempotent.
	sha2, size2, err := s.PutBlob(bytes.NewReader(data))
	must(t, err)
	if sha2 != sha || size2 != size {
		t.Errorf("second PutBlob = %s %d", sha2, size2)
	}
	if files := blobFiles(t, s); len(files) != 1 || files[0] != filepath.Join("blobs", sha[:2], sha) {
		t.Errorf("blob files: %v", files)
	}

	f, err := s.OpenBlob(sha)
	must(t, err)
	got, err := io.ReadAll(f)
	f.Close()
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Error("blob content differs")
	}
	missing := strings.Repeat("0", 64)
	if _, err := s.OpenBlob(missing); !broadcast.IsNotFound(err) {
		t.Errorf("OpenBlob(missing): %v", err)
	}
	for _, bad := range []string{"", "../../loaxa.db", strings.Repeat("A", 64), strings.Repeat("0", 63), "../" + strings.Repeat("0", 61)} {
		if _, err := s.OpenBlob(bad); broadcast.ErrorCode(err) != broadcast.EInvalid {
			t.Errorf("OpenBlob(%q): %v", bad, err)
		}
	}
}

// failingReader gives some bytes, then fails, like an upload cut short.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func TestPutBlobFailingReader(t *testing.T) {
	s := mustOpen(t)
	_, _, err := s.PutBlob(&failingReader{n: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("PutBlob of a failing reader: %v", err)
	}
	if files := blobFiles(t, s); len(files) != 0 {
		t.Errorf("left behind: %v", files)
	}
}

func TestCheck(t *testing.T) {
	s := mustOpen(t)
	seedStations(t, s, 1)
	p1 := seedProgramme(t, s, "p1")
	p2 := seedProgramme(t, s, "p2")
	rep, err := s.Check()
	must(t, err)
	if !rep.OK() {
		t.Fatalf("fresh store: %+v", rep)
	}

	// An orphan, a young temporary file, an old one, a missing blob.
	orphan, _, err := s.PutBlob(strings.NewReader("nobody names me"))
	must(t, err)
	young := filepath.Join(s.Dir(), "blobs", tempPrefix+"young")
	old := filepath.Join(s.Dir(), "blobs", tempPrefix+"old")
	must(t, os.WriteFile(young, []byte("x"), 0o600))
	must(t, os.WriteFile(old, []byte("x"), 0o600))
	must(t, os.Chtimes(old, t0.Add(-2*time.Hour), t0.Add(-2*time.Hour)))
	must(t, os.Chtimes(young, t0.Add(-time.Minute), t0.Add(-time.Minute)))
	must(t, os.Remove(s.BlobPath(p2.Audio.SHA256)))

	rep, err = s.Check()
	must(t, err)
	if len(rep.MissingBlobs) != 1 || rep.MissingBlobs[0] != p2.Audio.SHA256 {
		t.Errorf("missing = %v", rep.MissingBlobs)
	}
	if len(rep.MissingRecords) != 1 || !strings.Contains(rep.MissingRecords[0], "programme p2") {
		t.Errorf("missing records = %v", rep.MissingRecords)
	}
	wantOrphans := []string{filepath.Join("blobs", orphan[:2], orphan), filepath.Join("blobs", tempPrefix+"old")}
	if strings.Join(rep.OrphanBlobs, ",") != strings.Join(sortedCopy(wantOrphans), ",") {
		t.Errorf("orphans = %v, want %v", rep.OrphanBlobs, wantOrphans)
	}
	_ = p1
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

func TestBackup(t *testing.T) {
	s := mustOpen(t)
	ctx := context.Background()
	seedStations(t, s, 3)
	addDevices(t, s, "38001", 2)
	p := seedProgramme(t, s, "p1")
	_, _, err := s.PutBlob(strings.NewReader("orphan, not backed up"))
	must(t, err)
	must(t, s.PutAirings(ctx, []*broadcast.Airing{airing("a1", "38001", "p1", t0)}, nil))
	_, err = s.AppendEvent(ctx, event(t, "d-38001-0", "38001", "a1", 1, broadcast.EventReceived))
	must(t, err)

	var buf bytes.Buffer
	must(t, s.Backup(ctx, &buf))
	// Writes after the backup are not in it.
	_, err = s.AppendEvent(ctx, event(t, "d-38001-0", "38001", "a1", 2, broadcast.EventReady))
	must(t, err)

	restore := t.TempDir()
	tr := tar.NewReader(&buf)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		names = append(names, h.Name)
		dst := filepath.Join(restore, filepath.FromSlash(h.Name))
		must(t, os.MkdirAll(filepath.Dir(dst), 0o750))
		b, err := io.ReadAll(tr)
		must(t, err)
		must(t, os.WriteFile(dst, b, 0o600))
	}
	want := []string{DBFile, "blobs/" + p.Audio.SHA256[:2] + "/" + p.Audio.SHA256}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("tar holds %v, want %v", names, want)
	}
	if left, _ := filepath.Glob(filepath.Join(s.Dir(), ".backup-*")); len(left) != 0 {
		t.Errorf("backup left %v", left)
	}

	r := mustOpenDir(t, restore)
	if _, err := r.Programme("p1"); err != nil {
		t.Errorf("restored programme: %v", err)
	}
	if ds, _ := r.Devices("38001"); len(ds) != 2 {
		t.Errorf("restored devices: %d", len(ds))
	}
	if n := verifyChain(t, r); n != 1 {
		t.Errorf("restored log has %d entries, want 1", n)
	}
	rep, err := r.Check()
	must(t, err)
	if !rep.OK() {
		t.Errorf("restored store: %+v", rep)
	}

	// A cancelled context stops the backup.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Backup(cctx, io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled backup: %v", err)
	}
}

func TestLeftoverBackupSpoolRemoved(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenDir(t, dir)
	must(t, s.Close())
	spool := filepath.Join(dir, backupPrefix+"123.db")
	must(t, os.WriteFile(spool, []byte("half a backup"), 0o600))
	mustOpenDir(t, dir)
	if _, err := os.Stat(spool); !os.IsNotExist(err) {
		t.Errorf("spool file survived Open: %v", err)
	}
}
