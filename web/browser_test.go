package web_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/xuri/excelize/v2"

	"github.com/loaxa/loaxa/broadcast/audio/audiotest"
)

var screens = flag.Bool("screens", false, "write the browser test's screenshots to docs/screens (also LOAXA_SCREENS=1)")

const chromium = "/usr/bin/chromium"

// needBrowser returns the axe-core script, or skips the test when Chromium
// or axe-core is missing — unless LOAXA_BROWSER_TESTS=required (CI), where
// a skipped browser test would hide a broken console.
func needBrowser(t *testing.T) []byte {
	t.Helper()
	missing := func(msg string) {
		t.Helper()
		if os.Getenv("LOAXA_BROWSER_TESTS") == "required" {
			t.Fatal(msg + " (LOAXA_BROWSER_TESTS=required)")
		}
		t.Skip(msg + "; .ci/run installs it")
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("no Chromium at " + chromium)
	}
	axePath := os.Getenv("LOAXA_AXE_JS")
	if axePath == "" {
		home, _ := os.UserHomeDir()
		axePath = filepath.Join(home, ".cache", "loaxa-ci", "node_modules", "axe-core", "axe.min.js")
	}
	axe, err := os.ReadFile(axePath)
	if err != nil {
		missing("no axe-core at " + axePath + " (set LOAXA_AXE_JS)")
	}
	return axe
}

// chrome is one headless Chromium tab on the daemon, with what it saw
// go wrong: console errors, uncaught exceptions, requests that left the
// machine.
type chrome struct {
	f     *fixture
	ctx   context.Context
	host  string // the daemon's host:port; every request must go there
	axe   []byte
	shots string // where screenshots go

	mu       sync.Mutex
	problems []string
	allowed  map[string]bool // documents expected to answer 4xx, whose log entry is no error of the page
}

func newChrome(t *testing.T, f *fixture, axe []byte) *chrome {
	u, _ := url.Parse(f.base)
	c := &chrome{f: f, host: u.Host, axe: axe, allowed: map[string]bool{}}
	c.shots = t.TempDir()
	if *screens || os.Getenv("LOAXA_SCREENS") == "1" {
		c.shots = filepath.Join("..", "docs", "screens")
		if err := os.MkdirAll(c.shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Not DefaultExecAllocatorOptions: its enable-automation and
	// feature switches are not what an official's Chromium runs. No
	// user-data-dir flag either: chromedp then makes a fresh temporary one
	// and removes it, retrying while Chromium's helpers still write there.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		// Containers give /dev/shm 64 MB, which Chromium can fill.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("mute-audio", true),
		// A microphone that plays a beep, granted without asking: the
		// recorder's path, from getUserMedia to the upload.
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.WindowSize(1366, 768),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(c.listen))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	c.ctx = ctx
	if err := c.viewport(false); err != nil {
		t.Fatal(err)
	}
	c.probe(t)
	return c
}

// probe makes the page log an error, load an image from elsewhere (which
// the CSP refuses) and go to another host (127.0.0.2: loopback still, so
// nothing leaves the machine), and wants the listener to have noticed
// each: a listener that hears nothing would pass every page.
func (c *chrome) probe(t *testing.T) {
	t.Helper()
	c.open(t, "/login", 200)
	c.do(t, "probe", chromedp.Evaluate[chromedp.Void](`console.error("loaxa-probe"); new Image().src = "http://127.0.0.2:9/probe.png"`))
	// The navigation fails (nothing listens there), which is fine.
	_ = chromedp.Do(c.ctx, chromedp.Navigate("http://127.0.0.2:9/probe"))
	want := []string{`console.error: "loaxa-probe"`, "log security error: Loading the image 'http://127.0.0.2:9/probe.png'",
		"request leaves the daemon: http://127.0.0.2:9/probe"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		seen := 0
		for _, w := range want {
			if slices.ContainsFunc(c.problems, func(p string) bool { return strings.HasPrefix(p, w) }) {
				seen++
			}
		}
		got := slices.Clone(c.problems)
		c.mu.Unlock()
		if seen == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the browser listener missed the probe's error or request; it saw %q", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The probe's image also fails to load: let it, then forget it all.
	time.Sleep(100 * time.Millisecond)
	c.mu.Lock()
	c.problems = nil
	c.mu.Unlock()
}

// listen runs in the tab's event loop: it only notes what it sees.
func (c *chrome) listen(ev any) {
	var p string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var args []string
			for _, a := range ev.Args {
				args = append(args, a.Description+string(a.Value))
			}
			p = "console.error: " + strings.Join(args, " ")
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		p = "uncaught exception: " + d.Text
		if d.Exception != nil {
			p += " " + d.Exception.Description
		}
		p += fmt.Sprintf(" at %s:%d", d.URL, d.LineNumber+1)
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		if e.Level == cdplog.EntryLevelError {
			c.mu.Lock()
			ok := e.Source == cdplog.EntrySourceNetwork && c.allowed[e.URL]
			c.mu.Unlock()
			if !ok {
				p = fmt.Sprintf("log %s error: %s (%s)", e.Source, e.Text, e.URL)
			}
		}
	case *network.EventRequestWillBeSent:
		u, err := url.Parse(ev.Request.URL)
		if err != nil || (u.Scheme != "data" && u.Scheme != "blob" && u.Host != c.host) {
			p = "request leaves the daemon: " + ev.Request.URL
		}
	}
	if p != "" {
		c.mu.Lock()
		c.problems = append(c.problems, p)
		c.mu.Unlock()
	}
}

// allow expects the document at path to answer with an error status:
// Chromium logs that as an error, which here is the point.
func (c *chrome) allow(path string) {
	c.mu.Lock()
	c.allowed[c.f.base+path] = true
	c.mu.Unlock()
}

// clean fails the test with whatever went wrong in the browser since the
// last call.
func (c *chrome) clean(t *testing.T, where string) {
	t.Helper()
	c.mu.Lock()
	ps := c.problems
	c.problems = nil
	c.mu.Unlock()
	for _, p := range ps {
		t.Errorf("%s: %s", where, p)
	}
}

// stepTimeout bounds each step: a query for an element that never comes
// would otherwise wait for the test's own deadline.
const stepTimeout = 15 * time.Second

func (c *chrome) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func run[T any](t *testing.T, c *chrome, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// open navigates to path and wants status.
func (c *chrome) open(t *testing.T, path string, status int64) {
	t.Helper()
	if status >= 400 {
		c.allow(path)
	}
	resp := run(t, c, "open "+path, chromedp.NavigateResponse(c.f.base+path))
	if resp.Status != status {
		t.Fatalf("open %s: status %d, want %d", path, resp.Status, status)
	}
	c.settle(t)
}

// submit clicks sel (a submit button) and wants the page it leads to to
// answer status, after any redirect.
func (c *chrome) submit(t *testing.T, sel string, status int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	if resp.Status != status {
		t.Fatalf("click %s: status %d, want %d (%s)", sel, resp.Status, status, resp.URL)
	}
	c.settle(t)
}

// settle waits for the page's fonts, so that checks and screenshots see
// the text as an official does.
func (c *chrome) settle(t *testing.T) {
	t.Helper()
	run(t, c, "wait for fonts", chromedp.Evaluate[chromedp.Void](`document.fonts.ready.then(() => true)`, chromedp.EvalAwaitPromise))
}

func (c *chrome) path(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(run(t, c, "location", chromedp.Location()))
	if err != nil {
		t.Fatal(err)
	}
	return u.RequestURI()
}

func (c *chrome) text(t *testing.T, sel string) string {
	t.Helper()
	return run(t, c, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

func (c *chrome) wantText(t *testing.T, sel string, want ...string) {
	t.Helper()
	got := c.text(t, sel)
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Fatalf("%s on %s lacks %q: %q", sel, c.path(t), w, got)
		}
	}
}

type axeViolation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"`
	Help    string   `json:"help"`
	Targets []string `json:"targets"`
}

// check runs axe-core on the page as it is and fails on serious or
// critical violations; it also wants every message translated, the
// embedded DejaVu font in use, and nothing wider than the screen.
func (c *chrome) check(t *testing.T, name string) {
	t.Helper()
	// Evaluated through the DevTools protocol, which the page's CSP (no
	// inline script) does not govern; the page itself never loads axe.
	loaded := run(t, c, "axe present", chromedp.Evaluate[bool](`typeof window.axe === "object"`))
	if !loaded {
		run(t, c, "inject axe", chromedp.Evaluate[chromedp.Void](string(c.axe)))
	}
	type axeResult struct {
		Violations []axeViolation `json:"violations"`
		Passes     int            `json:"passes"`
	}
	res := run(t, c, "axe.run on "+name, chromedp.Evaluate[axeResult](`axe.run(document, {resultTypes: ["violations"]}).then(r => ({
		passes: r.passes.length,
		violations: r.violations.map(v => ({id: v.id, impact: v.impact || "", help: v.help,
			targets: v.nodes.map(n => n.target.join(" "))}))}))`, chromedp.EvalAwaitPromise))
	if res.Passes == 0 {
		t.Errorf("%s: axe-core checked nothing", name)
	}
	t.Logf("%s: axe-core: %d rules passed, %d violated", name, res.Passes, len(res.Violations))
	for _, v := range res.Violations {
		msg := fmt.Sprintf("%s: axe %s (%s): %s: %s", name, v.ID, v.Impact, v.Help, strings.Join(v.Targets, ", "))
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Error(msg)
		} else {
			t.Log(msg)
		}
	}
	type pageFacts struct {
		Missing  string  `json:"missing"`
		Font     bool    `json:"font"`
		Overflow float64 `json:"overflow"`
		Wide     string  `json:"wide"`
		BadLink  string  `json:"badLink"`
	}
	pf := run(t, c, "page facts", chromedp.Evaluate[pageFacts](`(() => {
		const body = document.body.innerText;
		const i = body.indexOf("⟦");
		const font = [...document.fonts].some(f => f.family.includes("DejaVu Sans") && f.status === "loaded");
		const over = document.documentElement.scrollWidth - window.innerWidth;
		let wide = "";
		if (over > 0) {
			for (const el of document.querySelectorAll("body *")) {
				if (el.closest(".scroll")) continue;
				const r = el.getBoundingClientRect();
				if (r.right > window.innerWidth + 1) { wide = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + "." + el.className; break; }
			}
		}
		// A link whose query string was escaped whole has one parameter
		// named like "month=2026-12&station=1": the page it leads to
		// ignores it.
		const badLink = [...document.querySelectorAll("a[href*='?']")].map(a => a.href)
			.find(h => [...new URL(h).searchParams.keys()].some(k => !/^[a-z_]+$/.test(k))) || "";
		return {missing: i < 0 ? "" : body.slice(i, i + 60), font, overflow: over, wide, badLink};
	})()`))
	if pf.Missing != "" {
		t.Errorf("%s: untranslated message %q", name, pf.Missing)
	}
	if !pf.Font {
		t.Errorf("%s: the embedded DejaVu Sans is not in use", name)
	}
	if pf.BadLink != "" {
		t.Errorf("%s: a link's query string is mangled: %s", name, pf.BadLink)
	}
	if pf.Overflow > 0 {
		t.Errorf("%s: the page is %.0f px wider than the screen (%s)", name, pf.Overflow, pf.Wide)
	}
	c.clean(t, name)
}

const (
	desktopW, desktopH = 1366, 768
	phoneW, phoneH     = 390, 844
	// A long list is cut below these heights (px), not the layout: the
	// committed screenshots stay small.
	maxDesktopShot, maxPhoneShot = 1600, 2400
)

func (c *chrome) viewport(phone bool) error {
	p := emulation.SetDeviceMetricsOverrideParams{Width: desktopW, Height: desktopH, DeviceScaleFactor: 1}
	if phone {
		p = emulation.SetDeviceMetricsOverrideParams{Width: phoneW, Height: phoneH, DeviceScaleFactor: 1, Mobile: true}
	}
	_, err := chromedp.Call(c.ctx, emulation.SetDeviceMetricsOverride, p)
	return err
}

// screens checks the page at phone width too, and saves it at both widths
// as <name>-desktop.png and <name>-phone.png.
func (c *chrome) screens(t *testing.T, name string) {
	t.Helper()
	for _, phone := range []bool{false, true} {
		kind := "desktop"
		if phone {
			kind = "phone"
		}
		if err := c.viewport(phone); err != nil {
			t.Fatal(err)
		}
		c.settle(t)
		if phone {
			c.check(t, name+" (phone)")
		}
		h := run(t, c, "page height", chromedp.Evaluate[float64](`document.documentElement.scrollHeight`))
		w, maxH := float64(desktopW), float64(maxDesktopShot)
		if phone {
			w, maxH = phoneW, maxPhoneShot
		}
		png := run(t, c, "screenshot", func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
			r, err := cdp.Call(ctx, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{
				Format: page.CaptureScreenshotFormatPng, CaptureBeyondViewport: new(true), FromSurface: new(true),
				Clip: &page.Viewport{Width: w, Height: min(h, maxH), Scale: 1},
			})
			return r.Data, err
		})
		if err := os.WriteFile(filepath.Join(c.shots, name+"-"+kind+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.viewport(false); err != nil {
		t.Fatal(err)
	}
	c.clean(t, name)
}

// signIn signs in on the sign-in page with token, and lands on the
// overview.
func (c *chrome) signIn(t *testing.T, token string) {
	t.Helper()
	c.open(t, "/login", 200)
	c.do(t, "type the token", chromedp.SendKeys(chromedp.ID("token"), token))
	c.submit(t, `form[action="/login"] button[type=submit]`, 200)
	if p := c.path(t); p != "/" {
		t.Fatalf("after sign-in at %s", p)
	}
}

func (c *chrome) signOut(t *testing.T) {
	t.Helper()
	c.submit(t, `form[action="/logout"] button`, 200)
	if p := c.path(t); !strings.HasPrefix(p, "/login") {
		t.Fatalf("after sign-out at %s", p)
	}
}

var airingHref = regexp.MustCompile(`^/airings/[0-9A-Za-z_-]+$`)

// TestBrowser drives Chromium through the console as its users do: an
// operator uploads, another approves, the airings are on the calendar and
// one is moved; an auditor reads the compliance report and downloads it.
// Every page is checked with axe-core on the way, and the main ones are
// saved at desktop and phone width.
func TestBrowser(t *testing.T) {
	axe := needBrowser(t)
	began := time.Now()
	f := start(t)
	c := newChrome(t, f, axe)
	wav := filepath.Join(t.TempDir(), "ban-tin.wav")
	if err := os.WriteFile(wav, audiotest.WAV(20*time.Second), 0o644); err != nil {
		t.Fatal(err)
	}
	const title = "Chuyển đổi số — bản tin tháng 12/2026"
	var progPath, airingPath string

	t.Run("signed out", func(t *testing.T) {
		c.open(t, "/login", 200)
		c.check(t, "login")
		c.screens(t, "login")
		c.allow("/login")
		c.do(t, "type a bad token", chromedp.SendKeys(chromedp.ID("token"), "loaxa_not-a-token"))
		c.submit(t, `form[action="/login"] button[type=submit]`, 401)
		c.wantText(t, "#err-token", "không hợp lệ")
		c.check(t, "login refused")
		c.open(t, "/no-such-page", 404)
		c.check(t, "not found (signed out)")
	})

	t.Run("operator A uploads", func(t *testing.T) {
		c.signIn(t, f.lan)
		c.check(t, "overview (no programme yet)")
		c.open(t, "/programmes", 200)
		c.check(t, "programmes")
		// The progress bar lives only until the script leaves for the
		// programme's page: an observer notes in sessionStorage how far it
		// got and whether it showed.
		c.do(t, "fill in the upload form",
			chromedp.SetValue(chromedp.ID("month"), "2026-12"),
			chromedp.SetValue(chromedp.ID("title"), title),
			chromedp.SetValue(chromedp.ID("description"), "Bản tin về chuyển đổi số ở xã, phường"),
			chromedp.SetUploadFiles(chromedp.ID("audio"), []string{wav}),
			chromedp.Evaluate[chromedp.Void](`(() => {
				const box = document.querySelector("[data-progress]"), bar = box.querySelector("progress");
				new MutationObserver(() => {
					if (!box.hidden) sessionStorage.setItem("shown", "yes");
					sessionStorage.setItem("max", String(Math.max(Number(sessionStorage.getItem("max") || 0), bar.value)));
				}).observe(box, {attributes: true, subtree: true});
			})()`),
		)
		c.submit(t, `form[data-upload] button[type=submit]`, 200)
		progPath = c.path(t)
		if !strings.HasPrefix(progPath, "/programmes/") {
			t.Fatalf("after the upload at %s", progPath)
		}
		type progress struct{ Shown, Max string }
		p := run(t, c, "progress seen", chromedp.Evaluate[progress](`({shown: sessionStorage.getItem("shown") || "", max: sessionStorage.getItem("max") || ""})`))
		if p.Shown != "yes" || p.Max != "100" {
			t.Errorf("the progress bar showed %q and reached %q%%, want shown and 100", p.Shown, p.Max)
		}
		c.wantText(t, ".flash", "Đã tải lên", title)
		c.wantText(t, "main", "một người vận hành khác phải duyệt", "Chờ duyệt")
		c.check(t, "programme (own draft)")
		c.signOut(t)
	})

	t.Run("operator B approves", func(t *testing.T) {
		c.signIn(t, f.minh)
		c.open(t, progPath, 200)
		c.submit(t, `form[action$="/approve"] button`, 200)
		c.wantText(t, ".flash", "Đã duyệt:")
		c.wantText(t, "main", "Đã duyệt", "Phường Hàm Rồng")
		c.check(t, "programme (approved)")
		c.screens(t, "programme")
	})

	t.Run("calendar and move", func(t *testing.T) {
		c.open(t, "/schedule?station=14755&month=2026-12", 200)
		links := run(t, c, "calendar links", chromedp.Evaluate[[]string](`[...document.querySelectorAll(".calendar a")].map(a => a.getAttribute("href"))`))
		links = slices.DeleteFunc(links, func(h string) bool { return !airingHref.MatchString(h) })
		if len(links) < 4 {
			t.Fatalf("the calendar shows %d airings, want at least 4", len(links))
		}
		c.wantText(t, ".calendar", title)
		c.check(t, "schedule (station)")
		c.screens(t, "schedule")
		airingPath = links[len(links)-1] // the last: far from the freeze window
		c.open(t, "/schedule", 200)
		c.check(t, "schedule (unit)")

		c.open(t, airingPath, 200)
		c.check(t, "airing")
		// 23:00 is outside broadcasting hours: the API's 409, in words,
		// next to the field.
		c.allow(airingPath + "/move")
		c.do(t, "type a bad time", chromedp.SetValue(chromedp.ID("start"), "2026-12-28T23:00"))
		c.submit(t, `form[action$="/move"] button`, 409)
		c.wantText(t, "#err-start", "Không thể thực hiện vì xung đột:", "broadcasting hours")
		if inv := run(t, c, "aria-invalid", chromedp.Evaluate[string](`document.getElementById("start").getAttribute("aria-invalid") || ""`)); inv != "true" {
			t.Errorf("the refused field is not marked invalid (aria-invalid=%q)", inv)
		}
		c.check(t, "airing (move refused)")
		c.do(t, "type a good time", chromedp.SetValue(chromedp.ID("start"), "2026-12-29T10:17"))
		c.submit(t, `form[action$="/move"] button`, 200)
		c.wantText(t, ".flash", "Đã dời buổi phát")
		c.wantText(t, ".facts", "29/12/2026 10:17")
		c.check(t, "airing (moved)")
	})

	t.Run("operator pages", func(t *testing.T) {
		c.open(t, "/", 200)
		c.check(t, "overview")
		c.screens(t, "overview")
		c.open(t, "/programmes", 200)
		c.screens(t, "programmes")
		c.open(t, "/stations", 200)
		c.check(t, "stations (tree)")
		c.open(t, "/stations?unit=380", 200)
		c.check(t, "stations (district)")
		c.open(t, "/stations/14755", 200)
		c.check(t, "station")
		c.do(t, "add a device", chromedp.SetValue(chromedp.ID("dev-id"), "14755-01"),
			chromedp.SetValue(chromedp.ID("dev-broker"), "tcp://10.0.0.1:1883"))
		c.submit(t, `form[action$="/devices"] button`, 201)
		c.wantText(t, "main", "14755-01", "chỉ hiện một lần", "broker: tcp://10.0.0.1:1883")
		c.check(t, "device added")
		c.open(t, "/stations/14755", 200)
		c.wantText(t, "main", "14755-01")
		c.screens(t, "station")
		c.open(t, "/reports/verify", 403)
		c.check(t, "refused (operator on verify)")
	})

	t.Run("record with the microphone", func(t *testing.T) {
		c.open(t, "/programmes", 200)
		c.do(t, "record",
			chromedp.WaitVisible(chromedp.CSS("[data-recorder]")),
			chromedp.Click(chromedp.CSS("[data-rec-start]")),
			chromedp.WaitEnabled(chromedp.CSS("[data-rec-stop]")),
			chromedp.Sleep(1500*time.Millisecond),
			chromedp.Click(chromedp.CSS("[data-rec-stop]")),
			chromedp.WaitVisible(chromedp.CSS("[data-rec-preview]")),
		)
		n := run(t, c, "recorded file", chromedp.Evaluate[string](`(f => f ? f.name + " " + f.type + " " + f.size : "")(document.getElementById("audio").files[0])`))
		if !strings.HasPrefix(n, "recording.") {
			t.Fatalf("the recording is not the form's audio: %q", n)
		}
		c.check(t, "programmes (recorded)")
		c.do(t, "name the recording", chromedp.SetValue(chromedp.ID("month"), "2026-12"),
			chromedp.SetValue(chromedp.ID("title"), "Thông báo thu bằng micrô"))
		c.submit(t, `form[data-upload] button[type=submit]`, 200)
		if p := c.path(t); !strings.HasPrefix(p, "/programmes/") {
			t.Fatalf("the recording (%s) was not accepted: at %s, %q", n, p, c.text(t, "main"))
		}
		c.wantText(t, "main", "Thông báo thu bằng micrô", "webm-opus")
		t.Logf("recorded %s; the programme page says %q", n, c.text(t, ".facts"))
	})

	t.Run("emergency", func(t *testing.T) {
		c.open(t, "/emergency", 200)
		c.check(t, "emergency")
		c.screens(t, "emergency")
		c.do(t, "fill in the emergency form",
			chromedp.Click(chromedp.CSS(`input[name=unit][value="380"]`)),
			chromedp.SetValue(chromedp.ID("title"), "Bão số 9: sơ tán khẩn cấp"),
			chromedp.SetUploadFiles(chromedp.ID("audio"), []string{wav}),
			chromedp.Click(chromedp.ID("confirm1")),
		)
		c.submit(t, `form[action="/emergency"] button[type=submit]`, 200)
		c.wantText(t, "main", "Xác nhận lần hai", "Bão số 9")
		c.check(t, "emergency (confirm)")
		c.do(t, "confirm again", chromedp.Click(chromedp.ID("confirm2")))
		c.submit(t, `form[action="/emergency/confirm"] button[type=submit]`, 200)
		if p := c.path(t); !strings.HasPrefix(p, "/emergency/live") {
			t.Fatalf("after sending at %s", p)
		}
		c.wantText(t, "main", "Bão số 9")
		c.check(t, "emergency (live)")
		c.signOut(t)
	})

	t.Run("auditor", func(t *testing.T) {
		c.signIn(t, f.auditor)
		c.check(t, "overview (auditor)")
		c.open(t, "/reports", 200)
		c.check(t, "reports (no period)")
		c.open(t, "/reports?period=2026-12", 200)
		c.wantText(t, "main", "Phường Hàm Rồng", "Excel (XLSX)")
		c.check(t, "reports")
		c.screens(t, "reports")
		required := run(t, c, "required airings", chromedp.Evaluate[string](`(() => {
			const a = document.querySelector('table a[href*="station=14755"]');
			const td = a && a.closest("tr").querySelector('td[data-label="Yêu cầu"]');
			return td ? td.textContent.trim() : (document.querySelector("table") || document.querySelector("main")).outerHTML.slice(0, 3000);
		})()`))
		if len(required) > 4 {
			t.Fatalf("no required count for 14755 in the report table: %.3000s", required)
		}

		dir := t.TempDir()
		if _, err := chromedp.CallBrowser(c.ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir}); err != nil {
			t.Fatal(err)
		}
		c.do(t, "download the XLSX", chromedp.Click(chromedp.CSS(`a[href*="format=xlsx"]`)))
		xlsx := waitFile(t, dir, ".xlsx")
		x, err := excelize.OpenFile(xlsx)
		if err != nil {
			t.Fatalf("open %s: %v", xlsx, err)
		}
		defer x.Close()
		rows, err := x.GetRows(x.GetSheetName(0))
		if err != nil {
			t.Fatal(err)
		}
		// The summary's first row is the auditor's district: its count of
		// stations in progress is the page's.
		inProgress := c.text(t, ".counts .status-in_progress .n")
		summary := false
		for i, r := range rows[:len(rows)-1] {
			if col := slices.Index(r, "Đang thực hiện"); len(r) > 0 && r[0] == "STT" && col > 0 {
				next := rows[i+1]
				if len(next) <= col || next[1] != "Thành phố Thanh Hóa" || next[col] != inProgress {
					t.Errorf("XLSX summary %q under %q: want Thành phố Thanh Hóa with %s in progress, as the page says", next, r, inProgress)
				}
				summary = true
				break
			}
		}
		if !summary {
			t.Errorf("the XLSX has no summary table: %q", rows)
		}
		station := false
		for _, r := range rows {
			if slices.Contains(r, "14755") {
				station = true
				if !slices.Contains(r, required) {
					t.Errorf("the XLSX row of 14755 %q lacks the page's required count %q", r, required)
				}
			}
		}
		if !station {
			t.Errorf("the XLSX has no row for station 14755: %q", rows)
		}
		c.clean(t, "download")

		c.open(t, "/reports?period=2026-12", 200)
		c.submit(t, `table a[href*="station=14755"]`, 200)
		if p := c.path(t); p != "/reports/station?month=2026-12&station=14755" {
			t.Errorf("the drill-down link led to %s", p)
		}
		c.wantText(t, "main", "Phường Hàm Rồng")
		c.check(t, "report station-month")
		// Verifying the whole log is for the whole tree's tokens: a
		// district's auditor is told so (the admin's page is checked below).
		c.open(t, "/reports/verify", 403)
		c.check(t, "verify (district auditor, refused)")
		c.open(t, "/reports/oplog?from=2026-01-01", 200)
		c.wantText(t, "main", "Duyệt chương trình")
		c.check(t, "oplog")
		c.open(t, "/programmes", 200)
		c.check(t, "programmes (auditor)")
		c.open(t, progPath, 200)
		c.check(t, "programme (auditor)")
		c.open(t, airingPath, 200)
		c.check(t, "airing (auditor)")
		c.open(t, "/emergency", 403)
		c.check(t, "refused (auditor on emergency)")
		c.open(t, "/no-such-page", 404)
		c.check(t, "not found")
		c.open(t, "/?lang=en", 200)
		c.check(t, "overview (English)")
		c.open(t, "/reports?period=2026-H2", 200)
		c.check(t, "reports (English, half-year)")
	})
	t.Run("admin verifies", func(t *testing.T) {
		c.signIn(t, f.admin)
		c.open(t, "/reports/verify", 200)
		c.check(t, "verify")
	})
	c.clean(t, "end")
	t.Logf("browser test took %v", time.Since(began).Round(time.Millisecond))
}

// waitFile waits for Chromium to finish writing a download ending in ext.
func waitFile(t *testing.T, dir, ext string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		es, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range es {
			if strings.HasSuffix(e.Name(), ext) {
				return filepath.Join(dir, e.Name())
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s file downloaded to %s", ext, dir)
	return ""
}
