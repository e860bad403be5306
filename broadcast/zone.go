package broadcast

import (
	"fmt"
	"sync"
	"time"
)

var zones sync.Map // name → *time.Location

// Zone is time.LoadLocation with a cache: LoadLocation reads and parses the
// zone file on every call, and a national report or scheduling pass asks
// for the same zone for each of 10,047 stations. "" is DefaultTimezone.
func Zone(name string) (*time.Location, error) {
	if name == "" {
		name = DefaultTimezone
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", name, err)
	}
	zones.Store(name, loc)
	return loc, nil
}
