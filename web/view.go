package web

import (
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// view is what every page template gets.
type view struct {
	Lang    string
	TitleK  string // message key of the page's title
	Me      *me
	CSRF    string
	Path    string // the page's path, for the navigation
	LangURL string // this page in the other language
	Flash   string
	Error   string            // a message for the whole form or page
	Fields  map[string]string // messages next to fields, by field name
	Form    map[string]string // what the user typed, to show again
	Data    any

	cat map[string]string
}

// view starts a page's data for request r.
func (s *Server) view(r *http.Request, ss *session, titleKey string) *view {
	lang := langOf(r)
	v := &view{Lang: lang, TitleK: titleKey, Path: r.URL.Path, cat: catalogue[lang],
		Fields: map[string]string{}, Form: map[string]string{}}
	other := "en"
	if lang == "en" {
		other = "vi"
	}
	q := r.URL.Query()
	q.Set("lang", other)
	v.LangURL = r.URL.Path + "?" + q.Encode()
	if r.Method != http.MethodGet {
		v.LangURL = r.URL.Path + "?lang=" + other
	}
	if ss != nil {
		who := ss.me
		v.Me, v.CSRF = &who, ss.csrf
		v.Flash = ss.takeFlash()
	}
	return v
}

// langOf is the request's language: ?lang= (remembered by remember),
// then the cookie, then Vietnamese.
func langOf(r *http.Request) string {
	if l := r.URL.Query().Get("lang"); l == "vi" || l == "en" {
		return l
	}
	if c, err := r.Cookie(langCookie); err == nil && (c.Value == "vi" || c.Value == "en") {
		return c.Value
	}
	return "vi"
}

// rememberLang stores a ?lang= choice in a cookie for a year.
func rememberLang(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l := r.URL.Query().Get("lang"); l == "vi" || l == "en" {
			http.SetCookie(w, &http.Cookie{Name: langCookie, Value: l, Path: "/", MaxAge: 365 * 24 * 3600,
				SameSite: http.SameSiteLaxMode, Secure: secureRequest(r), HttpOnly: true})
		}
		next.ServeHTTP(w, r)
	})
}

// T is the message of key in the page's language, formatted with args. A
// key missing from the catalogue shows as ⟦key⟧, which the tests look for.
func (v *view) T(key string, args ...any) string {
	m, ok := v.cat[key]
	if !ok {
		return "⟦" + key + "⟧"
	}
	if len(args) > 0 {
		return fmt.Sprintf(m, args...)
	}
	return m
}

// Has reports whether the catalogue has key, for values that may have no
// translation (an API status the console does not know yet).
func (v *view) Has(key string) bool { _, ok := v.cat[key]; return ok }

// Word translates an enumerated value (a status, a role) by its key
// prefix, falling back to the value itself.
func (v *view) Word(prefix, value string) string {
	if m, ok := v.cat[prefix+"."+value]; ok {
		return m
	}
	return value
}

// apiWords says an API error in the page's language: what kind of refusal
// it is, then the API's own explanation.
func (v *view) apiWords(e *apiError) string {
	lead := v.Word("apierr", e.Code)
	if e.Code == "" || lead == e.Code {
		lead = v.T("apierr.other")
	}
	if e.Message == "" {
		return lead
	}
	return lead + " " + e.Message
}

// fieldError puts an API error next to its field when it names one, and
// on the form otherwise.
func (v *view) fieldError(err error) {
	e, ok := err.(*apiError)
	if !ok {
		v.Error = v.T("apierr.internal")
		return
	}
	if e.Field != "" {
		v.Fields[e.Field] = v.apiWords(e)
		return
	}
	v.Error = v.apiWords(e)
}

// FieldErr is the message box next to a form field: always present
// (app.js fills it after an upload), hidden while empty, and named by the
// field's aria-describedby.
func (v *view) FieldErr(field string) template.HTML {
	msg := v.Fields[field]
	hidden := ""
	if msg == "" {
		hidden = " hidden"
	}
	return template.HTML(`<p class="field-error" id="err-` + html.EscapeString(field) + `"` + hidden + `>` + html.EscapeString(msg) + `</p>`)
}

// CanWrite: admins and operators change things; auditors only read.
func (v *view) CanWrite() bool {
	return v.Me != nil && (v.Me.Role == "admin" || v.Me.Role == "operator")
}

// IsAdmin: administrators manage the tokens.
func (v *view) IsAdmin() bool { return v.Me != nil && v.Me.Role == "admin" }

// CanAudit: verification, the operations log and bundles are the
// auditors' (and admins').
func (v *view) CanAudit() bool {
	return v.Me != nil && (v.Me.Role == "admin" || v.Me.Role == "auditor")
}

// Nav is whether path is the current section.
func (v *view) Nav(prefix string) bool {
	if prefix == "/" {
		return v.Path == "/"
	}
	return strings.HasPrefix(v.Path, prefix)
}

func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"datetime": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.In(s.loc).Format("02/01/2006 15:04")
		},
		"clock": func(t time.Time) string { return t.In(s.loc).Format("15:04") },
		"isotime": func(t time.Time) string {
			return t.In(s.loc).Format(time.RFC3339)
		},
		"inputtime": func(t time.Time) string { return t.In(s.loc).Format("2006-01-02T15:04") },
		"duration": func(ms int64) string {
			d := time.Duration(ms) * time.Millisecond
			return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
		},
		"pct": func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
		// query is a link's query string. It is a template.URL because
		// html/template escapes a plain string after the "?" as one
		// parameter's value, "=" and "&" included: the links would carry a
		// single nameless parameter. url.Values.Encode has escaped each part.
		"query": func(kv ...string) template.URL {
			q := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] != "" {
					q.Set(kv[i], kv[i+1])
				}
			}
			return template.URL(q.Encode())
		},
		"list":   func(s ...string) []string { return s },
		"offset": func(d time.Duration) string { return fmt.Sprintf("%+d ms", d.Milliseconds()) },
	}
}
