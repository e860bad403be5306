package storage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	bolt "go.etcd.io/bbolt"
)

// tempPrefix names blobs being written, in blobs/ itself so that the final
// rename stays on one file system and is atomic.
const tempPrefix = "tmp-"

// backupPrefix names the spool file of a backup in progress.
const backupPrefix = ".backup-"

// staleTemp is how old a temporary blob must be before Check calls it an
// orphan rather than an upload in progress.
const staleTemp = time.Hour

func validSHA(sha string) bool {
	if len(sha) != 64 {
		return false
	}
	for i := 0; i < len(sha); i++ {
		c := sha[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// BlobPath is where the blob with the given sha256 (64 lower-case hex
// digits) lives: blobs/ab/<sha>, where ab are its first two digits, so that
// no directory grows past 256 entries times a fraction of the blobs. It does
// not check sha; OpenBlob does.
func (s *Store) BlobPath(sha string) string {
	if len(sha) < 2 {
		return filepath.Join(s.dir, "blobs", "_", sha)
	}
	return filepath.Join(s.dir, "blobs", sha[:2], sha)
}

// PutBlob stores the content of r and returns its sha256 and size. The blob
// is written to a temporary file while it is hashed, fsync'd, renamed to its
// name and the directory fsync'd, so that a record naming the blob, committed
// after PutBlob returns, never names a file a crash could lose or truncate.
// Storing content that exists already is a no-op. On any error the
// temporary file is removed.
func (s *Store) PutBlob(r io.Reader) (sha256hex string, size int64, err error) {
	blobs := filepath.Join(s.dir, "blobs")
	f, err := os.CreateTemp(blobs, tempPrefix+"*")
	if err != nil {
		return "", 0, fmt.Errorf("store blob: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	h := sha256.New()
	if size, err = io.Copy(io.MultiWriter(f, h), r); err != nil {
		return "", 0, fmt.Errorf("store blob: write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return "", 0, fmt.Errorf("store blob: sync %s: %w", tmp, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return "", 0, fmt.Errorf("store blob: close %s: %w", tmp, err)
	}
	sha := hex.EncodeToString(h.Sum(nil))
	final := s.BlobPath(sha)
	dir := filepath.Dir(final)
	if _, serr := os.Stat(final); serr == nil {
		// Same content, same name: the existing blob was made durable when
		// it was stored.
		_ = os.Remove(tmp)
		return sha, size, nil
	}
	if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
		if err = os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", 0, fmt.Errorf("store blob %s: %w", sha, err)
		}
		// The new directory's entry in blobs/ must be durable too.
		if err = syncDir(blobs); err != nil {
			return "", 0, fmt.Errorf("store blob %s: %w", sha, err)
		}
	}
	if err = os.Rename(tmp, final); err != nil {
		return "", 0, fmt.Errorf("store blob %s: %w", sha, err)
	}
	if err = syncDir(dir); err != nil {
		// The file is in place; only its durability is in doubt. Leave it:
		// removing it could pull it from under a concurrent identical upload.
		return "", 0, fmt.Errorf("store blob %s: %w", sha, err)
	}
	return sha, size, nil
}

// syncDir fsyncs a directory, which makes the names in it (a rename, a new
// subdirectory) survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// OpenBlob opens a blob for reading. The caller closes it.
func (s *Store) OpenBlob(sha string) (*os.File, error) {
	if !validSHA(sha) {
		// Also keeps "../" and friends out of the path.
		return nil, broadcast.FieldError(broadcast.EInvalid, "sha256", "%q is not 64 lower-case hex digits", sha)
	}
	f, err := os.Open(s.BlobPath(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound("blob", sha)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", sha, err)
	}
	return f, nil
}

// hasBlob reports whether the blob is on disk.
func (s *Store) hasBlob(sha string) bool {
	if !validSHA(sha) {
		return false
	}
	fi, err := os.Stat(s.BlobPath(sha))
	return err == nil && fi.Mode().IsRegular()
}

// namedBlobs returns the sha256 of every blob a programme names, with the
// programmes naming each. Airings carry their programme's audio, so the
// programmes name every blob the store needs.
func namedBlobs(tx *bolt.Tx) (map[string][]string, error) {
	named := map[string][]string{}
	err := tx.Bucket(bktProgrammes).ForEach(func(k, v []byte) error {
		var p broadcast.Programme
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decode programme %s: %w", k, err)
		}
		if p.Audio.SHA256 != "" {
			named[p.Audio.SHA256] = append(named[p.Audio.SHA256], p.ID)
		}
		return nil
	})
	return named, err
}

// CheckReport lists inconsistencies between records and blobs.
type CheckReport struct {
	MissingBlobs   []string // sha256 of blobs a programme names that are not on disk, sorted
	MissingRecords []string // "programme <id>: blob <sha256>" for each of them
	OrphanBlobs    []string // paths relative to Dir of files in blobs/ no record names (and temporary files older than an hour), sorted
}

// OK reports whether the check found nothing.
func (r CheckReport) OK() bool { return len(r.MissingBlobs) == 0 && len(r.OrphanBlobs) == 0 }

// Check finds records whose blob is missing and blobs no record names. It
// only reports: deleting an orphan is the operator's decision.
func (s *Store) Check() (CheckReport, error) {
	var named map[string][]string
	if err := s.view(func(tx *bolt.Tx) error {
		var err error
		named, err = namedBlobs(tx)
		return err
	}); err != nil {
		return CheckReport{}, fmt.Errorf("check: %w", err)
	}
	var rep CheckReport
	for sha, progs := range named {
		if !s.hasBlob(sha) {
			rep.MissingBlobs = append(rep.MissingBlobs, sha)
			for _, id := range progs {
				rep.MissingRecords = append(rep.MissingRecords, fmt.Sprintf("programme %s: blob %s", id, sha))
			}
		}
	}
	// Files are listed after the records were read: a blob stored and named
	// in between is seen as named or as an orphan, never as missing, and an
	// upload in progress is a young temporary file.
	blobs := filepath.Join(s.dir, "blobs")
	cutoff := s.now().Add(-staleTemp)
	err := filepath.WalkDir(blobs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(s.dir, path)
		name := d.Name()
		if filepath.Dir(path) == blobs && strings.HasPrefix(name, tempPrefix) {
			fi, err := d.Info()
			if err != nil {
				return nil // removed meanwhile: a finished upload
			}
			if fi.ModTime().Before(cutoff) {
				rep.OrphanBlobs = append(rep.OrphanBlobs, rel)
			}
			return nil
		}
		if validSHA(name) && path == s.BlobPath(name) {
			if _, ok := named[name]; ok {
				return nil
			}
		}
		rep.OrphanBlobs = append(rep.OrphanBlobs, rel)
		return nil
	})
	if err != nil {
		return CheckReport{}, fmt.Errorf("check %s: %w", blobs, err)
	}
	slices.Sort(rep.MissingBlobs)
	slices.Sort(rep.MissingRecords)
	slices.Sort(rep.OrphanBlobs)
	return rep, nil
}

// Backup writes a tar stream: "loaxa.db", a consistent snapshot of the file
// from one read transaction, then "blobs/ab/<sha>" for every blob a
// programme in that snapshot names. Restoring is untarring into an empty
// directory.
//
// The snapshot is first copied to a temporary file beside the database, and
// the read transaction closed, before anything goes to w: a read
// transaction held open while a slow client drains the stream would stop
// the file from growing and so stall every writer, the as-run log included.
func (s *Store) Backup(ctx context.Context, w io.Writer) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, backupPrefix+"*.db")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	var (
		named map[string][]string
		size  int64
		txID  int
	)
	err = s.view(func(tx *bolt.Tx) error {
		var err error
		if named, err = namedBlobs(tx); err != nil {
			return err
		}
		txID = tx.ID()
		size, err = tx.WriteTo(ctxWriter{ctx, tmp})
		return err
	})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			// bbolt's WriteTo formats the writer's error with %s.
			return fmt.Errorf("backup: %w", cerr)
		}
		return fmt.Errorf("backup: snapshot to %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	now := s.now()
	tw := tar.NewWriter(ctxWriter{ctx, w})
	hdr := &tar.Header{Name: DBFile, Mode: 0o600, Size: size, ModTime: now, Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := io.CopyN(tw, tmp, size); err != nil {
		return fmt.Errorf("backup: copy snapshot: %w", err)
	}
	shas := make([]string, 0, len(named))
	for sha := range named {
		shas = append(shas, sha)
	}
	slices.Sort(shas)
	for _, sha := range shas {
		if err := s.backupBlob(tw, sha); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	s.log.Info("backup written", "tx", txID, "db_bytes", size, "blobs", len(shas))
	return nil
}

func (s *Store) backupBlob(tw *tar.Writer, sha string) error {
	f, err := s.OpenBlob(sha)
	if err != nil {
		// A backup that silently lacks audio would restore into a store
		// whose Check fails; better to fail now, while the operator looks.
		return fmt.Errorf("blob %s: %w", sha, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("blob %s: %w", sha, err)
	}
	hdr := &tar.Header{Name: "blobs/" + sha[:2] + "/" + sha, Mode: 0o644, Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		return fmt.Errorf("blob %s: %w", sha, err)
	}
	return nil
}
