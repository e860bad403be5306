package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// errChecksum marks a download whose bytes do not hash to the snapshot's
// sha256: reported as failed/checksum_mismatch, and fetched again later.
var errChecksum = errors.New("checksum mismatch")

// stallTimeout cancels a download that has received nothing for this long.
// It runs on real time: it is about the network, not the schedule.
const stallTimeout = 60 * time.Second

// fetchResult is what a download goroutine hands back to the agent's loop.
type fetchResult struct {
	sha    string
	size   int64
	err    error
	offset time.Duration // device clock minus the server's Date, if it sent one
	hasOff bool
}

// defaultHTTPClient bounds every step of a request but not the body: an
// audio file on a weak 4G link may take many minutes, and the stall timer
// handles a transfer that stops moving.
func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          2,
	}}
}

// fetcher downloads audio into the cache directory. Its fields are fixed at
// construction, so several goroutines may share it.
type fetcher struct {
	client *http.Client
	dir    string // data_dir/audio
	user   string
	pass   string
	now    func() time.Time
}

func (f *fetcher) finalPath(sha string) string { return filepath.Join(f.dir, sha) }
func (f *fetcher) partPath(sha string) string  { return filepath.Join(f.dir, sha+".part") }

// fetch downloads ref into dir/<sha256>, resuming a partial dir/<sha256>.part
// with Range. The file is fsync'd, hashed and renamed, and the directory
// fsync'd, before fetch reports success: the cache index that the agent then
// commits must never name a file that a power cut could take back.
func (f *fetcher) fetch(ctx context.Context, ref broadcast.AudioRef) (res fetchResult) {
	res.sha, res.size = ref.SHA256, ref.Size
	if !strings.HasPrefix(ref.URL, "http://") && !strings.HasPrefix(ref.URL, "https://") {
		res.err = fmt.Errorf("audio url %q is not http(s)", ref.URL)
		return res
	}
	part := f.partPath(ref.SHA256)
	var have int64
	if fi, err := os.Stat(part); err == nil {
		have = fi.Size()
	}
	if have > ref.Size {
		have = 0 // longer than the file can be: not ours to resume
	}
	if have < ref.Size {
		if err := f.download(ctx, ref, part, have, &res); err != nil {
			res.err = err
			return res
		}
	}
	sum, n, err := hashFile(part)
	if err != nil {
		res.err = err
		return res
	}
	if sum != ref.SHA256 || n != ref.Size {
		// Start again from nothing next time: resuming bad bytes cannot help.
		_ = os.Remove(part)
		if have > 0 {
			// A partial file from before a power cut may end in bytes that
			// never reached the disk; that is no evidence against the
			// daemon's file, so no checksum_mismatch until a whole download
			// fails to verify.
			res.err = fmt.Errorf("resumed download of %s does not verify; starting over", ref.SHA256)
			return res
		}
		res.err = fmt.Errorf("%w: got sha256 %s (%d bytes), want %s (%d bytes)", errChecksum, sum, n, ref.SHA256, ref.Size)
		return res
	}
	if err := os.Rename(part, f.finalPath(ref.SHA256)); err != nil {
		res.err = fmt.Errorf("store audio: %w", err)
		return res
	}
	if err := syncDir(f.dir); err != nil {
		res.err = fmt.Errorf("store audio: %w", err)
	}
	return res
}

func (f *fetcher) download(ctx context.Context, ref broadcast.AudioRef, part string, have int64, res *fetchResult) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref.URL, nil)
	if err != nil {
		return fmt.Errorf("audio request: %w", err)
	}
	req.SetBasicAuth(f.user, f.pass)
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		// If the daemon's file changed under the same URL, send it whole.
		req.Header.Set("If-Range", `"`+ref.SHA256+`"`)
	}
	asked := f.now()
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("download %s: %w", ref.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		// The Date header has whole seconds; take the request's midpoint.
		mid := asked.Add(f.now().Sub(asked) / 2)
		res.offset, res.hasOff = mid.Sub(d.Add(500*time.Millisecond)), true
	}
	flags := os.O_WRONLY | os.O_CREATE
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != have {
			_ = os.Remove(part)
			return fmt.Errorf("download %s: server resumed at %q, asked for byte %d", ref.URL, resp.Header.Get("Content-Range"), have)
		}
		flags |= os.O_APPEND
	case resp.StatusCode == http.StatusOK:
		have = 0
		flags |= os.O_TRUNC
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		_ = os.Remove(part)
		return fmt.Errorf("download %s: server refused to resume at byte %d", ref.URL, have)
	default:
		return fmt.Errorf("download %s: HTTP %s", ref.URL, resp.Status)
	}
	out, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", part, err)
	}
	// A transfer that stops moving is cut after stallTimeout; the next try
	// resumes from what was written.
	stall := time.AfterFunc(stallTimeout, func() { cancel(errors.New("download stalled")) })
	defer stall.Stop()
	body := &progressReader{r: io.LimitReader(resp.Body, ref.Size-have+1), onRead: func() { stall.Reset(stallTimeout) }}
	n, copyErr := io.Copy(out, body)
	syncErr := out.Sync()
	closeErr := out.Close()
	have += n
	switch {
	case have > ref.Size:
		_ = os.Remove(part)
		return fmt.Errorf("download %s: more than the announced %d bytes", ref.URL, ref.Size)
	case copyErr != nil:
		if cause := context.Cause(ctx); cause != nil {
			copyErr = cause
		}
		return fmt.Errorf("download %s: cut at byte %d: %w", ref.URL, have, copyErr)
	case syncErr != nil || closeErr != nil:
		return fmt.Errorf("write %s: %w", part, errors.Join(syncErr, closeErr))
	case have < ref.Size:
		return fmt.Errorf("download %s: ended at byte %d of %d", ref.URL, have, ref.Size)
	}
	return nil
}

// contentRangeStart parses "bytes 100-199/200".
func contentRangeStart(h string) (int64, bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil
}

type progressReader struct {
	r      io.Reader
	onRead func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.onRead()
	}
	return n, err
}

// hashFile returns the sha256 (lower-case hex) and size of a file.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("hash audio: %w", err)
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
