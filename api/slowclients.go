package api

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SlowClients cuts connections whose client sends or reads too slowly.
// http.Server's own ReadTimeout and WriteTimeout cover the whole request,
// which would cut a 300 MB upload over a commune's line or a device's
// download of a long programme; these bounds are per route and on progress:
//
//   - a request's body must be in within ReadTimeout, except on the upload
//     routes, which get UploadTimeout, but whose body must keep coming at
//     MinBodyRate bytes a second on average once ReadTimeout is over (a
//     slow-loris POST of a byte every 5 s is cut after ReadTimeout);
//   - every write of an answer must be taken by the client within
//     WriteTimeout (the deadline moves with each write, so a long download
//     that keeps going is never cut, and a long computation before the
//     first byte is not either).
type SlowClients struct {
	ReadTimeout, WriteTimeout, UploadTimeout time.Duration
	MinBodyRate                              int64 // bytes a second
	// Uploads are the routes, "METHOD /path", that take large bodies.
	Uploads    []string
	Logger     *slog.Logger
	Registerer prometheus.Registerer

	cut *prometheus.CounterVec
}

// Wrap returns next behind the bounds; it registers the metric
// loaxa_http_slow_clients_total{kind="read_timeout|min_rate|write_timeout"}.
func (sc *SlowClients) Wrap(next http.Handler) (http.Handler, error) {
	if sc.Logger == nil {
		sc.Logger = slog.New(slog.DiscardHandler)
	}
	sc.cut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loaxa_http_slow_clients_total",
		Help: "HTTP connections cut because the client sent its body too slowly (read_timeout, min_rate) or did not take the answer (write_timeout).",
	}, []string{"kind"})
	if sc.Registerer != nil {
		if err := sc.Registerer.Register(sc.cut); err != nil {
			return nil, err
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		start := time.Now()
		// A keep-alive connection keeps the write deadline of the last
		// request's last write; this request starts with none.
		_ = rc.SetWriteDeadline(time.Time{})
		if r.Body != nil && r.Body != http.NoBody {
			limit := sc.ReadTimeout
			upload := slices.Contains(sc.Uploads, r.Method+" "+r.URL.Path)
			if upload {
				limit = sc.UploadTimeout
			}
			b := &rateBody{sc: sc, rc: rc, body: r.Body, start: start, end: start.Add(limit), upload: upload, remote: r.RemoteAddr}
			if b.arm() == nil {
				r.Body = b
			}
		}
		next.ServeHTTP(&writeGuard{ResponseWriter: w, rc: rc, sc: sc, remote: r.RemoteAddr}, r)
	}), nil
}

// rateBody sets the connection's read deadline before each read of the
// body: the earlier of the route's end and the moment the bytes read so far
// fall below the minimum rate.
type rateBody struct {
	sc         *SlowClients
	rc         *http.ResponseController
	body       io.ReadCloser
	start, end time.Time
	upload     bool
	n          int64
	remote     string
	done       bool
}

func (b *rateBody) deadline() time.Time {
	if !b.upload || b.sc.MinBodyRate <= 0 {
		return b.end
	}
	// n bytes are owed by start + ReadTimeout + n/rate.
	owed := b.start.Add(b.sc.ReadTimeout + time.Duration(float64(b.n)/float64(b.sc.MinBodyRate)*float64(time.Second)))
	if owed.Before(b.end) {
		return owed
	}
	return b.end
}

func (b *rateBody) arm() error { return b.rc.SetReadDeadline(b.deadline()) }

func (b *rateBody) Read(p []byte) (int, error) {
	if !b.done {
		_ = b.arm()
	}
	n, err := b.body.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF && !b.done:
		// The body is in: what the handler does next (a long check of an
		// upload) is not bounded by the client's pace.
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && isTimeout(err):
		kind := "read_timeout"
		if b.upload && time.Now().Before(b.end) {
			kind = "min_rate"
		}
		b.sc.cut.WithLabelValues(kind).Inc()
		b.sc.Logger.Info("cut a client that sent its request body too slowly", "remote", b.remote, "kind", kind, "bytes", b.n, "after", time.Since(b.start).Round(time.Millisecond))
	}
	return n, err
}

func (b *rateBody) Close() error { return b.body.Close() }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// writeGuard moves the connection's write deadline before each write.
type writeGuard struct {
	http.ResponseWriter
	rc     *http.ResponseController
	sc     *SlowClients
	remote string
	cut    bool
}

func (g *writeGuard) arm() { _ = g.rc.SetWriteDeadline(time.Now().Add(g.sc.WriteTimeout)) }

func (g *writeGuard) Write(p []byte) (int, error) {
	g.arm()
	n, err := g.ResponseWriter.Write(p)
	if err != nil && isTimeout(err) && !g.cut {
		g.cut = true
		g.sc.cut.WithLabelValues("write_timeout").Inc()
		g.sc.Logger.Info("cut a client that did not take its answer", "remote", g.remote)
	}
	return n, err
}

func (g *writeGuard) WriteHeader(code int) { g.arm(); g.ResponseWriter.WriteHeader(code) }

func (g *writeGuard) Flush() {
	g.arm()
	_ = g.rc.Flush()
}

func (g *writeGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }
