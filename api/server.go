// Package api is loaxa's HTTP face: the JSON API of docs/api.md for operators,
// auditors and scripts, audio downloads for devices, health and metrics.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/loaxa/loaxa/broadcast"
	"github.com/loaxa/loaxa/scheduler"
	"github.com/loaxa/loaxa/throttle"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Store is what the API reads and changes.
type Store interface {
	TokenByHash(hash string) (broadcast.Token, error)
	Tokens() ([]broadcast.Token, error)
	PutToken(ctx context.Context, t broadcast.Token, op *broadcast.OpEntry) error

	ImportUnitsWithin(ctx context.Context, units []broadcast.Unit, stations []broadcast.Station, within string, op *broadcast.OpEntry) (broadcast.ImportResult, error)
	Unit(code string) (broadcast.Unit, error)
	Units(parent string) ([]broadcast.Unit, error)
	Station(id string) (broadcast.Station, error)
	Stations(path string) ([]broadcast.Station, error)

	AddDevice(ctx context.Context, d broadcast.Device, op *broadcast.OpEntry) error
	Device(id string) (broadcast.Device, error)
	Devices(station string) ([]broadcast.Device, error)
	DisableDevice(ctx context.Context, id string, at time.Time, op *broadcast.OpEntry) error

	PutBlob(r io.Reader) (string, int64, error)
	OpenBlob(sha string) (*os.File, error)

	CreateProgramme(ctx context.Context, p broadcast.Programme, op *broadcast.OpEntry) error
	Programme(id string) (broadcast.Programme, error)
	Programmes(unitPath string, month broadcast.Month) ([]broadcast.Programme, error)
	UpdateProgramme(ctx context.Context, id string, fn func(*broadcast.Programme) error, op *broadcast.OpEntry) (broadcast.Programme, error)

	Airing(id string) (*broadcast.Airing, error)
	UpdateAiring(ctx context.Context, id string, fn func(*broadcast.Airing) error, op *broadcast.OpEntry) (*broadcast.Airing, error)
	QueryAirings(f broadcast.AiringFilter) ([]*broadcast.Airing, error)
	StationAirings(station string, from, to time.Time) ([]*broadcast.Airing, error)
	StationMonths(stations []string, months []broadcast.Month, fn func(station string, month broadcast.Month, summaries []broadcast.AiringSummary, enabledDevices int) error) error
	ProgrammeAirings(programme string) ([]*broadcast.Airing, error)

	AsRun(after uint64, fn func(broadcast.AsRunEntry) error) error
	AsRunHead() (uint64, broadcast.Hash, error)
	AsRunBase() (uint64, broadcast.Hash, error)
	// HashForms is where the logs switched to the second hash form.
	HashForms() (broadcast.HashForms, error)
	PurgeAsRun(ctx context.Context, upto uint64, uptoHash broadcast.Hash, op *broadcast.OpEntry) (broadcast.PurgeResult, error)
	OpsHead() (uint64, broadcast.Hash, error)
	Ops(after uint64, fn func(broadcast.OpEntry) error) error
	Backup(ctx context.Context, w io.Writer) error

	// For audit.VerifyRecords.
	RecordHashes(fn func(broadcast.RecordHash) error) error
	RecordHash(key string) (broadcast.Hash, bool, error)
	IndexProblems(fn func(record, problem string) error) error
	EachAiring(fn func(broadcast.AiringCheck) error) error
	AsRunEntriesAt(seqs []uint64) (map[uint64]broadcast.AsRunEntry, error)
}

// Planner plans an approved programme and learns of schedule edits.
type Planner interface {
	PlanProgramme(ctx context.Context, p broadcast.Programme, actor string) (scheduler.PlanResult, error)
	Emergency(ctx context.Context, p broadcast.Programme, actor string) (scheduler.EmergencyResult, error)
	Touch(stations ...string)
}

// Options configure the API.
type Options struct {
	Store         Store
	Planner       Planner
	Policy        broadcast.Policy
	Location      *time.Location // default time zone of stations
	Logger        *slog.Logger
	Gatherer      prometheus.Gatherer
	Registerer    prometheus.Registerer
	MetricsPublic bool
	Now           func() time.Time
	// Ready reports whether the daemon can do its job (storage open, broker
	// connected); nil means always.
	Ready func() error
	// DeviceDisabled is called after a device was disabled, so that its
	// open connection can be closed; nil does nothing.
	DeviceDisabled func(id string)
	// DevicesChanged is called after a device was added or disabled (after
	// DeviceDisabled), so that an external broker's password file and ACL
	// can follow; nil does nothing.
	DevicesChanged func()
	// MaxUpload bounds an audio upload; default 512 MiB.
	MaxUpload int64
	// TempDir is where uploads are spooled before they are checked; it
	// should be on the data directory's file system.
	TempDir string
	// Retention is how long evidence is kept before it may be purged;
	// default five years.
	Retention time.Duration
	// TokenMaxAge is the default and longest life of a token that is not
	// an admin's (tokens.max_age); 0 for none.
	TokenMaxAge time.Duration
	// TokenRevoked is called after a token was revoked or expired, so that
	// the console can end the sessions signed in with it; nil does nothing.
	TokenRevoked func(id string)
	// AuthFailures is how many failed authentications (bad tokens, wrong
	// device credentials) a client address may make before it must wait,
	// 1 s, then twice as long after each further failure, up to 5 min;
	// 0 means 10, negative turns the throttle off.
	AuthFailures int
	// ReservedDeviceIDs are ids a device may not take (compared without
	// regard to case): the daemon's MQTT user, its client id. Ids starting
	// with "$" (the brokers' system topics and users) are refused as well.
	ReservedDeviceIDs []string
}

// Server serves the API.
type Server struct {
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	patterns []string // the routes registered, in order

	tokens        tokenStore
	touching      sync.Map // token id → struct{}: its last use is being written
	authFails     *throttle.Backoff
	authFailures  *prometheus.CounterVec
	authThrottled prometheus.Counter
	deviceFetches prometheus.Counter
}

// New returns a Server; Handler gives its routes.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.Planner == nil {
		return nil, errors.New("api: Store and Planner are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Retention <= 0 {
		opts.Retention = 5 * 365 * 24 * time.Hour
	}
	if opts.MaxUpload <= 0 {
		opts.MaxUpload = 512 << 20
	}
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.NewRegistry()
	}
	ts, ok := opts.Store.(tokenStore)
	if !ok {
		return nil, errors.New("api: the Store must also have Token, DeleteToken and TouchToken")
	}
	if opts.AuthFailures == 0 {
		opts.AuthFailures = 10
	}
	s := &Server{
		opts: opts,
		log:  opts.Logger,
		mux:  http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loaxa_api_requests_total", Help: "HTTP requests by route pattern and status class.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "loaxa_api_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		tokens:    ts,
		authFails: throttle.New(opts.AuthFailures, time.Second, 5*time.Minute),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loaxa_api_auth_failures_total", Help: "Failed authentications over HTTP by reason: unknown_token, expired_token, bad_device.",
		}, []string{"reason"}),
		authThrottled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaxa_api_auth_throttled_total", Help: "Requests refused with 429 because their address failed to authenticate too often.",
		}),
		deviceFetches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaxa_api_device_audio_refused_total", Help: "Audio downloads refused to a device because no airing of its station plays that audio.",
		}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.requests, s.duration, s.authFailures, s.authThrottled, s.deviceFetches} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	s.routes()
	return s, nil
}

// Handler is the API's http.Handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Routes are the patterns the server registered ("GET /api/v1/me"), in
// order: docs/openapi.yaml describes each, and a test holds them together.
func (s *Server) Routes() []string { return slices.Clone(s.patterns) }

func (s *Server) routes() {
	s.handle("GET /healthz", s.healthz)
	s.handle("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", s.metrics())
	s.patterns = append(s.patterns, "GET /metrics")

	s.handle("GET /api/v1/me", s.auth(s.me, anyRole...))
	s.handle("POST /api/v1/tokens", s.auth(s.createToken, broadcast.RoleAdmin))
	s.handle("GET /api/v1/tokens", s.auth(s.listTokens, broadcast.RoleAdmin))
	s.handle("DELETE /api/v1/tokens/{id}", s.auth(s.revokeToken, broadcast.RoleAdmin))
	s.handle("POST /api/v1/units/import", s.auth(s.importUnits, broadcast.RoleAdmin))
	s.handle("GET /api/v1/units", s.auth(s.listUnits, anyRole...))
	s.handle("GET /api/v1/stations", s.auth(s.listStations, anyRole...))
	s.handle("GET /api/v1/stations/{id}", s.auth(s.getStation, anyRole...))
	s.handle("POST /api/v1/stations/{id}/devices", s.auth(s.addDevice, writers...))
	s.handle("DELETE /api/v1/devices/{id}", s.auth(s.disableDevice, writers...))

	s.handle("POST /api/v1/programmes", s.auth(s.uploadProgramme, writers...))
	s.handle("GET /api/v1/programmes", s.auth(s.listProgrammes, anyRole...))
	s.handle("GET /api/v1/programmes/{id}", s.auth(s.getProgramme, anyRole...))
	s.handle("POST /api/v1/programmes/{id}/approve", s.auth(s.approveProgramme, writers...))
	s.handle("POST /api/v1/programmes/{id}/withdraw", s.auth(s.withdrawProgramme, writers...))

	s.handle("GET /api/v1/airings", s.auth(s.listAirings, anyRole...))
	s.handle("GET /api/v1/airings/{id}", s.auth(s.getAiring, anyRole...))
	s.handle("PATCH /api/v1/airings/{id}", s.auth(s.moveAiring, writers...))
	s.handle("POST /api/v1/airings/{id}/cancel", s.auth(s.cancelAiring, writers...))

	s.handle("POST /api/v1/emergency", s.auth(s.emergency, writers...))

	s.handle("GET /api/v1/asrun", s.auth(s.asrun, anyRole...))
	s.handle("GET /api/v1/compliance", s.auth(s.compliance, anyRole...))
	s.handle("GET /api/v1/audit/verify", s.auth(s.verify, readers...))
	s.handle("GET /api/v1/audit/bundle", s.auth(s.bundle, readers...))
	s.handle("POST /api/v1/audit/seal", s.auth(s.seal, readers...))
	s.handle("GET /api/v1/audit/seals", s.auth(s.seals, readers...))
	s.handle("POST /api/v1/audit/purge", s.auth(s.purge, broadcast.RoleAdmin))
	s.handle("GET /api/v1/oplog", s.auth(s.oplog, readers...))
	s.handle("GET /api/v1/backup", s.auth(s.backup, broadcast.RoleAdmin))

	s.handle("GET /audio/{sha256}", s.audio)
	s.handle("HEAD /audio/{sha256}", s.audio)
	s.handle("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.error(w, r, broadcast.Errorf(broadcast.ENotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
}

var (
	anyRole = []broadcast.Role{broadcast.RoleAdmin, broadcast.RoleOperator, broadcast.RoleAuditor}
	writers = []broadcast.Role{broadcast.RoleAdmin, broadcast.RoleOperator}
	readers = []broadcast.Role{broadcast.RoleAdmin, broadcast.RoleAuditor}
)

// handle registers a route with request metrics labelled by its pattern,
// which is bounded, unlike paths that carry ids.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.patterns = append(s.patterns, pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h(rec, r)
		s.requests.WithLabelValues(pattern, http.StatusText(rec.status)).Inc()
		s.duration.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush lets streamed answers (as-run, backups) reach the client as they go.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) metrics() http.Handler {
	h := promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)})
	if s.opts.MetricsPublic {
		return h
	}
	return s.auth(func(w http.ResponseWriter, r *http.Request, _ broadcast.Token) { h.ServeHTTP(w, r) }, anyRole...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

var statusOf = map[string]int{
	broadcast.EInvalid:      http.StatusUnprocessableEntity,
	broadcast.EMalformed:    http.StatusBadRequest,
	broadcast.ENotFound:     http.StatusNotFound,
	broadcast.EConflict:     http.StatusConflict,
	broadcast.EUnauthorized: http.StatusUnauthorized,
	broadcast.EForbidden:    http.StatusForbidden,
	broadcast.ETooLarge:     http.StatusRequestEntityTooLarge,
	broadcast.EUnsupported:  http.StatusUnsupportedMediaType,
	broadcast.EUnavailable:  http.StatusServiceUnavailable,
	broadcast.EInternal:     http.StatusInternalServerError,
	broadcast.ERateLimited:  http.StatusTooManyRequests,
	broadcast.ENoSpace:      http.StatusInsufficientStorage,
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
	} `json:"error"`
}

// writeError answers with docs/api.md's error shape. Errors that are not ours to
// explain (a disk failure) are logged and reported as internal, without
// their details.
func (s *Server) error(w http.ResponseWriter, r *http.Request, err error) {
	var e *broadcast.Error
	var body errorBody
	if errors.As(err, &e) {
		body.Error.Code, body.Error.Message, body.Error.Field = e.Code, e.Message, e.Field
	} else {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			body.Error.Code, body.Error.Message = broadcast.ETooLarge, "the request body is larger than this endpoint takes"
		case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
			// Whatever was being written was abandoned (a spooled upload
			// and a temporary blob are removed, a bbolt transaction rolls
			// back); what was stored before is untouched.
			s.log.Error("disk full", "method", r.Method, "path", r.URL.Path, "err", err)
			body.Error.Code, body.Error.Message = broadcast.ENoSpace, "the daemon's disk is full: nothing of this request was kept; free space on the server (or ask its operator to) and try again"
		default:
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			body.Error.Code, body.Error.Message = broadcast.EInternal, "internal error; the daemon's log has the details"
		}
	}
	status := statusOf[body.Error.Code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="loaxa"`)
	}
	var th *throttledError
	if errors.As(err, &th) {
		w.Header().Set("Retry-After", strconv.FormatInt(retrySeconds(th.wait), 10))
	}
	writeJSON(w, status, body)
}

// decodeJSON reads a small JSON body strictly: unknown fields are refused so
// that a typo in a field name is an error, not a silent default.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return broadcast.Errorf(broadcast.EMalformed, "request body: %v", err)
	}
	// One JSON value and nothing after it but white space: a second
	// object (two requests glued together, or a smuggled override) is
	// refused rather than silently ignored.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return broadcast.Errorf(broadcast.EMalformed, "request body: data after the JSON value (at byte %d); send one JSON object", dec.InputOffset())
	}
	return nil
}
