package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the daemon embeds tzdata; so do the tests, to pass on machines without it

	"go.yaml.in/yaml/v3"
)

func TestDefaultIsValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if got := cfg.Location().String(); got != "Asia/Ho_Chi_Minh" {
		t.Errorf("Location() = %s", got)
	}
	if got, want := cfg.Policy.SlotMinutes(), []int{6 * 60, 17 * 60}; !slices.Equal(got, want) {
		t.Errorf("SlotMinutes() = %v, want %v", got, want)
	}
	// Default must hand out a fresh slice: a caller appending a slot must not change the
	// next caller's defaults.
	cfg.Policy.Slots[0] = "07:00"
	if Default().Policy.Slots[0] != "06:00" {
		t.Error("Default shares its Slots slice between calls")
	}
}

func TestLoadWithoutFileIsDefault(t *testing.T) {
	cfg, err := LoadWithEnv("", []string{"PATH=/bin", "LOAXA_URL=http://x", "LOAXA_TOKEN=t"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("LoadWithEnv(\"\") = %+v, want Default()", cfg)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := LoadWithEnv(path, nil)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want a not-exist error naming %s", err, path)
	}
}

// The example documents the defaults: loading it must give Default(), except that data_dir,
// being relative, is now relative to the file's directory (here the package's).
func TestExampleFileIsDefault(t *testing.T) {
	cfg, err := LoadWithEnv("loaxad.example.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DataDir = "data"
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("loaxad.example.yaml =\n%+v\nwant\n%+v", cfg, want)
	}
}

// Every key of Config must be written out, and so commented, in the example file.
func TestExampleFileHasEveryKey(t *testing.T) {
	data, err := os.ReadFile("loaxad.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.MappingNode && k.HeadComment == "" && v.LineComment == "" {
				t.Errorf("key %s has no comment", joinPath(prefix, k.Value))
			}
			if v.Kind == yaml.MappingNode {
				walk(v, joinPath(prefix, k.Value))
			} else {
				written[joinPath(prefix, k.Value)] = true
			}
		}
	}
	walk(doc.Content[0], "")
	for _, k := range flatten(schema()) {
		if k.children == nil && !written[k.path] {
			t.Errorf("loaxad.example.yaml lacks %s", k.path)
		}
	}
}

func TestThanhHoaFile(t *testing.T) {
	cfg, err := LoadWithEnv("thanh-hoa.yaml", []string{"LOAXA_MQTT_PASSWORD=secret"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.PublicURL != "https://loa.thanhhoa.gov.vn" || cfg.MQTT.Embedded.Enabled || cfg.MQTT.Password != "secret" {
		t.Errorf("unexpected config %+v", cfg)
	}
	if cfg.UnitsCSV != filepath.Join("data", "thanh-hoa-units-2025-03.csv") {
		t.Errorf("units_csv = %q", cfg.UnitsCSV)
	}
	data, err := os.ReadFile(cfg.UnitsCSV)
	if err != nil {
		t.Fatal(err)
	}
	// a header and Thanh Hoa's 549 communes
	if n := strings.Count(string(data), "\n"); n != 550 {
		t.Errorf("%s has %d lines, want 550", cfg.UnitsCSV, n)
	}
	if got := cfg.Policy.SlotMinutes(); !slices.Equal(got, []int{5*60 + 30, 17 * 60}) {
		t.Errorf("SlotMinutes() = %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	const name = "configs/x.yaml"
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"unknown key", "http:\n  listn: 127.0.0.1:8080\n",
			[]string{`configs/x.yaml:2: http.listn: unknown key (did you mean "listen"?)`}},
		{"key in the wrong section", "policy:\n  min_replays: 3\nlisten: :80\n",
			[]string{`configs/x.yaml:3: listen: unknown key (did you mean "http.listen" or "mqtt.embedded.listen"?)`}},
		{"unknown section", "polcy:\n  freeze: 1h\n",
			[]string{`configs/x.yaml:1: polcy: unknown key (did you mean "policy"?)`}},
		{"bad duration", "policy:\n  lead: 168h\n  freeze: abc\n",
			[]string{`configs/x.yaml:3: policy.freeze: invalid duration "abc"`}},
		{"duration without unit", "policy:\n  freeze: 60\n",
			[]string{`configs/x.yaml:2: policy.freeze: invalid duration "60"`}},
		{"negative duration", "policy:\n  grace: -5m\n",
			[]string{`configs/x.yaml:2: policy.grace: must not be negative, got -5m`}},
		{"ratio above 1", "policy:\n  min_played_ratio: 1.5\n",
			[]string{`configs/x.yaml:2: policy.min_played_ratio: must be more than 0 and at most 1, got 1.5`}},
		{"ratio zero", "policy:\n  min_device_ratio: 0\n",
			[]string{`configs/x.yaml:2: policy.min_device_ratio: must be more than 0 and at most 1, got 0`}},
		{"ratio NaN", "policy:\n  min_device_ratio: .nan\n",
			[]string{`configs/x.yaml:2: policy.min_device_ratio: must be more than 0 and at most 1, got NaN`}},
		{"min_replays negative", "data_dir: d\n\npolicy:\n  min_replays: -1\n",
			[]string{`configs/x.yaml:4: policy.min_replays: must be between 0 and 31, got -1`}},
		{"min_replays a float", "policy:\n  min_replays: 3.5\n",
			[]string{`configs/x.yaml:2: policy.min_replays: must be a whole number, got "3.5"`}},
		{"slot 25:00", "policy:\n  slots:\n    - \"06:00\"\n    - \"25:00\"\n",
			[]string{`configs/x.yaml:4: policy.slots[1]: "25:00" is not a time of day`}},
		{"slot one digit", "policy:\n  slots: [\"6:00\"]\n",
			[]string{`configs/x.yaml:2: policy.slots[0]: must be HH:MM, got "6:00"`}},
		{"slot twice", "policy:\n  slots: [\"06:00\", \"06:00\"]\n",
			[]string{`configs/x.yaml:2: policy.slots[1]: 06:00 is listed twice`}},
		{"slots empty", "policy:\n  slots: []\n",
			[]string{`configs/x.yaml:2: policy.slots: must list at least one start time`}},
		{"slots a string", "policy:\n  slots: \"06:00\"\n",
			[]string{`configs/x.yaml:2: policy.slots: must be a list`}},
		{"slot outside broadcast hours", "policy:\n  broadcast_hours: \"05:00-21:00\"\n  slots:\n    - \"06:00\"\n    - \"22:00\"\n",
			[]string{`configs/x.yaml:5: policy.slots[1]: the slot 22:00 of policy.slots lies outside policy.broadcast_hours 05:00-21:00`}},
		{"default slot outside new hours", "policy:\n  broadcast_hours: \"07:00-21:00\"\n",
			[]string{`configs/x.yaml:2: policy.broadcast_hours: the slot 06:00 of policy.slots lies outside policy.broadcast_hours 07:00-21:00`}},
		{"broadcast hours wrap midnight", "policy:\n  broadcast_hours: \"21:00-05:00\"\n",
			[]string{`configs/x.yaml:2: policy.broadcast_hours: start must be before end, got 21:00-05:00`}},
		{"broadcast hours garbled", "policy:\n  broadcast_hours: \"5-21\"\n",
			[]string{`configs/x.yaml:2: policy.broadcast_hours: start of "5-21": must be HH:MM, got "5"`}},
		{"duplicate key", "timezone: UTC\ndata_dir: d\ntimezone: Asia/Bangkok\n",
			[]string{`configs/x.yaml:3: timezone: duplicate key (first at line 1)`}},
		{"duplicate nested key", "mqtt:\n  url: \"\"\n  embedded:\n    listen: :1883\n    listen: :1884\n",
			[]string{`configs/x.yaml:5: mqtt.embedded.listen: duplicate key (first at line 4)`}},
		{"string for bool", "mqtt:\n  embedded:\n    enabled: \"yes\"\n",
			[]string{`configs/x.yaml:3: mqtt.embedded.enabled: must be true or false, got the quoted text "yes"`}},
		{"yes for bool", "policy:\n  self_approval: yes\n",
			[]string{`configs/x.yaml:2: policy.self_approval: must be true or false, got "yes"`}},
		{"null for bool", "http:\n  metrics_public:\n",
			[]string{`configs/x.yaml:2: http.metrics_public: has no value`}},
		{"list for string", "data_dir: [a, b]\n",
			[]string{`configs/x.yaml:1: data_dir: must be a single value, got a list`}},
		{"scalar for section", "http: 8080\n",
			[]string{`configs/x.yaml:1: http: must be a section of keys, got "8080"`}},
		{"application tag", "mqtt:\n  password: !secret mqtt\n",
			[]string{`configs/x.yaml:2: mqtt.password: must be a single value, got "mqtt" with the tag !secret`}},
		{"bad timezone", "timezone: Mars/Olympus_Mons\n",
			[]string{`configs/x.yaml:1: timezone: unknown time zone "Mars/Olympus_Mons"`}},
		{"Local timezone", "timezone: Local\n",
			[]string{`configs/x.yaml:1: timezone: must name a time zone, not Local`}},
		{"no broker", "mqtt:\n  embedded:\n    enabled: false\n",
			[]string{`configs/x.yaml:3: mqtt.embedded.enabled: mqtt.url is empty and the embedded broker is disabled`}},
		{"two brokers", "mqtt:\n  url: tcp://127.0.0.1:1883\n",
			[]string{`configs/x.yaml:2: mqtt.url: mqtt.url names an external broker and mqtt.embedded.enabled is true`}},
		{"broker scheme", "mqtt:\n  embedded: {enabled: false}\n  url: http://broker:1883\n",
			[]string{`configs/x.yaml:3: mqtt.url: scheme must be tcp, ssl, mqtt, mqtts, ws or wss, got "http://broker:1883"`}},
		{"broker without port", "mqtt:\n  embedded: {enabled: false}\n  url: ssl://broker\n",
			[]string{`configs/x.yaml:3: mqtt.url: must give a port`}},
		{"broker URL hides password", "mqtt:\n  embedded: {enabled: false}\n  url: ftp://u:hunter2@broker\n",
			[]string{`configs/x.yaml:3: mqtt.url: scheme must be`, `u:xxxxx@broker`}},
		{"password without user", "mqtt:\n  password: p\n",
			[]string{`configs/x.yaml:2: mqtt.password: mqtt.password is set but mqtt.username is empty`}},
		{"topic root wildcard", "mqtt:\n  topic_root: loaxa/+\n",
			[]string{`configs/x.yaml:2: mqtt.topic_root: must not contain the MQTT wildcards`}},
		{"topic root slash", "mqtt:\n  topic_root: /loaxa/v1\n",
			[]string{`configs/x.yaml:2: mqtt.topic_root: must not begin or end with /`}},
		{"topic root empty", "mqtt:\n  topic_root: \"\"\n",
			[]string{`configs/x.yaml:2: mqtt.topic_root: must not be empty`}},
		{"client id of a device", "mqtt:\n  client_id: dev-1\n",
			[]string{`configs/x.yaml:2: mqtt.client_id: must not begin with "dev-"`}},
		{"public url scheme", "http:\n  public_url: loa.thanhhoa.gov.vn\n",
			[]string{`configs/x.yaml:2: http.public_url: must be an http:// or https:// URL`}},
		{"listen without port", "http:\n  listen: localhost\n",
			[]string{`configs/x.yaml:2: http.listen: must be host:port`}},
		{"embedded listen bad port", "mqtt:\n  embedded:\n    listen: 127.0.0.1:99999\n",
			[]string{`configs/x.yaml:3: mqtt.embedded.listen: port must be a number from 0 to 65535`}},
		{"mosquitto_dir with the embedded broker", "mqtt:\n  mosquitto_dir: /etc/mosquitto/loaxa\n",
			[]string{`configs/x.yaml:2: mqtt.mosquitto_dir: mqtt.mosquitto_dir keeps an external Mosquitto's password file and ACL: it needs mqtt.url, and mqtt.username and mqtt.password for the daemon's own user`}},
		{"mosquitto_reload alone", "mqtt:\n  mosquitto_reload: [systemctl, reload, mosquitto]\n",
			[]string{`configs/x.yaml:2: mqtt.mosquitto_reload: mqtt.mosquitto_reload is run after the files of mqtt.mosquitto_dir change: set that too`}},
		{"no read timeout", "http:\n  read_timeout: 0s\n",
			[]string{`configs/x.yaml:2: http.read_timeout: must be positive, got 0s`}},
		{"upload timeout below the read timeout", "http:\n  read_timeout: 2m\n  upload_timeout: 1m\n",
			[]string{`configs/x.yaml:3: http.upload_timeout: http.upload_timeout 1m is shorter than http.read_timeout 2m`}},
		{"no body rate", "http:\n  min_body_rate: 0\n",
			[]string{`configs/x.yaml:2: http.min_body_rate: must be at least 1`}},
		{"no auth failures", "http:\n  auth_failures: 0\n",
			[]string{`configs/x.yaml:2: http.auth_failures: must be at least 1, got 0`}},
		{"token max age of minutes", "tokens:\n  max_age: 10m\n",
			[]string{`configs/x.yaml:2: tokens.max_age: must be 0 (never expire) or at least 1h, got 10m`}},
		{"short retention", "retention: 720h\n",
			[]string{`configs/x.yaml:1: retention: must be at least 8784h (a year), got 720h`}},
		{"log level", "log:\n  level: verbose\n",
			[]string{`configs/x.yaml:2: log.level: must be debug, info, warn or error, got "verbose"`}},
		{"log format", "log:\n  format: xml\n",
			[]string{`configs/x.yaml:2: log.format: must be text or json, got "xml"`}},
		{"empty data_dir", "data_dir: \"\"\n",
			[]string{`configs/x.yaml:1: data_dir: must not be empty`}},
		{"syntax error", "http:\n  listen: [127.0.0.1\n",
			[]string{`configs/x.yaml:`, `YAML syntax:`}},
		{"tab indentation", "http:\n\tlisten: x\n",
			[]string{`configs/x.yaml:2: YAML syntax:`}},
		{"not a mapping", "- data_dir\n",
			[]string{`configs/x.yaml:1: the file must be a mapping of keys`}},
		{"two documents", "data_dir: a\n---\ndata_dir: b\n",
			[]string{`configs/x.yaml:2: a second YAML document`}},
		{"merge key", "base: &b {listen: \":80\"}\nhttp:\n  <<: *b\n",
			[]string{`configs/x.yaml:1: base: unknown key`, `configs/x.yaml:3: http: merge keys (<<) are not supported`}},
		{"control character in key", "\"a\\u0007b\": 1\n",
			[]string{`configs/x.yaml:1: "a\ab": unknown key`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(name, []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want an error", tt.yaml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, name+":") {
					t.Errorf("error line %q does not name the file", line)
				}
			}
		})
	}
}

// One round of editing should fix a file: every error is reported, in line order, and a
// value that could not be read does not draw a second error about the default left in
// its place.
func TestParseReportsAllErrors(t *testing.T) {
	src := `http:
  listn: x
policy:
  broadcast_hours: "21:00-05:00"
  slots: ["04:00"]
  freeze: abc
  min_played_ratio: 1.5
log:
  level: loud
`
	_, err := Parse("x.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("%T is not a joined error", err)
	}
	var got []string
	for _, e := range joined.Unwrap() {
		got = append(got, e.Error())
	}
	want := []string{
		`x.yaml:2: http.listn: unknown key (did you mean "listen"?)`,
		`x.yaml:4: policy.broadcast_hours: start must be before end, got 21:00-05:00 (for all day write 00:00-24:00)`,
		`x.yaml:6: policy.freeze: invalid duration "abc" (write it with a unit: 90s, 15m, 1h30m, 168h)`,
		`x.yaml:7: policy.min_played_ratio: must be more than 0 and at most 1, got 1.5`,
		`x.yaml:9: log.level: must be debug, info, warn or error, got "loud"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(Config) bool
	}{
		{"empty file", "", func(c Config) bool { return reflect.DeepEqual(c, Default()) }},
		{"comments only", "# nothing\n", func(c Config) bool { return reflect.DeepEqual(c, Default()) }},
		{"empty section", "http:\n  # listen: :80\n", func(c Config) bool { return c.HTTP == Default().HTTP }},
		{"null string is empty", "mqtt:\n  embedded: {enabled: false}\n  url: tcp://b:1883\n  username: u\n  password:\n",
			func(c Config) bool { return c.MQTT.Password == "" && c.MQTT.URL == "tcp://b:1883" }},
		{"number as password", "mqtt:\n  username: u\n  password: 012345\n", func(c Config) bool { return c.MQTT.Password == "012345" }},
		{"integer ratio", "policy:\n  min_device_ratio: 1\n", func(c Config) bool { return c.Policy.MinDeviceRatio == 1 }},
		{"zero duration", "policy:\n  freeze: 0\n", func(c Config) bool { return c.Policy.Freeze == 0 }},
		{"all day", "policy:\n  broadcast_hours: \"00:00-24:00\"\n  slots: [\"00:00\", \"23:59\"]\n",
			func(c Config) bool { return c.Policy.BroadcastHours == Hours{0, 1440} }},
		{"slots sorted", "policy:\n  slots: [\"17:00\", \"06:30\"]\n",
			func(c Config) bool { return slices.Equal(c.Policy.SlotMinutes(), []int{390, 1020}) }},
		{"alias", "http:\n  listen: &p 127.0.0.1:9000\nmqtt:\n  embedded:\n    listen: *p\n",
			func(c Config) bool { return c.MQTT.Embedded.Listen == "127.0.0.1:9000" }},
		{"websocket broker without port", "mqtt:\n  embedded: {enabled: false}\n  url: wss://broker/mqtt\n",
			func(c Config) bool { return c.MQTT.URL == "wss://broker/mqtt" }},
		{"listen on every interface, any port", "http:\n  listen: \":0\"\n", func(c Config) bool { return c.HTTP.Listen == ":0" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("x.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("unexpected config %+v", cfg)
			}
		})
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "etc")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(dir, "abs.csv")
	for _, tt := range []struct {
		file           string
		dataDir, units string
	}{
		{"data_dir: state\nunits_csv: ../units.csv\n", filepath.Join(sub, "state"), filepath.Join(dir, "units.csv")},
		{"data_dir: ./state\n", filepath.Join(sub, "state"), ""},
		{"units_csv: " + abs + "\n", "./data", abs}, // data_dir not in the file: stays the working-directory default
	} {
		path := filepath.Join(sub, "loaxad.yaml")
		if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadWithEnv(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.DataDir != tt.dataDir || cfg.UnitsCSV != tt.units {
			t.Errorf("%q: data_dir %q units_csv %q, want %q %q", tt.file, cfg.DataDir, cfg.UnitsCSV, tt.dataDir, tt.units)
		}
	}

	// From the environment a relative path is the shell's: relative to the working directory.
	cfg, err := LoadWithEnv(filepath.Join(sub, "loaxad.yaml"), []string{"LOAXA_DATA_DIR=var/loaxa", "LOAXA_UNITS_CSV=u.csv"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "var/loaxa" || cfg.UnitsCSV != "u.csv" {
		t.Errorf("env paths became %q %q", cfg.DataDir, cfg.UnitsCSV)
	}
}

func TestEnvOverridesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loaxad.yaml")
	file := "http:\n  listen: 127.0.0.1:8080\npolicy:\n  min_replays: 3\n  slots: [\"22:30\"]\n"
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"HOME=/root",
		"LOAXA_URL=https://loa.example", // the client's: ignored
		"LOAXA_TOKEN=abc",
		"LOAXA_HTTP_LISTEN=0.0.0.0:9090",
		"LOAXA_HTTP_METRICS_PUBLIC=0",
		"LOAXA_MQTT_EMBEDDED_ENABLED=false",
		"LOAXA_MQTT_URL=ssl://broker.example:8883",
		"LOAXA_MQTT_PASSWORD=p=w", // "=" inside a value stays
		"LOAXA_MQTT_USERNAME=loaxad",
		"LOAXA_POLICY_MIN_REPLAYS=5",
		"LOAXA_POLICY_MIN_PLAYED_RATIO=0.95",
		"LOAXA_POLICY_FREEZE=2h",
		"LOAXA_POLICY_BROADCAST_HOURS=05:00-21:00",
		// The file's slot lies outside the hours; the variable replaces the whole list, so
		// the file's item must no longer be judged.
		"LOAXA_POLICY_SLOTS=07:00, 18:30",
		"LOAXA_RETENTION=87600h",
		"LOAXA_LOG_FORMAT=json",
	}
	cfg, err := LoadWithEnv(path, env)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.HTTP.Listen = "0.0.0.0:9090"
	want.HTTP.MetricsPublic = false
	want.MQTT.Embedded.Enabled = false
	want.MQTT.URL = "ssl://broker.example:8883"
	want.MQTT.Username, want.MQTT.Password = "loaxad", "p=w"
	want.Policy.MinReplays = 5
	want.Policy.MinPlayedRatio = 0.95
	want.Policy.Freeze = 2 * time.Hour
	want.Policy.Slots = []string{"07:00", "18:30"}
	want.Retention = 10 * 365 * 24 * time.Hour
	want.Log.Format = "json"
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct {
		env  string
		want string
	}{
		{"LOAXA_POLICY_FREEZE=abc", `LOAXA_POLICY_FREEZE: invalid duration "abc"`},
		{"LOAXA_POLICY_MIN_REPLAYS=many", `LOAXA_POLICY_MIN_REPLAYS: must be a whole number, got "many"`},
		{"LOAXA_POLICY_MIN_REPLAYS=40", `LOAXA_POLICY_MIN_REPLAYS: must be between 0 and 31, got 40`},
		{"LOAXA_POLICY_MIN_DEVICE_RATIO=1.5", `LOAXA_POLICY_MIN_DEVICE_RATIO: must be more than 0 and at most 1, got 1.5`},
		{"LOAXA_MQTT_EMBEDDED_ENABLED=maybe", `LOAXA_MQTT_EMBEDDED_ENABLED: must be true or false, got "maybe"`},
		{"LOAXA_MQTT_EMBEDDED_ENABLED=false", `LOAXA_MQTT_EMBEDDED_ENABLED: mqtt.url is empty and the embedded broker is disabled`},
		{"LOAXA_POLICY_SLOTS=06:00,25:00", `LOAXA_POLICY_SLOTS: "25:00" is not a time of day`},
		{"LOAXA_POLICY_SLOTS=", `LOAXA_POLICY_SLOTS: must list at least one start time`},
		{"LOAXA_POLICY_BROADCAST_HOURS=21:00-05:00", `LOAXA_POLICY_BROADCAST_HOURS: start must be before end`},
		{"LOAXA_TIMEZONE=Asia/Nowhere", `LOAXA_TIMEZONE: unknown time zone "Asia/Nowhere"`},
		{"LOAXA_HTTP_LISTN=:80", `LOAXA_HTTP_LISTN: matches no configuration key (did you mean LOAXA_HTTP_LISTEN?)`},
		{"LOAXA_MQTT_EMBEDDED=true", `LOAXA_MQTT_EMBEDDED: matches no configuration key (it names a section; set its keys: LOAXA_MQTT_EMBEDDED_ENABLED, LOAXA_MQTT_EMBEDDED_LISTEN)`},
		{"LOAXA_COLOUR=blue", `LOAXA_COLOUR: matches no configuration key`},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			_, err := LoadWithEnv("", []string{tt.env})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadWithEnv(%s) = %v, want an error containing %s", tt.env, err, tt.want)
			}
		})
	}
}

// Errors of the file and of the environment come together, the file's first.
func TestLoadReportsFileAndEnvErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("policy:\n  min_replays: 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadWithEnv(path, []string{"LOAXA_POLICY_LEAD=soon"})
	want := path + ":2: policy.min_replays: must be between 0 and 31, got 99\n" +
		`LOAXA_POLICY_LEAD: invalid duration "soon" (write it with a unit: 90s, 15m, 1h30m, 168h)`
	if err == nil || err.Error() != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}
}

func TestApplyEnv(t *testing.T) {
	cfg := Default()
	err := ApplyEnv(&cfg, []string{"LOAXA_DEVICES_SEQ_GAP_TIMEOUT=1m", "LOAXA_LOG_LEVEL=debug", "LOAXA_POLICY_GRACE=x", "NOT_OURS=1"})
	if err == nil || err.Error() != `LOAXA_POLICY_GRACE: invalid duration "x" (write it with a unit: 90s, 15m, 1h30m, 168h)` {
		t.Errorf("err = %v", err)
	}
	if cfg.Devices.SeqGapTimeout != time.Minute || cfg.Log.Level != "debug" || cfg.Policy.Grace != Default().Policy.Grace {
		t.Errorf("cfg = %+v", cfg)
	}
}

// Every key can be set from the environment, under a name no other key shares.
func TestEveryKeyHasAnEnvVariable(t *testing.T) {
	sample := map[reflect.Type]string{
		reflect.TypeFor[string]():  "x",
		reflect.TypeFor[bool]():    "true",
		reflect.TypeFor[int]():     "4",
		reflect.TypeFor[float64](): "0.5",
		durationType:               "3h",
		hoursType:                  "06:00-18:00",
		stringsType:                "06:00,07:00",
	}
	seen := map[string]string{}
	for _, k := range flatten(schema()) {
		if k.children != nil {
			continue
		}
		name := EnvName(k.path)
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share %s", k.path, other, name)
		}
		seen[name] = k.path
		s, ok := sample[k.typ]
		if k.typ.Kind() == reflect.Bool { // the opposite of the default, so that it shows
			s = strconv.FormatBool(!Default().field(k).Bool())
		}
		if !ok {
			t.Errorf("%s: no sample for %s", k.path, k.typ)
			continue
		}
		cfg := Default()
		if err := ApplyEnv(&cfg, []string{name + "=" + s}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if reflect.DeepEqual(cfg.field(k).Interface(), Default().field(k).Interface()) {
			t.Errorf("%s=%s changed nothing", name, s)
		}
	}
	if len(seen) != 37 {
		t.Errorf("%d keys, want the 20 of the first contract and 17 extensions", len(seen))
	}
}

func (c Config) field(k *key) reflect.Value { return reflect.ValueOf(c).FieldByIndex(k.index) }

func TestValidateWithoutFile(t *testing.T) {
	cfg := Default()
	cfg.Policy.MinPlayedRatio = 2
	cfg.MQTT.TopicRoot = "loaxa/#"
	err := cfg.Validate()
	want := "mqtt.topic_root: must not contain the MQTT wildcards + or #, got \"loaxa/#\"\n" +
		"policy.min_played_ratio: must be more than 0 and at most 1, got 2"
	if err == nil || err.Error() != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}
}

func TestLocationPanicsOnInvalidZone(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	Config{Timezone: "Local"}.Location()
}

func TestHours(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Hours
		err  string
	}{
		{"05:00-21:00", Hours{300, 1260}, ""},
		{"00:00-24:00", Hours{0, 1440}, ""},
		{" 06:30 - 18:15 ", Hours{390, 1095}, ""},
		{"21:00-05:00", Hours{}, "start must be before end"},
		{"08:00-08:00", Hours{}, "start must be before end"},
		{"24:00-24:00", Hours{}, `"24:00" is not a time of day`},
		{"05:00-24:01", Hours{}, `"24:01" is not a time of day`},
		{"05:00", Hours{}, "must be HH:MM-HH:MM"},
		{"5:00-21:00", Hours{}, `must be HH:MM, got "5:00"`},
		{"05:60-21:00", Hours{}, "not a time of day"},
		{"٠٥:٠٠-21:00", Hours{}, "must be HH:MM"}, // digits, but not ASCII ones
	} {
		got, err := ParseHours(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseHours(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseHours(%q) error = %v, want %q", tt.in, err, tt.err)
		}
	}
	h := Hours{300, 1260}
	if !h.Contains(300) || !h.Contains(1259) || h.Contains(1260) || h.Contains(299) {
		t.Error("Contains is not [Start, End)")
	}
	var back Hours
	text, _ := h.MarshalText()
	if err := back.UnmarshalText(text); err != nil || back != h {
		t.Errorf("round trip %s → %v, %v", text, back, err)
	}
}

func TestSlogLevel(t *testing.T) {
	for _, l := range []string{"debug", "info", "warn", "error"} {
		if got := (Log{Level: l}).SlogLevel().String(); !strings.EqualFold(got, l) {
			t.Errorf("%s → %s", l, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"loaxad.example.yaml", "thanh-hoa.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "~", "---\n---\n", "http: {listen: *a}", "a: &a [*a]\nhttp: *a\n",
		"policy:\n  slots: &s [\"06:00\", *s]\n", "mqtt: &m\n  embedded: *m\n",
		"policy: {broadcast_hours: \"00:00-24:00\", slots: [\"23:59\"], min_replays: 0x1F}",
		"? [a]\n: b\n", "<<: {data_dir: x}\n", "timezone: ../../../etc/passwd\n",
		"policy:\n  min_played_ratio: -.inf\n  lead: 9223372036854775807ns\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		cfg, err := Parse(name, data)
		if err != nil {
			// Whatever the input, each error names the file.
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, name+":") {
					t.Fatalf("error line %q does not name the file", line)
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate refuses: %v", err)
		}
	})
}
