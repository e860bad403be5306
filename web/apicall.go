package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// apiError is the API's {"error": {"code","message","field"}} answer with
// its status, as the console shows it.
type apiError struct {
	Status     int
	RetryAfter string // seconds, with 429
	Code       string `json:"code"`
	Message    string `json:"message"`
	Field      string `json:"field"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("api %d %s: %s", e.Status, e.Code, e.Message)
}

// recorder is the ResponseWriter the API answers into: in-process, so the
// console pays no socket and no second authentication.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

// apiRequest builds a request to the API on behalf of the browser's request
// r, with token as its bearer.
func apiRequest(r *http.Request, token, method, path string, body io.Reader, contentType string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(r.Context(), method, path, body)
	if err != nil {
		return nil, fmt.Errorf("web: build api request %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	// The API's logs name the browser, not the console.
	req.RemoteAddr = r.RemoteAddr
	req.TLS = r.TLS
	return req, nil
}

// apiCall serves one API request and decodes its JSON answer into out; an
// error answer comes back as *apiError.
func (s *Server) apiCall(r *http.Request, token, method, path string, body io.Reader, contentType string, out any) error {
	req, err := apiRequest(r, token, method, path, body, contentType)
	if err != nil {
		return err
	}
	rec := newRecorder()
	s.opts.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status >= 400 {
		e := decodeAPIError(rec.status, rec.body.Bytes())
		e.RetryAfter = rec.header.Get("Retry-After")
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("web: decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

func decodeAPIError(status int, body []byte) *apiError {
	var e struct {
		Error apiError `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
		e.Error = apiError{Code: "internal", Message: strings.TrimSpace(string(body))}
	}
	e.Error.Status = status
	return &e.Error
}

// get reads JSON from the API as the session's token.
func (s *Server) get(r *http.Request, ss *session, path string, out any) error {
	return s.apiCall(r, ss.token, http.MethodGet, path, nil, "", out)
}

// send writes JSON (or nothing) to the API as the session's token.
func (s *Server) send(r *http.Request, ss *session, method, path string, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("web: encode %s %s: %w", method, path, err)
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	return s.apiCall(r, ss.token, method, path, body, ctype, out)
}

// streamWriter passes a successful API answer through to the browser as it
// is written (a file download, audio with Range) and holds back an error
// answer, so that the console can show it as a page.
type streamWriter struct {
	w      http.ResponseWriter
	header http.Header
	status int
	errBuf bytes.Buffer
}

// passHeaders are the API's headers a download keeps.
var passHeaders = []string{"Content-Type", "Content-Length", "Content-Disposition", "Content-Range",
	"Accept-Ranges", "ETag", "Last-Modified", "Cache-Control", "Content-Security-Policy", "X-Content-Type-Options"}

func (sw *streamWriter) Header() http.Header { return sw.header }
func (sw *streamWriter) WriteHeader(code int) {
	if sw.status != 0 {
		return
	}
	sw.status = code
	if code >= 400 {
		return
	}
	for _, h := range passHeaders {
		if v := sw.header.Get(h); v != "" {
			sw.w.Header().Set(h, v)
		}
	}
	sw.w.WriteHeader(code)
}
func (sw *streamWriter) Write(b []byte) (int, error) {
	if sw.status == 0 {
		sw.WriteHeader(http.StatusOK)
	}
	if sw.status >= 400 {
		return sw.errBuf.Write(b)
	}
	return sw.w.Write(b)
}
func (sw *streamWriter) Flush() {
	if f, ok := sw.w.(http.Flusher); ok && sw.status < 400 {
		f.Flush()
	}
}

// stream proxies a GET of the API to the browser, passing the conditional
// and Range headers through, so that the <audio> element can seek.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, ss *session, path string) {
	req, err := apiRequest(r, ss.token, r.Method, path, nil, "")
	if err != nil {
		s.fail(w, r, ss, err)
		return
	}
	for _, h := range []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	sw := &streamWriter{w: w, header: http.Header{}}
	s.opts.API.ServeHTTP(sw, req)
	if sw.status >= 400 {
		s.fail(w, r, ss, decodeAPIError(sw.status, sw.errBuf.Bytes()))
	}
}

// fail shows an error page with the API's status and words. An API that no
// longer knows the token (revoked) ends the session.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, ss *session, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		s.log.Error("console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &apiError{Status: http.StatusInternalServerError, Code: "internal"}
	}
	if ae.Status == http.StatusUnauthorized && ss != nil {
		s.sessions.drop(ss)
		setCookie(w, r, sessionCookie, "", -1)
		ss = nil
	}
	v := s.view(r, ss, "error.title")
	v.Error = v.apiWords(ae)
	if r.Header.Get("X-Requested-With") != "" {
		writeJSONError(w, ae.Status, ae.Code, v.Error, ae.Field)
		return
	}
	s.render(w, ae.Status, "error", v)
}

func writeJSONError(w http.ResponseWriter, status int, code, message, field string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message, "field": field}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
