package configs

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// origin is where a key's value came from: a line of a file, or an environment variable.
// The zero origin is the default.
type origin struct {
	file string
	line int
	env  string
}

// problem is one error, rendered as "file:line: key: msg", "LOAXA_…: msg" or "key: msg".
// The environment form leaves out the key because the variable's name already spells it.
type problem struct {
	origin
	key string // "" for problems of the file as a whole (syntax)
	msg string
}

func (p *problem) Error() string {
	var b strings.Builder
	switch {
	case p.env != "":
		b.WriteString(p.env)
	case p.file != "" && p.line > 0:
		fmt.Fprintf(&b, "%s:%d", p.file, p.line)
	case p.file != "":
		b.WriteString(p.file)
	default:
		b.WriteString(p.key)
	}
	if p.key != "" && p.env == "" && p.file != "" {
		b.WriteString(": ")
		b.WriteString(p.key)
	}
	b.WriteString(": ")
	b.WriteString(p.msg)
	// errors.Join puts one problem per line, and operators (and grep) read them so: a line
	// break smuggled in from the file, say in a YAML error quoting it, must not split one.
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(b.String())
}

// sources accumulates, across the file and the environment, where each key was set and what
// went wrong, so that Validate's findings can be placed and all problems returned together.
type sources struct {
	origins  map[string]origin // by key path; list items as "policy.slots[1]"
	failed   map[string]bool   // keys whose value could not be read
	problems []*problem
}

func newSources() *sources {
	return &sources{origins: map[string]origin{}, failed: map[string]bool{}}
}

func (s *sources) add(o origin, key, msg string) {
	s.problems = append(s.problems, &problem{origin: o, key: key, msg: msg})
	if key != "" {
		s.failed[key] = true
	}
}

// locate finds where key was set: the exact key, else the list it is an item of.
func (s *sources) locate(key string) (origin, bool) {
	if o, ok := s.origins[key]; ok {
		return o, true
	}
	o, ok := s.origins[listKey(key)]
	return o, ok
}

// listKey turns "policy.slots[1]" into "policy.slots".
func listKey(key string) string {
	if i := strings.IndexByte(key, '['); i >= 0 {
		return key[:i]
	}
	return key
}

// finish validates cfg, places each finding at the first of its keys that the file or the
// environment set, and returns every problem, those of the file in line order first.
func (s *sources) finish(cfg Config) error {
	for _, c := range cfg.checks() {
		// A key whose value could not be read holds its default; judging that default
		// would only add a confusing second error about a value nobody wrote.
		if slices.ContainsFunc(c.keys, func(k string) bool { return s.failed[k] || s.failed[listKey(k)] }) {
			continue
		}
		p := &problem{key: c.keys[0], msg: c.msg}
		for _, k := range c.keys {
			if o, ok := s.locate(k); ok {
				p.origin, p.key = o, k
				break
			}
		}
		s.problems = append(s.problems, p)
	}
	if len(s.problems) == 0 {
		return nil
	}
	rank := func(p *problem) int {
		switch {
		case p.file != "":
			return 0
		case p.env != "":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(s.problems, func(a, b *problem) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.line, b.line))
	})
	errs := make([]error, len(s.problems))
	for i, p := range s.problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}
