package configs

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Validate checks every value and the rules between values. Load and Parse call it; call it
// yourself only on a Config built or changed in code. The error joins one error per problem.
func (c Config) Validate() error { return newSources().finish(c) }

// check is one problem Validate found. It names the keys involved rather than a position:
// the loader knows where each key was set and reports the first of them that was set by
// the file or the environment, since that is where the operator has to look.
type check struct {
	keys []string
	msg  string
}

// minRetention keeps a year's evidence at the least: the yearly compliance report and its
// evidence bundle must still be complete when the year is over.
const minRetention = 366 * 24 * time.Hour

func (c Config) checks() []check {
	var cs []check
	fail := func(msg string, keys ...string) { cs = append(cs, check{keys: keys, msg: msg}) }
	failf := func(key, format string, args ...any) { fail(fmt.Sprintf(format, args...), key) }

	if c.DataDir == "" {
		fail("must not be empty: the database and the admin token live there", "data_dir")
	}
	if _, err := loadLocation(c.Timezone); err != nil {
		fail(err.Error(), "timezone")
	}

	if err := checkHostPort(c.HTTP.Listen); err != nil {
		fail(err.Error(), "http.listen")
	}
	if err := checkPublicURL(c.HTTP.PublicURL); err != nil {
		fail(err.Error(), "http.public_url")
	}

	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"http.read_timeout", c.HTTP.ReadTimeout}, {"http.write_timeout", c.HTTP.WriteTimeout}, {"http.upload_timeout", c.HTTP.UploadTimeout}} {
		if d.v <= 0 {
			failf(d.key, "must be positive, got %s: without it a client that stops sending holds a connection for ever", shortDuration(d.v))
		}
	}
	if c.HTTP.UploadTimeout > 0 && c.HTTP.UploadTimeout < c.HTTP.ReadTimeout {
		fail(fmt.Sprintf("http.upload_timeout %s is shorter than http.read_timeout %s: uploads are the long requests",
			shortDuration(c.HTTP.UploadTimeout), shortDuration(c.HTTP.ReadTimeout)), "http.upload_timeout", "http.read_timeout")
	}
	if c.HTTP.MinBodyRate < 1 {
		failf("http.min_body_rate", "must be at least 1 (bytes a second), got %d", c.HTTP.MinBodyRate)
	}
	if c.HTTP.AuthFailures < 1 {
		failf("http.auth_failures", "must be at least 1, got %d", c.HTTP.AuthFailures)
	}
	if c.Tokens.MaxAge < 0 || (c.Tokens.MaxAge > 0 && c.Tokens.MaxAge < time.Hour) {
		failf("tokens.max_age", "must be 0 (never expire) or at least 1h, got %s", shortDuration(c.Tokens.MaxAge))
	}

	m := c.MQTT
	if err := checkHostPort(m.Embedded.Listen); err != nil {
		fail(err.Error(), "mqtt.embedded.listen")
	}
	switch {
	case m.URL == "" && !m.Embedded.Enabled:
		fail("mqtt.url is empty and the embedded broker is disabled: the daemon would have no broker"+
			" (set mqtt.url, or mqtt.embedded.enabled: true)", "mqtt.embedded.enabled", "mqtt.url")
	case m.URL != "" && m.Embedded.Enabled:
		// Both at once is refused rather than resolved by a precedence rule: the embedded
		// broker's default address is also where a local Mosquitto listens, and a daemon that
		// quietly starts a second broker beside the real one splits the devices between them.
		fail("mqtt.url names an external broker and mqtt.embedded.enabled is true: choose one"+
			" (set mqtt.embedded.enabled: false to use the external broker)", "mqtt.url", "mqtt.embedded.enabled")
	}
	if m.URL != "" {
		if err := checkBrokerURL(m.URL); err != nil {
			fail(err.Error(), "mqtt.url")
		}
	}
	switch {
	case m.MosquittoDir != "" && (m.URL == "" || m.Username == "" || m.Password == ""):
		fail("mqtt.mosquitto_dir keeps an external Mosquitto's password file and ACL: it needs mqtt.url,"+
			" and mqtt.username and mqtt.password for the daemon's own user", "mqtt.mosquitto_dir")
	case len(m.MosquittoReload) > 0 && m.MosquittoDir == "":
		fail("mqtt.mosquitto_reload is run after the files of mqtt.mosquitto_dir change: set that too", "mqtt.mosquitto_reload")
	}
	if m.Password != "" && m.Username == "" {
		// MQTT 3.1.1 (3.1.2.9) forbids a password without a user name; brokers refuse it.
		fail("mqtt.password is set but mqtt.username is empty", "mqtt.password", "mqtt.username")
	}
	if err := checkTopicRoot(m.TopicRoot); err != nil {
		fail(err.Error(), "mqtt.topic_root")
	}
	switch {
	case m.ClientID == "":
		fail("must not be empty: the broker keeps the daemon's session under it", "mqtt.client_id")
	case strings.HasPrefix(m.ClientID, "dev-"):
		// docs/protocol.md gives devices the ids dev-<id>; a daemon with such an id would take over
		// a device's session and be disconnected whenever that device connects.
		failf("mqtt.client_id", "must not begin with \"dev-\", which devices use, got %q", m.ClientID)
	}

	p := c.Policy
	if p.MinReplays < 0 || p.MinReplays > 31 {
		failf("policy.min_replays", "must be between 0 and 31, got %d", p.MinReplays)
	}
	hoursOK := true
	if err := p.BroadcastHours.check(); err != nil {
		fail(err.Error(), "policy.broadcast_hours")
		hoursOK = false
	}
	if len(p.Slots) == 0 {
		fail(`must list at least one start time, e.g. ["06:00", "17:00"]`, "policy.slots")
	}
	seen := make(map[int]int, len(p.Slots))
	for i, s := range p.Slots {
		key := fmt.Sprintf("policy.slots[%d]", i)
		at, err := ParseClock(s)
		switch {
		case err != nil:
			fail(err.Error(), key)
		case seen[at] > 0:
			failf(key, "%s is listed twice", s)
		case hoursOK && !p.BroadcastHours.Contains(at):
			// Worded to read right under either key: the slot may be a default that the
			// operator never wrote, found because they narrowed the hours.
			fail(fmt.Sprintf("the slot %s of policy.slots lies outside policy.broadcast_hours %s", s, p.BroadcastHours),
				key, "policy.broadcast_hours")
		}
		seen[at]++
	}
	if p.StartTolerance <= 0 {
		failf("policy.start_tolerance", "must be positive, got %s", shortDuration(p.StartTolerance))
	}
	checkRatio := func(key string, r float64) {
		if !(r > 0 && r <= 1) { // also refuses NaN
			failf(key, "must be more than 0 and at most 1, got %g", r)
		}
	}
	checkRatio("policy.min_played_ratio", p.MinPlayedRatio)
	checkRatio("policy.min_device_ratio", p.MinDeviceRatio)
	if p.Freeze < 0 {
		failf("policy.freeze", "must not be negative, got %s", shortDuration(p.Freeze))
	}
	if p.Lead <= 0 {
		failf("policy.lead", "must be positive, got %s: devices need their schedule ahead of time", shortDuration(p.Lead))
	}
	if p.Grace < 0 {
		failf("policy.grace", "must not be negative, got %s", shortDuration(p.Grace))
	}
	if p.ClockSkew < 0 {
		failf("policy.clock_skew", "must not be negative, got %s", shortDuration(p.ClockSkew))
	}

	if c.Devices.SeqGapTimeout <= 0 {
		failf("devices.seq_gap_timeout", "must be positive, got %s", shortDuration(c.Devices.SeqGapTimeout))
	}
	if c.Retention < minRetention {
		failf("retention", "must be at least %s (a year), got %s: the yearly report needs the whole year's evidence",
			shortDuration(minRetention), shortDuration(c.Retention))
	}
	if c.MemoryLimitMiB < 0 {
		failf("memory_limit_mib", "must not be negative, got %d (0 for no limit)", c.MemoryLimitMiB)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		failf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		failf("log.format", "must be text or json, got %q", c.Log.Format)
	}
	return cs
}

// loadLocation refuses "" and "Local", which time.LoadLocation accepts as UTC and as the
// machine's zone: the broadcasts' clock must not change when the server is reinstalled.
func loadLocation(name string) (*time.Location, error) {
	switch name {
	case "":
		return nil, errors.New("must name a time zone, e.g. Asia/Ho_Chi_Minh")
	case "Local":
		return nil, errors.New("must name a time zone, not Local: the schedule must not depend on the server's settings")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (e.g. Asia/Ho_Chi_Minh)", name)
	}
	return loc, nil
}

// checkHostPort accepts what net.Listen accepts with a numeric port. An empty host means every
// interface; port 0 (any free port) is allowed because end-to-end tests run the daemon so.
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port, e.g. 127.0.0.1:8080, got %q", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port must be a number from 0 to 65535, got %q", s)
	}
	return nil
}

func checkPublicURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("is not a URL: %v", urlErr(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("must be an http:// or https:// URL, got %q", s)
	case u.Host == "":
		return fmt.Errorf("must name a host, got %q", s)
	case u.User != nil:
		return errors.New("must not carry a user name or password: devices are given this URL")
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("must not have a query or fragment, since devices append /audio/… to it, got %q", s)
	}
	return nil
}

func checkBrokerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		// The URL may hold credentials, so the error quotes only the parser's reason.
		return fmt.Errorf("is not a URL: %v", urlErr(err))
	}
	switch u.Scheme {
	case "tcp", "ssl", "mqtt", "mqtts":
		if u.Port() == "" {
			return fmt.Errorf("must give a port, e.g. tcp://127.0.0.1:1883 or ssl://broker:8883, got %q", u.Redacted())
		}
	case "ws", "wss":
		// a WebSocket URL may leave the port to its scheme (80, 443)
	default:
		return fmt.Errorf("scheme must be tcp, ssl, mqtt, mqtts, ws or wss, got %q", u.Redacted())
	}
	if u.Hostname() == "" {
		return fmt.Errorf("must name a host, got %q", u.Redacted())
	}
	return nil
}

// urlErr drops the URL that url.Parse repeats in its errors, which could hold a password.
func urlErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// checkTopicRoot keeps the root a plain topic prefix: the daemon subscribes to <root>/dev/+/…,
// so a wildcard in it would widen every subscription, and a leading, trailing or doubled "/"
// adds empty levels that devices and brokers do not agree on.
func checkTopicRoot(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty, e.g. loaxa/v1")
	case strings.ContainsAny(s, "+#"):
		return fmt.Errorf("must not contain the MQTT wildcards + or #, got %q", s)
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/"):
		return fmt.Errorf("must not begin or end with /, got %q", s)
	case strings.Contains(s, "//"):
		return fmt.Errorf("must not contain an empty level (//), got %q", s)
	case strings.HasPrefix(s, "$"):
		return fmt.Errorf("must not begin with $, which brokers keep for themselves, got %q", s)
	case !utf8.ValidString(s) || strings.ContainsRune(s, 0):
		return fmt.Errorf("must be UTF-8 text without NUL, got %q", s)
	}
	return nil
}

// shortDuration prints 43800h rather than time.Duration's 43800h0m0s, matching how the file
// spells it.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
