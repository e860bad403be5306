package broadcast

import (
	"fmt"
	"time"
)

// Policy holds the rules of the plan that are a deployment's choice.
type Policy struct {
	MinReplays     int           // airings a month = 1 premiere + MinReplays
	Hours          DayWindow     // airings only start and end inside
	Slots          []int         // preferred start times, minutes after local midnight
	StartTolerance time.Duration // how far from the planned start a play still counts
	MinPlayedRatio float64       // share of the audio a device must play
	MinDeviceRatio float64       // share of a station's enabled devices that must air it
	Freeze         time.Duration // airings starting sooner than this are not re-planned
	Lead           time.Duration // how far ahead devices get their schedule
	Grace          time.Duration // how long past not_after we wait for a finished event
	ClockSkew      time.Duration // how far past its receipt an event's claimed time may lie
	SelfApproval   bool          // may an uploader approve their own programme
}

// DayWindow is a daily window in local time, in minutes after midnight;
// End may be 1440 (24:00).
type DayWindow struct{ Start, End int }

// Contains reports whether [from, from+d) lies inside the window on one day.
func (w DayWindow) Contains(minuteOfDay int, d time.Duration) bool {
	return w.containsSeconds(minuteOfDay*60, d)
}

func (w DayWindow) containsSeconds(secondOfDay int, d time.Duration) bool {
	end := secondOfDay + int((d+time.Second-1)/time.Second)
	return secondOfDay >= w.Start*60 && end <= w.End*60
}

func (w DayWindow) String() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.Start/60, w.Start%60, w.End/60, w.End%60)
}

// DefaultPolicy is the plan of Thanh Hoa (85/KH-UBND, 2022) with the defaults
// of docs/api.md.
func DefaultPolicy() Policy {
	return Policy{
		MinReplays:     3,
		Hours:          DayWindow{Start: 5 * 60, End: 21 * 60},
		Slots:          []int{6 * 60, 17 * 60},
		StartTolerance: 15 * time.Minute,
		MinPlayedRatio: 0.9,
		MinDeviceRatio: 0.8,
		Freeze:         time.Hour,
		Lead:           7 * 24 * time.Hour,
		Grace:          30 * time.Minute,
		ClockSkew:      2 * time.Minute,
	}
}

// Required is the number of aired airings a station owes each month.
func (p Policy) Required() int { return 1 + p.MinReplays }
