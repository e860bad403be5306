package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/loaxa/loaxa/broadcast"
	"go.yaml.in/yaml/v3"
)

// DefaultTopicRoot is docs/protocol.md's default topic root.
const DefaultTopicRoot = "loaxa/v1"

// Config is one device's configuration, key for key the YAML file that
// LoadConfig reads. Tests and the simulator fill it directly.
type Config struct {
	// Device is the device id the daemon issued, e.g. "14755-03".
	Device string `yaml:"device"`
	// Secret is the device's secret: its MQTT password and its HTTP Basic
	// password for audio downloads.
	Secret string `yaml:"secret"`
	// Broker is the MQTT broker, tcp://host:port (ssl://, ws://, wss:// too).
	Broker string `yaml:"broker"`
	// DaemonURL is informative only (logged at start): the audio URLs the
	// device fetches come in its snapshots.
	DaemonURL string `yaml:"daemon_url"`
	// TopicRoot defaults to loaxa/v1.
	TopicRoot string `yaml:"topic_root"`
	// KeyFile is the ed25519 private key that signs events (see WriteKeyFile).
	// Empty: events go unsigned, which the daemon accepts only from a device
	// with no registered public key.
	KeyFile string `yaml:"key_file"`
	// DataDir holds agent.db and the audio cache.
	DataDir string `yaml:"data_dir"`
	// Player is ["null"] (the default: wait the audio's duration in silence)
	// or a command whose arguments may hold {file} and {volume}.
	Player []string `yaml:"player"`
	// Volume is 1-100, substituted for {volume}; 0 leaves the player's own.
	Volume int `yaml:"volume"`
}

// LoadConfig reads a YAML config file strictly: an unknown or duplicate key
// is an error that names the file and the line, because the person who reads
// it is a technician at a commune with an editor open. Relative paths in the
// file (data_dir, key_file) are taken relative to the file's directory, so that
// systemd can start the agent from "/".
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(raw)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&cfg.DataDir, &cfg.KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML without validating it; LoadConfig validates.
func ParseConfig(raw []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		// yaml's messages already carry "line N: field x not found".
		return Config{}, fmt.Errorf("config: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("config: more than one YAML document; the agent reads one")
	}
	return cfg, nil
}

// withDefaults fills what may be left out.
func (c Config) withDefaults() Config {
	if c.TopicRoot == "" {
		c.TopicRoot = DefaultTopicRoot
	}
	// `player: [null]` unquoted is YAML's null, which decodes as "".
	if len(c.Player) == 0 || len(c.Player) == 1 && c.Player[0] == "" {
		c.Player = []string{"null"}
	}
	return c
}

// Validate checks a config after defaults, with messages that name the key.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if !broadcast.ValidID(c.Device) {
		bad("device", "%q is not 1-64 characters of A-Z a-z 0-9 _ -", c.Device)
	}
	if c.Secret == "" {
		bad("secret", "is required (the daemon shows it once when the device is added)")
	}
	if u, err := url.Parse(c.Broker); err != nil || u.Host == "" {
		bad("broker", "%q is not a URL like tcp://host:1883", c.Broker)
	} else {
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
		default:
			bad("broker", "scheme %q is not one of tcp, ssl, ws, wss", u.Scheme)
		}
	}
	if c.DaemonURL != "" {
		if u, err := url.Parse(c.DaemonURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			bad("daemon_url", "%q is not an http(s) URL", c.DaemonURL)
		}
	}
	if strings.ContainsAny(c.TopicRoot, "+#") || strings.HasPrefix(c.TopicRoot, "/") || strings.HasSuffix(c.TopicRoot, "/") {
		bad("topic_root", "%q may hold no wildcard and no leading or trailing /", c.TopicRoot)
	}
	if c.DataDir == "" {
		bad("data_dir", "is required (the agent keeps its state and audio cache there)")
	}
	if c.Player[0] != "null" {
		found := false
		for _, a := range c.Player {
			found = found || strings.Contains(a, "{file}")
		}
		if !found {
			bad("player", "the command %q never names {file}, so it could not play the audio", c.Player)
		}
	} else if len(c.Player) > 1 {
		bad("player", `"null" takes no arguments`)
	}
	if c.Volume < 0 || c.Volume > 100 {
		bad("volume", "%d is not within 0-100", c.Volume)
	}
	return errors.Join(errs...)
}
