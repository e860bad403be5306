package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// apiError is the daemon's refusal, docs/api.md's
// {"error": {"code", "message", "field"}} with the HTTP status.
type apiError struct {
	Status  int
	Code    string
	Message string
	Field   string
}

func (e *apiError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s (field %s)", e.Message, e.Field)
	}
	return e.Message
}

func (e *apiError) exitCode() int {
	switch {
	case e.Status == http.StatusUnauthorized, e.Status == http.StatusForbidden:
		return exitAuth
	case e.Status == http.StatusNotFound:
		return exitNotFound
	case e.Status == http.StatusConflict:
		return exitConflict
	case e.Status >= 500:
		return exitUnavailable
	}
	return exitFailure
}

// unavailableError is a daemon that cannot be reached or did not answer in
// time: worth retrying later, unlike a refusal.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

// verifyFailed is evidence that does not check out: exit 7, after the
// problems have been printed.
type verifyFailed struct{ problems int }

func (e *verifyFailed) Error() string {
	return fmt.Sprintf("verification found %d problem(s)", e.problems)
}

// unsealedError is a bundle that checks out but whose period is not
// (wholly) sealed, under --require-sealed: exit 8.
type unsealedError struct{ months []string }

func (e *unsealedError) Error() string {
	return fmt.Sprintf("the bundle is not sealed: no seal of %s (--require-sealed)", strings.Join(e.months, ", "))
}

// errStalled cancels a transfer that made no progress for --timeout.
var errStalled = errors.New("no progress")

func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// With "Expect: 100-continue" the daemon refuses a bad token or a
	// forbidden unit before a 100 MB upload has crossed a commune's link.
	t.ExpectContinueTimeout = 2 * time.Second
	return &http.Client{
		Transport: t,
		// A redirect would drop the Authorization header or replay an
		// upload; the daemon never redirects its API, so say so instead.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return fmt.Errorf("the daemon redirected to %s; give --url the address it redirects to", req.URL.Redacted())
		},
	}
}

// baseURL accepts "host:port", a full URL, with or without a trailing
// slash or /api/v1, and returns scheme://host[/prefix] without a slash.
func baseURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", usagef("--url is empty; give the daemon's address, e.g. %s", defaultURL)
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", usagef("--url %q is not an http(s) address like %s", raw, defaultURL)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v1")
	u.RawQuery, u.Fragment = "", ""
	return strings.TrimSuffix(u.String(), "/"), nil
}

// request builds a request to the daemon with the token.
func (c *cli) request(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	if err := c.connect(); err != nil {
		return nil, err
	}
	u := c.url + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("User-Agent", "loaxa/"+version)
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// send performs req and returns a response with a 2xx status; any other
// status becomes an *apiError, a failure to reach the daemon an
// *unavailableError.
func (c *cli) send(req *http.Request) (*http.Response, error) {
	if c.token == "" {
		// Asking anyway would only earn a 401, after uploading the file.
		return nil, &apiError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "no token: give --token or --token-file, or set LOAXA_TOKEN"}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, c.transportError(req, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readAPIError(resp, req)
}

// transportError explains a request that got no answer.
func (c *cli) transportError(req *http.Request, err error) error {
	ctx := req.Context()
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errStalled):
		return &unavailableError{fmt.Errorf("%s %s: the transfer made no progress for %v (--timeout)", req.Method, req.URL.Path, c.timeout)}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &unavailableError{fmt.Errorf("%s %s: no answer from %s within %v (--timeout)", req.Method, req.URL.Path, c.url, c.timeout)}
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%s %s: interrupted", req.Method, req.URL.Path)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the method and URL
	}
	return &unavailableError{fmt.Errorf("cannot reach the daemon at %s: %w (is loaxad running? check --url or LOAXA_URL)", c.url, err)}
}

// readAPIError decodes docs/api.md's error body; a proxy's HTML page or an
// empty body still yields a sentence and the right exit code.
func readAPIError(resp *http.Response, req *http.Request) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	e := &apiError{Status: resp.StatusCode}
	if json.Unmarshal(b, &body) == nil && body.Error.Message != "" {
		e.Code, e.Message, e.Field = body.Error.Code, body.Error.Message, body.Error.Field
		if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(e.Message, "no such endpoint") {
			e.Message += " (this daemon is older than this client: upgrade loaxad)"
		}
		return e
	}
	e.Message = fmt.Sprintf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
	if line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n"); line != "" {
		e.Message += ": " + truncate(sanitize(line), 200)
	}
	return e
}

// callJSON sends a JSON request (in may be nil) and returns the answer's
// body, bounded by --timeout.
func (c *cli) callJSON(ctx context.Context, method, path string, q url.Values, in any) ([]byte, error) {
	ctx, cancel := c.deadline(ctx)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.request(ctx, method, path, q, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.readAll(req)
}

// readAll sends req and reads the whole answer.
func (c *cli) readAll(req *http.Request) ([]byte, error) {
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, c.transportError(req, err)
	}
	return b, nil
}

// get is callJSON for a GET that decodes into v and also returns the raw
// body, which -o json prints as the daemon sent it.
func (c *cli) get(ctx context.Context, path string, q url.Values, v any) ([]byte, error) {
	b, err := c.callJSON(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return nil, err
	}
	return b, decode(b, v, path)
}

func decode(b []byte, v any, what string) error {
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read the daemon's answer to %s: %w", what, err)
	}
	return nil
}

// query builds url.Values from pairs, leaving out empty values.
func query(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}
