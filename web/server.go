// Package web is loaxa's web console: server-rendered pages for
// the officials who run commune radio from a desk or a phone.
//
// The console is a client of the API and nothing else. Every read and write
// is an *http.Request with the session's bearer token, served in-process by
// the API's http.Handler, so that every permission check, error and
// operations-log entry is the API's own; the console cannot grow a second
// path into storage (TestImports keeps it so).
package web

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the console.
type Options struct {
	// API is the API's handler; the console calls it in-process.
	API    http.Handler
	Logger *slog.Logger
	Now    func() time.Time
	// Location is the stations' time zone, in which dates are shown and
	// typed; default Asia/Ho_Chi_Minh.
	Location *time.Location
	// SessionIdle ends a session unused this long; default 12 h, a working
	// day at a commune office.
	SessionIdle time.Duration
	// PublicURL is http.public_url: where stations reach the daemon (the
	// daemon_url of the station config the console writes), and, when it
	// is https, the reason cookies are Secure behind a TLS-ending proxy.
	PublicURL string
	// Broker is the MQTT broker URL stations connect to, for the station
	// config; empty leaves the field for the operator to fill.
	Broker string
	// TopicRoot is mqtt.topic_root, for the station config; default loaxa/v1.
	TopicRoot string
	// TempDir holds emergency audio between its two confirmations; it
	// should be the data directory, whose stale files the daemon removes at
	// start. Default: the system's.
	TempDir string
}

// Server serves the console.
type Server struct {
	opts     Options
	log      *slog.Logger
	loc      *time.Location
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

// New returns the console; Handler gives its routes.
func New(opts Options) (*Server, error) {
	if opts.API == nil {
		return nil, errors.New("web: Options.API is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionIdle <= 0 {
		opts.SessionIdle = 12 * time.Hour
	}
	loc := opts.Location
	if loc == nil {
		var err error
		if loc, err = time.LoadLocation("Asia/Ho_Chi_Minh"); err != nil {
			// Vietnam has kept UTC+7 without daylight saving since 1975.
			loc = time.FixedZone("ICT", 7*3600)
		}
	}
	s := &Server{opts: opts, log: opts.Logger, loc: loc, mux: http.NewServeMux(),
		sessions: newSessions(opts.SessionIdle, opts.Now)}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// EndSessions signs out every browser signed in with the token id: the
// daemon calls it when the token is revoked or expires, so that a session
// does not outlive its token even between two of its requests.
func (s *Server) EndSessions(tokenID string) {
	if n := s.sessions.endToken(tokenID); n > 0 {
		s.log.Info("console sessions ended with their token", "token_id", tokenID, "sessions", n)
	}
}

// Handler serves every page of the console, with its security headers.
func (s *Server) Handler() http.Handler {
	h := securityHeaders(rememberLang(s.mux))
	if strings.HasPrefix(s.opts.PublicURL, "https://") {
		h = markSecure(h)
	}
	return h
}

// apiPrefixes are the paths that belong to the API, not to the console.
var apiPrefixes = []string{"/api/", "/audio/", "/healthz", "/readyz", "/metrics"}

// Mount is the daemon's top-level handler: the API's paths to api, the rest
// to the console.
func Mount(api, console http.Handler) http.Handler {
	mux := http.NewServeMux()
	for _, p := range apiPrefixes {
		mux.Handle(p, api)
	}
	mux.Handle("/", console)
	return mux
}

func (s *Server) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.FileServerFS(static)
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(files)))

	s.mux.HandleFunc("GET /login", s.loginForm)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("POST /logout", s.signedIn(s.logout))

	overview, overviewLive := s.livePage("overview.title", "overview", func(r *http.Request, ss *session) (any, error) { return s.overviewData(r, ss) })
	s.mux.HandleFunc("GET /{$}", s.signedIn(overview))
	s.mux.HandleFunc("GET /overview/live", s.signedIn(overviewLive))

	s.mux.HandleFunc("GET /programmes", s.signedIn(s.programmes))
	s.mux.HandleFunc("POST /programmes", s.signedInStream(s.uploadProgramme))
	s.mux.HandleFunc("GET /programmes/{id}", s.signedIn(s.programme))
	s.mux.HandleFunc("POST /programmes/{id}/approve", s.signedIn(s.programmeAction("approve")))
	s.mux.HandleFunc("POST /programmes/{id}/withdraw", s.signedIn(s.programmeAction("withdraw")))
	s.mux.HandleFunc("GET /media/{sha}", s.signedIn(s.media))

	s.mux.HandleFunc("GET /schedule", s.signedIn(s.schedule))
	s.mux.HandleFunc("GET /airings/{id}", s.signedIn(s.airing))
	s.mux.HandleFunc("POST /airings/{id}/move", s.signedIn(s.moveAiring))
	s.mux.HandleFunc("POST /airings/{id}/cancel", s.signedIn(s.cancelAiring))

	s.mux.HandleFunc("GET /stations", s.signedIn(s.units))
	s.mux.HandleFunc("GET /stations/{id}", s.signedIn(s.station))
	s.mux.HandleFunc("POST /stations/{id}/devices", s.signedIn(s.addDevice))
	s.mux.HandleFunc("POST /devices/{id}/disable", s.signedIn(s.disableDevice))

	s.mux.HandleFunc("GET /emergency", s.signedIn(s.emergencyForm))
	s.mux.HandleFunc("POST /emergency", s.signedInStream(s.emergencyPrepare))
	s.mux.HandleFunc("POST /emergency/confirm", s.signedIn(s.emergencyConfirm))
	s.mux.HandleFunc("GET /emergency/pending/audio", s.signedIn(s.emergencyPendingAudio))
	emergencyLive, emergencyLivePart := s.livePage("emergency.live.title", "emergency_live", s.emergencyLiveData)
	s.mux.HandleFunc("GET /emergency/live", s.signedIn(emergencyLive))
	s.mux.HandleFunc("GET /emergency/live/part", s.signedIn(emergencyLivePart))

	s.mux.HandleFunc("GET /reports", s.signedIn(s.reports))
	s.mux.HandleFunc("GET /reports/station", s.signedIn(s.reportStation))
	s.mux.HandleFunc("GET /reports/download", s.signedIn(s.reportDownload))
	s.mux.HandleFunc("GET /reports/bundle", s.signedIn(s.reportBundle))
	s.mux.HandleFunc("GET /reports/verify", s.signedIn(s.reportVerify))
	s.mux.HandleFunc("GET /reports/oplog", s.signedIn(s.reportOplog))

	s.mux.HandleFunc("GET /tokens", s.signedIn(s.tokens))
	s.mux.HandleFunc("POST /tokens/{id}/revoke", s.signedIn(s.revokeToken))

	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		v := s.view(r, nil, "notfound.title")
		v.Error = v.T("notfound.text")
		s.render(w, http.StatusNotFound, "error", v)
	})
}

// csp keeps every script, style, font and image on the daemon: no inline
// script (app.js is a file), nothing fetched from outside, no framing.
const csp = "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

func cacheStatic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An hour: short enough that a new release's CSS and JS arrive the
		// same morning, without versioned file names.
		w.Header().Set("Cache-Control", "public, max-age=3600")
		next.ServeHTTP(w, r)
	})
}

// render writes a page: the layout around the named page template.
func (s *Server) render(w http.ResponseWriter, status int, page string, v *view) {
	t, ok := s.pages[page]
	if !ok {
		s.log.Error("no such page template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		s.log.Error("render page", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Pages carry a session's data: never kept by a shared cache or the
	// back button of a signed-out browser.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprint(w, b.String())
}

// renderPart writes one template of a page without the layout: the parts
// that pages refresh by polling.
func (s *Server) renderPart(w http.ResponseWriter, page, part string, v *view) {
	var b strings.Builder
	if err := s.pages[page].ExecuteTemplate(&b, part, v); err != nil {
		s.log.Error("render part", "page", page, "part", part, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, b.String())
}

// pageNames are the page templates, each parsed with the layout.
var pageNames = []string{"login", "error", "overview", "programmes", "programme", "schedule", "airing",
	"units", "station", "device", "emergency", "emergency_confirm", "emergency_live", "reports",
	"report_station", "verify", "oplog", "tokens"}

func (s *Server) parseTemplates() error {
	s.pages = map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(s.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("web: parse template %s: %w", name, err)
		}
		s.pages[name] = t
	}
	return nil
}
