package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	sessionCookie    = "loaxa_session"
	loginCSRFCookie  = "loaxa_login_csrf"
	langCookie       = "loaxa_lang"
	csrfField        = "csrf"
	csrfHeader       = "X-CSRF-Token"
	maxSessions      = 10000 // a province's officials many times over; bounds memory against a sign-in flood
	pendingAudioLife = 15 * time.Minute
)

// me is who a session's token is, as GET /api/v1/me answers.
type me struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	Unit     string `json:"unit"`
	UnitPath string `json:"unit_path"`
	UnitName string `json:"unit_name"`
}

// session is a signed-in browser. It holds the API token in memory only:
// the cookie carries a random id, so a stolen cookie dies with the daemon or
// the idle timeout, and the token never reaches the browser.
type session struct {
	key   string // sha256 of the cookie's id
	token string
	me    me
	csrf  string

	mu       sync.Mutex
	lastUsed time.Time
	flash    string
	pending  *pendingEmergency
}

func (ss *session) takeFlash() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f := ss.flash
	ss.flash = ""
	return f
}

func (ss *session) setFlash(f string) {
	ss.mu.Lock()
	ss.flash = f
	ss.mu.Unlock()
}

func (ss *session) dropPending() {
	ss.mu.Lock()
	p := ss.pending
	ss.pending = nil
	ss.mu.Unlock()
	p.remove()
}

type sessions struct {
	mu   sync.Mutex
	m    map[string]*session
	idle time.Duration
	now  func() time.Time
}

func newSessions(idle time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, idle: idle, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// key is what the map is indexed by: a hash, so that a lookup's timing says
// nothing about the ids it holds.
func key(id string) string {
	h := sha256.Sum256([]byte(id))
	return string(h[:])
}

// create starts a session and returns its cookie value.
func (s *sessions) create(token string, who me) (string, *session) {
	id := randomToken()
	ss := &session{key: key(id), token: token, me: who, csrf: randomToken(), lastUsed: s.now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
	if len(s.m) >= maxSessions {
		// Drop the least recently used rather than refuse a sign-in.
		var oldest *session
		for _, o := range s.m {
			if oldest == nil || o.lastUsed.Before(oldest.lastUsed) {
				oldest = o
			}
		}
		s.dropLocked(oldest)
	}
	s.m[ss.key] = ss
	return id, ss
}

// get returns a live session and marks it used.
func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[key(id)]
	if ss == nil {
		return nil
	}
	ss.mu.Lock()
	expired := now.Sub(ss.lastUsed) > s.idle
	if !expired {
		ss.lastUsed = now
	}
	ss.mu.Unlock()
	if expired {
		s.dropLocked(ss)
		return nil
	}
	return ss
}

// endToken ends every session signed in with the token id (revoked or
// expired) and returns how many.
func (s *sessions) endToken(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ss := range s.m {
		if ss.me.ID == id {
			s.dropLocked(ss)
			n++
		}
	}
	return n
}

func (s *sessions) drop(ss *session) {
	s.mu.Lock()
	s.dropLocked(ss)
	s.mu.Unlock()
}

func (s *sessions) dropLocked(ss *session) {
	if ss == nil {
		return
	}
	delete(s.m, ss.key)
	ss.dropPending()
}

// sweepLocked ends idle sessions; run at each sign-in, so that memory is
// bounded without a goroutine to stop.
func (s *sessions) sweepLocked() {
	now := s.now()
	for _, ss := range s.m {
		ss.mu.Lock()
		idle := now.Sub(ss.lastUsed) > s.idle
		stale := ss.pending != nil && now.Sub(ss.pending.at) > pendingAudioLife
		ss.mu.Unlock()
		switch {
		case idle:
			s.dropLocked(ss)
		case stale:
			ss.dropPending()
		}
	}
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// setCookie sets a console cookie: HttpOnly, SameSite=Strict (a link from
// another site arrives signed out), Secure when the browser reaches the
// console over TLS (secureRequest).
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secureRequest(r), MaxAge: maxAge})
}

type secureKey struct{}

// secureRequest reports whether the browser reached the console over TLS:
// the connection is TLS, or http.public_url is https (TLS ended at a proxy
// in front, which the daemon then sees as plain HTTP).
func secureRequest(r *http.Request) bool {
	on, _ := r.Context().Value(secureKey{}).(bool)
	return on || r.TLS != nil
}

// markSecure tells secureRequest that every request arrived over TLS.
func markSecure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), secureKey{}, true)))
	})
}

// handler is a console page that needs a signed-in session.
type handler func(w http.ResponseWriter, r *http.Request, ss *session)

// signedIn admits requests of a live session, sends others to the sign-in
// page, and checks the CSRF token of every request that may change
// something (any method but GET and HEAD, whatever its content type) before
// the handler runs.
func (s *Server) signedIn(h handler) http.HandlerFunc {
	return s.session(h, false)
}

// signedInStream is signedIn for the two upload forms, which stream a
// multipart body too large to parse before the handler: the CSRF token
// comes in the X-CSRF-Token header or as the form's first field, and the
// handler (copyParts, readEmergency) refuses every part before it.
func (s *Server) signedInStream(h handler) http.HandlerFunc {
	return s.session(h, true)
}

func (s *Server) session(h handler, streams bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ss *session
		if c, err := r.Cookie(sessionCookie); err == nil {
			ss = s.sessions.get(c.Value)
		}
		if ss == nil {
			if r.Method != http.MethodGet || r.Header.Get("X-Requested-With") != "" {
				s.refuse(w, r, nil, http.StatusUnauthorized, "login.expired")
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			switch {
			case streams && isMultipart(r):
				// Checked by the handler as it streams.
			default:
				// Forms are small; a multipart one is parsed whole here,
				// so its csrf field counts like a urlencoded one's.
				r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
				if !sameToken(csrfOf(r), ss.csrf) {
					s.refuse(w, r, ss, http.StatusForbidden, "csrf.refused")
					return
				}
			}
		}
		h(w, r, ss)
	}
}

// maxFormBody bounds the forms that are not uploads.
const maxFormBody = 1 << 20

func isMultipart(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "multipart/form-data"
}

func csrfOf(r *http.Request) string {
	if t := r.Header.Get(csrfHeader); t != "" {
		return t
	}
	return r.PostFormValue(csrfField)
}

// refuse answers with an error page (or a JSON error for scripts).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, ss *session, status int, msgKey string) {
	v := s.view(r, ss, "error.title")
	v.Error = v.T(msgKey)
	if r.Header.Get("X-Requested-With") != "" {
		writeJSONError(w, status, "", v.Error, "")
		return
	}
	s.render(w, status, "error", v)
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	v := s.view(r, nil, "login.title")
	v.CSRF = s.loginCSRF(w, r)
	v.Data = map[string]string{"Next": safeNext(r.URL.Query().Get("next"))}
	s.render(w, http.StatusOK, "login", v)
}

// loginCSRF is the double-submit token of the sign-in form: there is no
// session yet, so the form's hidden field must match a cookie that another
// site can neither read nor set.
func (s *Server) loginCSRF(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(loginCSRFCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	t := randomToken()
	setCookie(w, r, loginCSRFCookie, t, 0)
	return t
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || !sameToken(r.PostFormValue(csrfField), c.Value) {
		s.refuse(w, r, nil, http.StatusForbidden, "csrf.refused")
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	again := func(status int, msgKey string) {
		v := s.view(r, nil, "login.title")
		v.CSRF = c.Value
		v.Fields = map[string]string{"token": v.T(msgKey)}
		v.Data = map[string]string{"Next": next}
		s.render(w, status, "login", v)
	}
	if token == "" {
		again(http.StatusUnprocessableEntity, "login.empty")
		return
	}
	var who me
	err = s.apiCall(r, token, http.MethodGet, "/api/v1/me", nil, "", &who)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		again(http.StatusUnauthorized, "login.bad")
		return
	case errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests:
		// The API throttles the address after too many failed sign-ins
		// (and logs each failure, without the token).
		secs, _ := strconv.Atoi(ae.RetryAfter)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		v := s.view(r, nil, "login.title")
		v.CSRF = c.Value
		v.Fields = map[string]string{"token": v.T("login.throttled", secs)}
		v.Data = map[string]string{"Next": next}
		s.render(w, http.StatusTooManyRequests, "login", v)
		return
	case err != nil:
		s.fail(w, r, nil, err)
		return
	}
	id, _ := s.sessions.create(token, who)
	setCookie(w, r, sessionCookie, id, 0)
	setCookie(w, r, loginCSRFCookie, "", -1)
	s.log.Info("console sign-in", "token_id", who.ID, "role", who.Role, "unit", who.Unit)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// safeNext keeps a post-sign-in redirect on this site: a path (one slash,
// then not another slash or a backslash, which browsers read as a second
// slash) with no control character anywhere (browsers drop tabs and
// newlines from URLs, so "/\t/evil.example" would become "//evil.example")
// and no scheme or host once parsed. Anything else goes to the overview.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || len(next) > 2048 {
		return "/"
	}
	for _, c := range next {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == '\\' {
			return "/"
		}
	}
	if strings.HasPrefix(next, "//") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return next
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	s.sessions.drop(ss)
	setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// pendingEmergency is an emergency broadcast between its two
// confirmations: the audio waits in a temporary file.
type pendingEmergency struct {
	at       time.Time
	title    string
	units    []string
	chosen   []unit // the units with their names, for the confirmation page
	file     string
	filename string
	ctype    string
	size     int64
}

func (p *pendingEmergency) remove() {
	if p != nil && p.file != "" {
		os.Remove(p.file)
	}
}
