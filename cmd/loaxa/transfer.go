package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// transferContext bounds a transfer by idleness rather than by its total
// time: a 200 MB programme over a commune's 3G link may take an hour and
// is fine as long as bytes move. The context is cancelled with errStalled
// once touch has not been called for --timeout.
func (c *cli) transferContext(ctx context.Context) (_ context.Context, touch, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	if c.timeout <= 0 {
		return ctx, func() {}, func() { cancel(nil) }
	}
	t := time.AfterFunc(c.timeout, func() { cancel(errStalled) })
	return ctx, func() { t.Reset(c.timeout) }, func() { t.Stop(); cancel(nil) }
}

type formField struct{ name, value string }

// errUploadOver unblocks the form writer once the daemon has answered.
var errUploadOver = errors.New("upload over")

// upload posts a multipart form whose file part is streamed from disk
// through a pipe: the file is never held in memory, whatever its size, and
// the progress bar counts bytes as the daemon takes them.
func (c *cli) upload(ctx context.Context, path string, fields []formField, fileField, file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("open the audio: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open the audio: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open the audio: %s is not a regular file", file)
	}
	ctx, touch, stop := c.transferContext(ctx)
	defer stop()
	name := filepath.Base(file)
	prog := newProgress(c.stderr, c.ttyErr, "uploading "+name, fi.Size(), touch)

	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	var writeErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		writeErr = writeForm(mw, fields, fileField, name, prog.reader(f))
		pw.CloseWithError(writeErr) // nil: the daemon reads EOF
	}()

	req, err := c.request(ctx, http.MethodPost, path, nil, pr)
	var body []byte
	if err == nil {
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Expect", "100-continue")
		body, err = c.readAll(req)
	}
	// The daemon may answer before it has read everything (a refusal);
	// closing the pipe's reading end ends the writer either way.
	pr.CloseWithError(errUploadOver)
	<-done
	prog.finish(err == nil)
	// Writing into the pipe fails only when the reading end was closed
	// (the daemon answered, or the transport gave up); any other error is
	// the file's, and the request failure it caused is only its echo.
	if writeErr != nil && !errors.Is(writeErr, errUploadOver) && !errors.Is(writeErr, io.ErrClosedPipe) {
		return nil, fmt.Errorf("read %s: %w", file, writeErr)
	}
	return body, err
}

func writeForm(mw *multipart.Writer, fields []formField, fileField, fileName string, r io.Reader) error {
	for _, f := range fields {
		if f.value == "" {
			continue // absent and empty mean the same to the daemon; older ones do not know every field
		}
		if err := mw.WriteField(f.name, f.value); err != nil {
			return err
		}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"; filename="%s"`, fileField, quoteEscaper.Replace(fileName)))
	h.Set("Content-Type", audioType(fileName))
	part, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := io.Copy(part, r); err != nil {
		return err
	}
	return mw.Close()
}

var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", "", "\n", "")

// audioType names the part's type from the extension; the daemon sniffs
// the content anyway and trusts only that.
func audioType(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".mp3":
		return "audio/mpeg"
	case ".wav":
		return "audio/wav"
	case ".ogg", ".opus":
		return "audio/ogg"
	case ".webm":
		return "audio/webm"
	}
	return "application/octet-stream"
}

// download saves a GET's answer to out ("-": stdout) with progress. A file
// is written under a temporary name beside out and renamed when complete,
// so that a cut-off bundle or backup never passes for a whole one.
func (c *cli) download(ctx context.Context, path string, q url.Values, out, label string, perm fs.FileMode) (int64, error) {
	ctx, touch, stop := c.transferContext(ctx)
	defer stop()
	req, err := c.request(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()

	tty := c.ttyErr
	var dst io.Writer
	var tmp *os.File
	if out == "-" {
		// A bar redrawn on the terminal that also shows the content would
		// garble both.
		tty = tty && !isTerminal(c.stdout)
		dst = c.stdout
	} else {
		dir, base := filepath.Split(out)
		if dir == "" {
			dir = "."
		}
		tmp, err = os.CreateTemp(dir, "."+base+".*.part")
		if err != nil {
			return 0, fmt.Errorf("write %s: %w", out, err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		dst = tmp
	}
	prog := newProgress(c.stderr, tty, label, resp.ContentLength, touch)
	w := &errWriter{w: dst}
	n, err := io.Copy(w, prog.reader(resp.Body))
	prog.finish(err == nil)
	switch {
	case err != nil && w.err != nil:
		return n, fmt.Errorf("write %s: %w", out, err)
	case err != nil:
		return n, c.transportError(req, fmt.Errorf("the download broke off after %s: %w", size(n), err))
	case tmp == nil:
		return n, nil
	}
	// Synced before the rename: after a power cut the file is either
	// complete or absent.
	if err := tmp.Chmod(perm); err != nil {
		return n, fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Sync(); err != nil {
		return n, fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return n, fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return n, fmt.Errorf("write %s: %w", out, err)
	}
	tmp = nil
	return n, nil
}

// errWriter remembers a write error, to tell a full disk (exit 1) from a
// broken connection (exit 6).
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	n, err := e.w.Write(b)
	if err != nil {
		e.err = err
	}
	return n, err
}
