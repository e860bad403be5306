package storage

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// closedStore makes a real store with some records and returns its file.
func closedStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, DBFile)
}

func TestOpenRefusesADamagedFile(t *testing.T) {
	for name, damage := range map[string]func(path string, b []byte) error{
		"cut in half":     func(p string, b []byte) error { return os.Truncate(p, int64(len(b)/2)) },
		"cut to one page": func(p string, b []byte) error { return os.Truncate(p, 4096) },
		"overwritten":     func(p string, b []byte) error { return os.WriteFile(p, bytes.Repeat([]byte("x"), len(b)), 0o600) },
		"both metas wiped": func(p string, b []byte) error {
			copy(b[:2*4096], make([]byte, 2*4096))
			return os.WriteFile(p, b, 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := closedStore(t)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := damage(path, b); err != nil {
				t.Fatal(err)
			}
			s, err := Open(filepath.Dir(path), Options{})
			if err == nil {
				s.Close()
				t.Fatal("a damaged file opened")
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "restore the last backup") {
				t.Fatalf("the error does not name the file and the remedy: %v", err)
			}
		})
	}
	// One bad meta page is what bbolt recovers from by itself (a torn
	// write of the last commit): the other is used.
	path := closedStore(t)
	b, _ := os.ReadFile(path)
	m0, _ := parseMeta(b)
	m1, _ := parseMeta(b[m0.pageSize:])
	newest := int64(0)
	if m1.txid > m0.txid {
		newest = int64(m0.pageSize)
	}
	copy(b[newest+metaOff:], "torn")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(filepath.Dir(path), Options{})
	if err != nil {
		t.Fatalf("one torn meta page: %v", err)
	}
	s.Close()
}

func TestOpenRemovesStaleTemporaryBlobs(t *testing.T) {
	dir := filepath.Dir(closedStore(t))
	stale := filepath.Join(dir, "blobs", tempPrefix+"123")
	if err := os.WriteFile(stale, []byte("cut short"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("the temporary blob a crash left is still there: %v", err)
	}
}

// sparse is a file of size bytes that starts with head and is zeros after:
// the two meta pages are all the check reads, so the fuzzer mutates them
// and the size apart (a whole file as input would spend its time copying).
type sparse struct {
	head []byte
	size int64
}

func (s sparse) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= s.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), s.size-off))
	clear(p[:n])
	if off < int64(len(s.head)) {
		copy(p[:n], s.head[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzCheckFile: whatever the file holds (someone with the file, a disk
// that returned garbage) and however long it is, the check before bbolt
// never panics, and a file it passes has a meta page whose pages are all
// inside it.
func FuzzCheckFile(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		f.Fatal(err)
	}
	s.Close()
	good, err := os.ReadFile(filepath.Join(dir, DBFile))
	if err != nil {
		f.Fatal(err)
	}
	head := good[:2*4096]
	f.Add(head, int64(len(good)))
	f.Add(head, int64(len(good)/2))
	f.Add(head[:4096], int64(4096))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, head []byte, size int64) {
		if size < int64(len(head)) {
			size = int64(len(head))
		}
		r := sparse{head, size}
		if err := checkMeta("loaxa.db", r, size); err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("not ErrDamaged: %v", err)
			}
			return
		}
		if size == 0 {
			return
		}
		// The meta page bbolt will use: the valid one with the higher txid.
		page := func(off int64) (boltMeta, bool) {
			b := make([]byte, metaLen)
			if n, _ := r.ReadAt(b, off); n < metaLen {
				return boltMeta{}, false
			}
			return parseMeta(b)
		}
		best, found := page(0)
		for _, ps := range []int64{4096, 8192, 16384, 65536} {
			if found && ps != int64(best.pageSize) {
				continue
			}
			if m1, ok := page(ps); ok && int64(m1.pageSize) == ps {
				if !found || m1.txid > best.txid {
					best = m1
				}
				found = true
				break
			}
		}
		if !found {
			t.Fatal("passed a file with no valid meta page")
		}
		if int64(best.hwm)*int64(best.pageSize) > size || best.root >= best.hwm {
			t.Fatalf("passed a file of %d bytes whose meta says %d pages of %d, root %d", size, best.hwm, best.pageSize, best.root)
		}
	})
}
