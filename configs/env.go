package configs

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

const envPrefix = "LOAXA_"

// isClientVariable tells the loaxa command line client's variables, which often sit in the
// same shell as the daemon's, from configuration keys, so that they are not refused as unknown.
func isClientVariable(name string) bool { return name == "LOAXA_URL" || name == "LOAXA_TOKEN" }

// EnvName returns the environment variable that overrides the key at path, e.g.
// "policy.min_replays" → "LOAXA_POLICY_MIN_REPLAYS".
func EnvName(path string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// ApplyEnv overrides cfg with every LOAXA_<KEY> variable in environ (as os.Environ returns
// it): the key's path in upper case with "." as "_", e.g. LOAXA_DATA_DIR,
// LOAXA_MQTT_EMBEDDED_ENABLED, LOAXA_POLICY_FREEZE=2h. Values are written as in the file,
// except that booleans also take 1/0, and lists (LOAXA_POLICY_SLOTS) are comma-separated.
// Relative paths stay relative to the working directory.
//
// Any other LOAXA_ variable, except the client's LOAXA_URL and LOAXA_TOKEN, is an error:
// a misspelt override that is silently ignored is the hardest mistake to find.
// ApplyEnv sets what it can read and reports the rest; it does not run Validate.
func ApplyEnv(cfg *Config, environ []string) error {
	src := newSources()
	applyEnv(cfg, environ, src)
	errs := make([]error, len(src.problems))
	for i, p := range src.problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}

func applyEnv(cfg *Config, environ []string, src *sources) {
	byName := map[string]*key{}
	for _, k := range flatten(schema()) {
		if k.children == nil {
			byName[EnvName(k.path)] = k
		}
	}
	v := reflect.ValueOf(cfg).Elem()
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) || isClientVariable(name) {
			continue
		}
		o := origin{env: name}
		k := byName[name]
		if k == nil {
			src.add(o, "", "matches no configuration key"+suggestEnv(name, byName))
			continue
		}
		x, err := fromString(val, k.typ)
		if err != nil {
			src.add(o, k.path, err.Error())
			continue
		}
		v.FieldByIndex(k.index).Set(x)
		// The variable now owns the key: Validate's findings about it point here, not at a
		// file line whose value (or whose list items) no longer count.
		src.origins[k.path] = o
		delete(src.failed, k.path)
		for p := range src.origins {
			if strings.HasPrefix(p, k.path+"[") {
				delete(src.origins, p)
			}
		}
	}
}

// suggestEnv offers the variable nearest to a misspelt one, or the keys of a section named
// on its own (LOAXA_MQTT_EMBEDDED).
func suggestEnv(name string, byName map[string]*key) string {
	var names, under []string
	for n := range byName {
		names = append(names, n)
		if strings.HasPrefix(n, name+"_") {
			under = append(under, n)
		}
	}
	if len(under) > 0 {
		slices.Sort(under)
		return fmt.Sprintf(" (it names a section; set its keys: %s)", strings.Join(under, ", "))
	}
	slices.Sort(names) // so that ties resolve the same way every run
	if best := closest(strings.TrimPrefix(name, envPrefix), trimAll(names)); best != "" {
		return fmt.Sprintf(" (did you mean %s?)", envPrefix+best)
	}
	return ""
}

func trimAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.TrimPrefix(n, envPrefix)
	}
	return out
}
