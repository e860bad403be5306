package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// key is one key of the file, a section or a value. The keys are found by reflecting over
// Config's yaml tags, so that the struct, the file and the environment variables cannot
// drift apart: a field added to Config is a key and a variable at once.
type key struct {
	name     string
	path     string // "policy.min_replays"
	index    []int  // for reflect.Value.FieldByIndex on a Config
	typ      reflect.Type
	children []*key // a section's keys; nil for a value
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	hoursType    = reflect.TypeFor[Hours]()
	stringsType  = reflect.TypeFor[[]string]()
)

// schema is rebuilt per call rather than kept in a package variable: it costs microseconds
// next to reading a file, and the package keeps no state.
func schema() []*key { return structKeys(reflect.TypeFor[Config](), "", nil) }

func structKeys(t reflect.Type, prefix string, index []int) []*key {
	keys := make([]*key, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		k := &key{name: f.Tag.Get("yaml"), typ: f.Type, index: append(slices.Clip(index), i)}
		k.path = joinPath(prefix, k.name)
		if f.Type.Kind() == reflect.Struct && f.Type != hoursType {
			k.children = structKeys(f.Type, k.path, k.index)
		}
		keys = append(keys, k)
	}
	return keys
}

// flatten lists every key, sections before their keys.
func flatten(keys []*key) []*key {
	var all []*key
	for _, k := range keys {
		all = append(all, k)
		all = append(all, flatten(k.children)...)
	}
	return all
}

// keyName quotes a key that is not plain printable text, so that a stray control character
// or line break in a file cannot garble the one-line error that names it.
func keyName(s string) string {
	if s != "" && utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) || unicode.IsSpace(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// decoder walks the YAML node tree along the schema. It never follows the document beyond the
// schema's depth, so that aliases cannot make it loop or expand a document exponentially.
type decoder struct {
	file string
	cfg  reflect.Value // the Config being filled, addressable
	keys []*key
	src  *sources
}

// parse decodes data over the defaults and records in src where each key was set and what
// was wrong; it does not run Validate.
func parse(name string, data []byte, src *sources) Config {
	cfg := Default()
	file := name
	if file == "" {
		file = "config"
	}
	d := &decoder{file: file, cfg: reflect.ValueOf(&cfg).Elem(), keys: schema(), src: src}
	if root := d.document(data); root != nil {
		d.mapping(root, d.keys, "")
	}
	// Paths are resolved after decoding, and only for values the file set: a default or an
	// absolute path is left as it is.
	dir := filepath.Dir(name)
	for _, p := range []struct {
		key string
		val *string
	}{{"data_dir", &cfg.DataDir}, {"units_csv", &cfg.UnitsCSV}, {"mqtt.mosquitto_dir", &cfg.MQTT.MosquittoDir}} {
		if _, set := src.origins[p.key]; set && *p.val != "" && !filepath.IsAbs(*p.val) {
			*p.val = filepath.Join(dir, *p.val)
		}
	}
	return cfg
}

func (d *decoder) problem(line int, key, msg string) {
	d.src.add(origin{file: d.file, line: line}, key, msg)
}

// document returns the top-level mapping, or nil when there is nothing to decode (an empty
// file, a file of comments, or an error already recorded).
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.syntaxError(err)
		}
		return nil
	}
	// A second document would be silently ignored by a plain decoder; an operator who
	// appended one (say, by concatenating two files) would wonder why it had no effect.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
	default:
		d.problem(extra.Line, "", "a second YAML document: put every key in the first one (remove the ---)")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	root = deref(root)
	switch {
	case isNull(root):
		return nil
	case root.Kind != yaml.MappingNode:
		d.problem(root.Line, "", "the file must be a mapping of keys such as \"data_dir: ./data\", got "+describe(root))
		return nil
	}
	return root
}

// syntaxError turns yaml's "yaml: line 3: …" into "file:3: …", so that syntax errors read
// like every other error.
func (d *decoder) syntaxError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, after
			}
		}
	}
	d.problem(line, "", "YAML syntax: "+msg)
}

func (d *decoder) mapping(n *yaml.Node, keys []*key, prefix string) {
	firstAt := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := deref(n.Content[i]), deref(n.Content[i+1])
		if kn.Kind != yaml.ScalarNode {
			d.problem(kn.Line, prefix, "keys must be plain names, got "+describe(kn))
			continue
		}
		path := joinPath(prefix, keyName(kn.Value))
		if kn.ShortTag() == "!!merge" {
			d.problem(kn.Line, prefix, "merge keys (<<) are not supported: write the keys out")
			continue
		}
		if first, dup := firstAt[kn.Value]; dup {
			d.problem(kn.Line, path, fmt.Sprintf("duplicate key (first at line %d)", first))
			continue
		}
		firstAt[kn.Value] = kn.Line
		at := slices.IndexFunc(keys, func(k *key) bool { return k.name == kn.Value })
		if at < 0 {
			d.problem(kn.Line, path, "unknown key"+d.suggest(kn.Value, keys))
			continue
		}
		k := keys[at]
		d.src.origins[path] = origin{file: d.file, line: kn.Line}
		switch {
		case k.children != nil:
			d.section(vn, k)
		case k.typ == stringsType:
			d.list(vn, k)
		default:
			d.value(vn, k)
		}
	}
}

func (d *decoder) section(n *yaml.Node, k *key) {
	switch {
	case isNull(n):
		// "http:" with every key under it commented out: the defaults, not an error.
	case n.Kind != yaml.MappingNode:
		d.problem(n.Line, k.path, "must be a section of keys, got "+describe(n))
	default:
		d.mapping(n, k.children, k.path)
	}
}

func (d *decoder) list(n *yaml.Node, k *key) {
	if n.Kind != yaml.SequenceNode {
		d.problem(n.Line, k.path, `must be a list such as ["06:00", "17:00"], got `+describe(n))
		return
	}
	items := make([]string, 0, len(n.Content))
	ok := true
	for i, item := range n.Content {
		item = deref(item)
		path := fmt.Sprintf("%s[%d]", k.path, i)
		if item.Kind != yaml.ScalarNode || isNull(item) || !standardTag(item) {
			d.problem(item.Line, path, "must be a single value, got "+describe(item))
			ok = false
			continue
		}
		d.src.origins[path] = origin{file: d.file, line: item.Line}
		items = append(items, item.Value)
	}
	if !ok {
		// Keep the default list, and keep Validate from judging it against this file.
		d.src.failed[k.path] = true
		return
	}
	d.cfg.FieldByIndex(k.index).Set(reflect.ValueOf(items))
}

func (d *decoder) value(n *yaml.Node, k *key) {
	v, err := scalarValue(n, k.typ)
	if err != nil {
		d.problem(n.Line, k.path, err.Error())
		return
	}
	d.cfg.FieldByIndex(k.index).Set(v)
}

// scalarValue is strict where YAML is lenient: a bool must be true or false (not "yes", not
// "true" in quotes), a number must be written as one, and nothing may be null except a
// string, where "key:" with no value plainly means empty.
func scalarValue(n *yaml.Node, t reflect.Type) (reflect.Value, error) {
	if n.Kind != yaml.ScalarNode || !standardTag(n) {
		return reflect.Value{}, fmt.Errorf("must be %s, got %s", want(t), describe(n))
	}
	if isNull(n) {
		if t.Kind() == reflect.String {
			return reflect.ValueOf("").Convert(t), nil
		}
		return reflect.Value{}, fmt.Errorf("has no value: give %s, or remove the key to keep the default", want(t))
	}
	tag := n.ShortTag()
	switch {
	case t == durationType, t == hoursType:
		return fromString(n.Value, t)
	case t.Kind() == reflect.String:
		// Any scalar is taken as written: "password: 123456" is a password, not a number.
		return reflect.ValueOf(n.Value).Convert(t), nil
	case t.Kind() == reflect.Bool && tag == "!!bool",
		t.Kind() == reflect.Int && tag == "!!int",
		t.Kind() == reflect.Float64 && (tag == "!!float" || tag == "!!int"):
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			return reflect.Value{}, fmt.Errorf("must be %s, got %s", want(t), describe(n))
		}
		return v.Elem(), nil
	}
	return reflect.Value{}, fmt.Errorf("must be %s, got %s", want(t), describe(n))
}

// fromString reads a value as written in the environment (and durations and hours as written
// in the file, where they are strings too).
func fromString(s string, t reflect.Type) (reflect.Value, error) {
	switch {
	case t == durationType:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return reflect.Value{}, fmt.Errorf("invalid duration %q (write it with a unit: 90s, 15m, 1h30m, 168h)", s)
		}
		return reflect.ValueOf(d), nil
	case t == hoursType:
		h, err := ParseHours(s)
		if err != nil {
			return reflect.Value{}, err
		}
		return reflect.ValueOf(h), nil
	case t == stringsType:
		items := []string{}
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		return reflect.ValueOf(items), nil
	}
	switch t.Kind() {
	case reflect.String:
		return reflect.ValueOf(s).Convert(t), nil
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return reflect.Value{}, fmt.Errorf("must be true or false, got %q", s)
		}
		return reflect.ValueOf(b), nil
	case reflect.Int:
		i, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return reflect.Value{}, fmt.Errorf("must be a whole number, got %q", s)
		}
		return reflect.ValueOf(i), nil
	case reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("must be a number, got %q", s)
		}
		return reflect.ValueOf(f), nil
	}
	// Only reached if Config gains a field of a type this file does not know yet; the tests
	// decode every key from the environment, so it cannot ship unnoticed.
	return reflect.Value{}, fmt.Errorf("configs: no decoder for %s", t)
}

// want says what a key of type t takes, for error messages.
func want(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 15m or 168h"
	case t == hoursType:
		return "hours such as \"05:00-21:00\""
	case t == stringsType:
		return "a list"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	}
	return "a single value"
}

// describe names what the file holds at n, quoting short scalars so the operator can find them.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
	default:
		return "nothing usable"
	}
	if isNull(n) {
		return "no value"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return fmt.Sprintf("the quoted text %q", v)
	}
	if tag := n.ShortTag(); !standardTag(n) {
		return fmt.Sprintf("%q with the tag %s", v, keyName(tag))
	}
	return fmt.Sprintf("%q", v)
}

// standardTag refuses application tags such as "!secret": they would be silently ignored, and
// whoever wrote one expected something to happen.
func standardTag(n *yaml.Node) bool { return strings.HasPrefix(n.ShortTag(), "!!") }

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// deref follows an alias to its anchored node. An anchor cannot sit on an alias, so one step
// suffices; a dangling alias is left for the caller to refuse as an unexpected node.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// suggest offers the nearest sibling key, or the keys of that name in other sections.
func (d *decoder) suggest(name string, siblings []*key) string {
	names := make([]string, len(siblings))
	for i, k := range siblings {
		names[i] = k.name
	}
	if best := closest(name, names); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	var elsewhere []string
	for _, k := range flatten(d.keys) {
		if k.name == name {
			elsewhere = append(elsewhere, strconv.Quote(k.path))
		}
	}
	if len(elsewhere) > 0 {
		return " (did you mean " + strings.Join(elsewhere, " or ") + "?)"
	}
	return ""
}

// closest returns the candidate nearest to s by edit distance, if it is near enough to be a
// typo rather than a different word.
func closest(s string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		dist := editDistance(s, c)
		if dist > 0 && dist <= 2 && 2*dist <= len(s) && (bestDist < 0 || dist < bestDist) {
			best, bestDist = c, dist
		}
	}
	return best
}

// editDistance is Levenshtein's distance over bytes, in one row of memory.
func editDistance(a, b string) int {
	row := make([]int, len(b)+1)
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(a); i++ {
		prev := row[0]
		row[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			prev, row[j] = row[j], min(row[j]+1, row[j-1]+1, prev+cost)
		}
	}
	return row[len(b)]
}
