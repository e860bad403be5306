package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// ErrDamaged is wrapped by Open when the bbolt file is damaged (cut short,
// overwritten, not a bbolt file): the message names the file and says to
// restore the last backup.
var ErrDamaged = errors.New("the database file is damaged")

// damaged is the error Open returns for a damaged file at path.
func damaged(path, why string) error {
	return fmt.Errorf("open %s: %w (%s); restore the last backup: move this file aside, put the loaxa.db of the last backup "+
		"(the tar written by `loaxa backup` or GET /api/v1/backup) in its place, with the backup's blobs/, and start loaxad again", path, ErrDamaged, why)
}

// bbolt's meta page, as laid out on disk (go.etcd.io/bbolt/internal/common):
// a 16-byte page header, then magic, version, page size, flags (4 bytes
// each), the root bucket (root pgid, sequence), the freelist pgid, the high
// water mark pgid, the txid and an FNV-64a checksum of what precedes it.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	metaOff         = 16
	metaHWMOff      = metaOff + 16 + 16 + 8
	metaTxidOff     = metaHWMOff + 8
	metaChecksumOff = metaTxidOff + 8
	metaLen         = metaChecksumOff + 8
)

type boltMeta struct {
	pageSize       uint32
	root, freelist uint64
	hwm, txid      uint64
}

// noFreelist is the freelist pgid of a file whose freelist is not synced
// (Options.NoFreelistSync).
const noFreelist = ^uint64(0)

// parseMeta reads one meta page; ok is false when its magic, version or
// checksum is wrong.
func parseMeta(b []byte) (boltMeta, bool) {
	if len(b) < metaLen {
		return boltMeta{}, false
	}
	m := b[metaOff:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	_, _ = h.Write(b[metaOff:metaChecksumOff])
	if h.Sum64() != le.Uint64(b[metaChecksumOff:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		hwm: le.Uint64(b[metaHWMOff:]), txid: le.Uint64(b[metaTxidOff:])}, true
}

// checkFile looks at a bbolt file before bbolt does. bbolt trusts its meta
// page: on a file cut short (a copy that did not finish, a full disk during
// a restore) it maps pages past the end of the file and the process dies of
// SIGBUS in one of bbolt's own goroutines, with a stack trace and no word
// about the file, where no recover can catch it. Here the newest valid meta
// page's high water mark is compared with the file's size instead.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new store
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	return checkMeta(path, f, fi.Size())
}

// checkMeta is checkFile on the file's content r of size bytes.
func checkMeta(path string, r io.ReaderAt, size int64) error {
	if size == 0 {
		return nil // bbolt initialises an empty file
	}
	head := make([]byte, metaLen)
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("open %s: %w", path, err)
	}
	var best boltMeta
	found := false
	m0, ok0 := parseMeta(head)
	if ok0 {
		best, found = m0, true
	}
	// The second meta page is one page in; its size is the first's, or,
	// when the first is damaged, one of the sizes bbolt writes.
	sizes := []int64{4096, 8192, 16384, 65536}
	if ok0 {
		sizes = []int64{int64(m0.pageSize)}
	}
	for _, ps := range sizes {
		b := make([]byte, metaLen)
		if n, _ := r.ReadAt(b, ps); n < metaLen {
			continue
		}
		if m1, ok := parseMeta(b); ok && int64(m1.pageSize) == ps {
			if !found || m1.txid > best.txid {
				best = m1
			}
			found = true
			break
		}
	}
	switch {
	case !found:
		return damaged(path, fmt.Sprintf("neither of its two header pages is valid in its %d bytes: not a bbolt file, or overwritten", size))
	case best.pageSize == 0:
		return damaged(path, "its header gives a page size of 0")
	}
	if best.hwm > uint64(1<<62)/uint64(best.pageSize) {
		return damaged(path, fmt.Sprintf("its header (transaction %d) claims %d pages", best.txid, best.hwm))
	}
	if need := int64(best.hwm) * int64(best.pageSize); need > size {
		return damaged(path, fmt.Sprintf("cut short: it holds %d bytes but its header (transaction %d) says %d", size, best.txid, need))
	}
	// Every page bbolt starts from must be inside the file too.
	if best.root < 2 || best.root >= best.hwm || (best.freelist != noFreelist && (best.freelist < 2 || best.freelist >= best.hwm)) {
		return damaged(path, fmt.Sprintf("its header (transaction %d) points at pages %d and %d of %d", best.txid, best.root, best.freelist, best.hwm))
	}
	return nil
}

// guardOpen runs the rest of Open with faults turned into panics and panics
// into ErrDamaged: damage past the meta pages surfaces as a bad page bbolt
// panics on, or a read past the mapping, inside this goroutine.
func guardOpen(path string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			why := strings.TrimSpace(fmt.Sprint(p))
			err = damaged(path, "reading it failed: "+why)
		}
	}()
	return f()
}

// removeStaleTemps removes what a crash left in blobs/: temporary blobs of
// uploads that were cut short. Open holds the file lock, so no other loaxad
// is writing them.
func removeStaleTemps(dir string) ([]string, error) {
	left, err := filepath.Glob(filepath.Join(dir, "blobs", tempPrefix+"*"))
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, f := range left {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("remove stale temporary blob: %w", err)
		}
		removed = append(removed, f)
	}
	return removed, nil
}
