package devices

import (
	"fmt"
	"strings"

	"github.com/loaxa/loaxa/broadcast"
)

// DefaultTopicRoot is docs/protocol.md's default <root>.
const DefaultTopicRoot = "loaxa/v1"

// The four topics of a device, as in docs/protocol.md.
const (
	kindSchedule = "schedule"
	kindCmd      = "cmd"
	kindEvents   = "events"
	kindStatus   = "status"
)

// topics renders and parses the topics under one root.
type topics struct{ root string }

func newTopics(root string) (topics, error) {
	if root == "" {
		root = DefaultTopicRoot
	}
	// The root ends up inside ACL patterns and subscription filters, where a
	// wildcard, an empty level or a leading '$' would change their meaning.
	if strings.ContainsAny(root, "+#\x00") || strings.HasPrefix(root, "/") || strings.HasSuffix(root, "/") ||
		strings.Contains(root, "//") || strings.HasPrefix(root, "$") {
		return topics{}, fmt.Errorf("topic root %q: want levels without wildcards, e.g. %q", root, DefaultTopicRoot)
	}
	return topics{root: root}, nil
}

func (t topics) device(id, kind string) string { return t.root + "/dev/" + id + "/" + kind }

// filter is the daemon's subscription for one kind of device topic.
func (t topics) filter(kind string) string { return t.root + "/dev/+/" + kind }

// parse splits <root>/dev/<id>/<kind>; ok is false for anything else,
// including an id that is not a valid device id.
func (t topics) parse(topic string) (id, kind string, ok bool) {
	rest, found := strings.CutPrefix(topic, t.root+"/dev/")
	if !found {
		return "", "", false
	}
	id, kind, found = strings.Cut(rest, "/")
	if !found || !broadcast.ValidID(id) {
		return "", "", false
	}
	switch kind {
	case kindSchedule, kindCmd, kindEvents, kindStatus:
		return id, kind, true
	}
	return "", "", false
}
