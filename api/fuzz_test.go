package api

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"unicode/utf8"
)

// FuzzReadUpload: the programme upload's multipart reader, whatever the
// body and its Content-Type: it never panics, a refused upload leaves no
// spooled file, an accepted one has exactly one, of the size it reports,
// and fields are valid UTF-8 of at most 64 KiB.
func FuzzReadUpload(f *testing.F) {
	ok := "--B\r\nContent-Disposition: form-data; name=\"unit\"\r\n\r\n380\r\n" +
		"--B\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n\xff\xfb\x90\x00abc\r\n--B--\r\n"
	f.Add([]byte(ok), "multipart/form-data; boundary=B")
	f.Add([]byte(ok), "multipart/form-data")
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a\"\r\n\r\nx\r\n--B\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"b\"\r\n\r\ny\r\n--B--\r\n"), "multipart/form-data; boundary=B")
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n\xff\xfe\r\n--B--\r\n"), "multipart/form-data; boundary=B")
	f.Add([]byte("--B\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a\"\r\n\r\nx"), "multipart/form-data; boundary=B")
	f.Add([]byte(`{"unit":"380"}`), "application/json")
	f.Fuzz(func(t *testing.T, body []byte, ctype string) {
		dir := t.TempDir()
		s := &Server{opts: Options{MaxUpload: 256 << 10, TempDir: dir}, log: slog.New(slog.DiscardHandler)}
		r := httptest.NewRequest(http.MethodPost, "/api/v1/programmes", bytes.NewReader(body))
		r.Header.Set("Content-Type", ctype)
		u, err := s.readUpload(httptest.NewRecorder(), r, "audio")
		left, _ := os.ReadDir(dir)
		if err != nil {
			if len(left) != 0 {
				t.Fatalf("a refused upload (%v) left %d spooled files", err, len(left))
			}
			return
		}
		if len(left) != 1 || u.file == nil {
			t.Fatalf("an accepted upload has %d spooled files", len(left))
		}
		fi, err := u.file.Stat()
		if err != nil || fi.Size() != u.size {
			t.Fatalf("spooled %d bytes, reports %d (%v)", fi.Size(), u.size, err)
		}
		for k, v := range u.fields {
			if !utf8.ValidString(v) || len(v) > 64<<10 {
				t.Fatalf("field %q: %d bytes, valid UTF-8 %v", k, len(v), utf8.ValidString(v))
			}
		}
		u.close()
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("close left %d files", len(left))
		}
	})
}
