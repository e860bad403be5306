// Package configs loads the daemon's configuration: defaults, one YAML file, then
// LOAXA_<SECTION>_<KEY> environment variables, in that order, each step overriding the last.
//
// Every key has a default, so the daemon runs without a file. A file is read strictly:
// unknown keys, duplicate keys and values of the wrong type are errors, and every error names
// the file, the line and the key, because the person who reads it is an operator at a
// provincial office with an editor open, not a Go programmer. All errors of a file are
// reported at once, so that one round of editing fixes them all.
//
// Relative paths in a file (data_dir, units_csv) are taken relative to the directory of that
// file, not to the daemon's working directory, so that a deployment directory can be moved or
// started by systemd from "/" and still find its data. Relative paths from the environment or
// the defaults stay relative to the working directory, as a shell user would expect.
package configs

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"
)

// Config mirrors the YAML file key for key; the yaml tags are the keys' names, and the
// environment variable of a key is derived from its path (see ApplyEnv).
type Config struct {
	DataDir   string        `yaml:"data_dir"`
	Timezone  string        `yaml:"timezone"` // an IANA name; see Location
	HTTP      HTTP          `yaml:"http"`
	Tokens    Tokens        `yaml:"tokens"`
	MQTT      MQTT          `yaml:"mqtt"`
	Policy    Policy        `yaml:"policy"`
	Devices   Devices       `yaml:"devices"`
	Retention time.Duration `yaml:"retention"` // how long evidence is kept before it may be purged
	Log       Log           `yaml:"log"`
	UnitsCSV  string        `yaml:"units_csv"` // optional; imported at start when set
	// MemoryLimitMiB is the daemon's soft memory limit (Go's GOMEMLIMIT), in MiB; 0 for
	// none. GOMEMLIMIT in the environment, when set, wins.
	MemoryLimitMiB int `yaml:"memory_limit_mib"`
}

// HTTP is the operators' and devices' HTTP side.
type HTTP struct {
	Listen        string `yaml:"listen"`
	PublicURL     string `yaml:"public_url"`     // the base devices put in front of /audio/…
	MetricsPublic bool   `yaml:"metrics_public"` // false: /metrics needs a token
	// ReadTimeout bounds the time a client may take to send a request's body (the headers
	// have 10 s); WriteTimeout how long it may leave an answer unread before the connection
	// is cut. Uploads of audio and units (UploadTimeout) may take longer, but their body
	// must keep coming at MinBodyRate bytes a second on average once ReadTimeout is over.
	ReadTimeout   time.Duration `yaml:"read_timeout"`
	WriteTimeout  time.Duration `yaml:"write_timeout"`
	UploadTimeout time.Duration `yaml:"upload_timeout"`
	MinBodyRate   int           `yaml:"min_body_rate"`
	// AuthFailures is how many failed authentications (bad tokens, console sign-ins, device
	// credentials) one client address may make before it must wait: 1 s, doubling at each
	// further failure up to 5 min; answered 429 with Retry-After meanwhile.
	AuthFailures int `yaml:"auth_failures"`
}

// Tokens is the API tokens' lifecycle.
type Tokens struct {
	// MaxAge is the life of an operator's or auditor's token: it expires this long after it
	// was created unless made to expire sooner. 0: such tokens never expire. Administrators'
	// tokens expire only when asked to.
	MaxAge time.Duration `yaml:"max_age"`
}

// MQTT is the broker the daemon talks to its devices through.
type MQTT struct {
	Embedded  Embedded `yaml:"embedded"`
	URL       string   `yaml:"url"` // an external broker; empty means the embedded one
	Username  string   `yaml:"username"`
	Password  string   `yaml:"password"`
	TopicRoot string   `yaml:"topic_root"`
	ClientID  string   `yaml:"client_id"` // stable, so that the broker keeps the daemon's session
	// MosquittoDir, with an external Mosquitto, is where the daemon keeps the password file
	// and ACL of its devices (and a mosquitto.conf, written if there is none), rewritten
	// whenever a device is added or disabled; MosquittoReload is the command that then
	// makes Mosquitto reload them (SIGHUP), e.g. systemctl reload mosquitto.
	MosquittoDir    string   `yaml:"mosquitto_dir"`
	MosquittoReload []string `yaml:"mosquitto_reload"`
}

// Embedded is the in-process broker, the default when no external one is named.
type Embedded struct {
	Enabled bool   `yaml:"enabled"`
	Listen  string `yaml:"listen"`
}

// Policy is the broadcasting plan's rules: how often, when, and what counts as aired.
type Policy struct {
	MinReplays     int           `yaml:"min_replays"` // airings a month = 1 premiere + MinReplays
	BroadcastHours Hours         `yaml:"broadcast_hours"`
	Slots          []string      `yaml:"slots"` // "HH:MM", preferred start times; see SlotMinutes
	StartTolerance time.Duration `yaml:"start_tolerance"`
	MinPlayedRatio float64       `yaml:"min_played_ratio"`
	MinDeviceRatio float64       `yaml:"min_device_ratio"`
	Freeze         time.Duration `yaml:"freeze"`
	Lead           time.Duration `yaml:"lead"`
	Grace          time.Duration `yaml:"grace"`      // after not_after, before an airing is judged missed
	ClockSkew      time.Duration `yaml:"clock_skew"` // how far past its receipt an event's claimed times may lie
	SelfApproval   bool          `yaml:"self_approval"`
}

// Devices tunes how the daemon treats its devices' event streams.
type Devices struct {
	// SeqGapTimeout is how long a gap in a device's event sequence may stay open before it
	// is reported: long enough for a reconnecting device to resend, short enough that a lost
	// acknowledgement is noticed the same day.
	SeqGapTimeout time.Duration `yaml:"seq_gap_timeout"`
}

// Log chooses the daemon's log output.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Default returns the configuration the daemon runs with when there is no file: data in
// ./data, the embedded broker, HTTP on loopback only, so that a first start exposes nothing.
// Each call returns a fresh value (the Slots slice is not shared).
func Default() Config {
	return Config{
		DataDir:  "./data",
		Timezone: "Asia/Ho_Chi_Minh",
		HTTP: HTTP{
			Listen:        "127.0.0.1:8080",
			PublicURL:     "http://127.0.0.1:8080",
			MetricsPublic: true,
			ReadTimeout:   30 * time.Second,
			WriteTimeout:  2 * time.Minute,
			UploadTimeout: time.Hour,
			// 1 KiB/s: a 2G modem at a commune office sends more than ten times that; a
			// slow-loris client sending a byte every few seconds is cut.
			MinBodyRate:  1024,
			AuthFailures: 10,
		},
		Tokens: Tokens{MaxAge: 365 * 24 * time.Hour},
		MQTT: MQTT{
			Embedded:  Embedded{Enabled: true, Listen: "127.0.0.1:1883"},
			TopicRoot: "loaxa/v1",
			// Empty rather than nil, as the example file's [] decodes.
			MosquittoReload: []string{},
			ClientID:        "loaxad",
		},
		Policy: Policy{
			MinReplays:     3,
			BroadcastHours: Hours{Start: 5 * 60, End: 21 * 60},
			Slots:          []string{"06:00", "17:00"},
			StartTolerance: 15 * time.Minute,
			MinPlayedRatio: 0.9,
			MinDeviceRatio: 0.8,
			Freeze:         time.Hour,
			Lead:           7 * 24 * time.Hour,
			Grace:          30 * time.Minute,
			ClockSkew:      2 * time.Minute,
		},
		Devices:   Devices{SeqGapTimeout: 10 * time.Minute},
		Retention: 5 * 365 * 24 * time.Hour,
		Log:       Log{Level: "info", Format: "text"},
		// With 10,047 devices on the embedded broker about 500 MiB of heap and goroutine
		// stacks are live, and a backlog of 40,000 events adds to it. With a limit
		// of 768 the collector then ran without pause (31 s of CPU for what takes 11–12 s);
		// with 1,024 it did not, and the peak fell from 1.4 to 1.2 GiB (docs/benchmarks.md).
		MemoryLimitMiB: 1024,
	}
}

// Load reads the file at path (none when path is ""), applies the process environment and
// validates the result.
func Load(path string) (Config, error) { return LoadWithEnv(path, os.Environ()) }

// LoadWithEnv is Load with the environment given as "KEY=value" strings, so that tests need
// not touch the process environment. Path "" means defaults and environment only.
//
// Errors from every step are collected and returned together (errors.Join), each naming where
// the offending value came from: "file:line: key: …" or "LOAXA_…: …".
func LoadWithEnv(path string, environ []string) (Config, error) {
	cfg := Default()
	src := newSources()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		cfg = parse(path, data, src)
	}
	applyEnv(&cfg, environ, src)
	if err := src.finish(cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Parse reads a configuration from data, on top of the defaults, and validates it. Name is
// the file's path: it prefixes every error, and relative paths in the file are resolved
// against its directory. Parse does not look at the environment.
func Parse(name string, data []byte) (Config, error) {
	src := newSources()
	cfg := parse(name, data, src)
	if err := src.finish(cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Location returns the time zone named by Timezone, in which broadcast hours and slots are
// read. It must only be called on a Config that passed Validate (Load and Parse validate):
// it panics otherwise, because falling back to UTC would silently move every broadcast of a
// Vietnamese province by seven hours.
func (c Config) Location() *time.Location {
	loc, err := loadLocation(c.Timezone)
	if err != nil {
		panic(fmt.Sprintf("configs: Location on an unvalidated Config: %v", err))
	}
	return loc
}

// SlotMinutes returns the slots as minutes after local midnight, in ascending order whatever
// the order in the file. Like Location it panics on a Config that did not pass Validate.
func (p Policy) SlotMinutes() []int {
	ms := make([]int, 0, len(p.Slots))
	for _, s := range p.Slots {
		m, err := ParseClock(s)
		if err != nil {
			panic(fmt.Sprintf("configs: SlotMinutes on an unvalidated Config: %v", err))
		}
		ms = append(ms, m)
	}
	slices.Sort(ms)
	return ms
}

// SlogLevel returns Level as a slog.Level; an unknown level (only possible before Validate)
// gives slog.LevelInfo, since a log level is not worth refusing to start over.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
