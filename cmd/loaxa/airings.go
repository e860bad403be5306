package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// airing is what the CLI shows of docs/api.md's airing.
type airing struct {
	ID        string `json:"id"`
	Programme string `json:"programme"`
	Station   string `json:"station"`
	Month     string `json:"month"`
	Kind      string `json:"kind"`
	Title     string `json:"title"`
	Audio     struct {
		DurationMS int64 `json:"duration_ms"`
	} `json:"audio"`
	Start    time.Time `json:"start"`
	NotAfter time.Time `json:"not_after"`
	Status   string    `json:"status"`
	Reason   string    `json:"reason"`
	Replaces string    `json:"replaces"`
	Devices  map[string]struct {
		Status    string    `json:"status"`
		Reason    string    `json:"reason"`
		StartedAt time.Time `json:"started_at"`
		PlayedMS  int64     `json:"played_ms"`
		Events    []struct {
			Entry uint64    `json:"entry"`
			Event string    `json:"event"`
			At    time.Time `json:"at"`
		} `json:"events"`
	} `json:"devices"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (c *cli) printAiring(a airing) error {
	if err := fields(c.stdout,
		"id", a.ID, "station", a.Station, "programme", a.Programme, "title", a.Title, "kind", a.Kind,
		"start", c.when(a.Start), "not after", c.when(a.NotAfter), "length", length(a.Audio.DurationMS),
		"status", a.Status, "reason", a.Reason, "replaces", a.Replaces, "updated", c.when(a.UpdatedAt)); err != nil {
		return err
	}
	if len(a.Devices) == 0 {
		return nil
	}
	fmt.Fprintln(c.stdout)
	ids := make([]string, 0, len(a.Devices))
	for id := range a.Devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	t := newTable(c.stdout, "DEVICE", "STATUS", "STARTED", "PLAYED", "EVENTS (as-run entry)")
	for _, id := range ids {
		d := a.Devices[id]
		var evs []string
		for _, e := range d.Events {
			evs = append(evs, fmt.Sprintf("%s #%d", e.Event, e.Entry))
		}
		status := d.Status
		if d.Reason != "" {
			status += " (" + d.Reason + ")"
		}
		t.row(id, status, c.when(d.StartedAt), length(d.PlayedMS), strings.Join(evs, ", "))
	}
	return t.flush()
}

func airingCommands() []*command {
	return []*command{
		{
			name: "airing list", args: "[--station ID] [--programme ID] [--month YYYY-MM] [--status S] [--limit N]",
			summary: "list airings with their status",
			about: `Lists airings the token may see, filtered by station, programme, month and
status (planned, sent, received, ready, started, aired, failed, missed,
cancelled). Times are shown in --tz.`,
			example: `  loaxa airing list --station 14755 --month 2026-12
  loaxa airing list --programme 01JFZ3K8W6T9Q2M4N5P7R8S0AB --status missed -o json`,
			output: true,
			setup: func(fs *flag.FlagSet) action {
				station := fs.String("station", "", "`ID` a station, e.g. 14755")
				prog := fs.String("programme", "", "`ID` a programme")
				month := fs.String("month", "", "`YYYY-MM` a month")
				status := fs.String("status", "", "`STATUS` only airings in this status")
				limit := fs.Int("limit", 0, "`N` at most this many airings (default: all)")
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					if err := noArgs(args); err != nil {
						return err
					}
					if *limit < 0 {
						return usagef("--limit %d: want a positive number", *limit)
					}
					q := query("station", *station, "programme", *prog, "month", *month, "status", *status)
					if *limit > 0 {
						q.Set("limit", strconv.Itoa(*limit))
					}
					var res struct{ Airings []airing }
					b, err := c.get(ctx, "/api/v1/airings", q, &res)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					t := newTable(c.stdout, "ID", "STATION", "KIND", "START", "STATUS", "TITLE")
					for _, a := range res.Airings {
						t.row(a.ID, a.Station, a.Kind, c.when(a.Start), a.Status, truncate(a.Title, 50))
					}
					return t.flush()
				}
			},
		},
		{
			name: "airing show", args: "AIRING",
			summary: "show one airing with each device's events",
			about:   `Shows an airing and, per device, its status and the as-run log entries that prove it.`,
			example: `  loaxa airing show 01JFZ4A1B2C3D4E5F6G7H8J9K0`,
			output:  true,
			setup: func(fs *flag.FlagSet) action {
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					id, err := oneArg(args, "AIRING")
					if err != nil {
						return err
					}
					var a airing
					b, err := c.get(ctx, "/api/v1/airings/"+url.PathEscape(id), nil, &a)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					return c.printAiring(a)
				}
			},
		},
		{
			name: "airing move", args: "AIRING --start TIME",
			summary: "move one airing to another start time",
			about: `Moves one airing. The daemon refuses (exit 5) a start that would overlap
another airing, fall outside broadcasting hours or leave the month, and an
airing inside the freeze window (cancel it instead). TIME is RFC 3339, or a
date and time in --tz.`,
			example: `  loaxa airing move 01JFZ4A1B2C3D4E5F6G7H8J9K0 --start "2026-12-14 17:30"
  loaxa airing move 01JFZ4A1B2C3D4E5F6G7H8J9K0 --start 2026-12-14T17:30:00+07:00`,
			output: true,
			setup: func(fs *flag.FlagSet) action {
				start := fs.String("start", "", "`TIME` the new start (required)")
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					id, err := oneArg(args, "AIRING")
					if err == nil {
						err = required("start", *start)
					}
					if err != nil {
						return err
					}
					at, err := c.parseWhen("start", *start)
					if err != nil {
						return err
					}
					b, err := c.callJSON(ctx, http.MethodPatch, "/api/v1/airings/"+url.PathEscape(id), nil, map[string]string{"start": at.Format(time.RFC3339)})
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					var a airing
					if err := decode(b, &a, "move"); err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.stdout, "moved airing %s at station %s to %s\n", a.ID, a.Station, c.when(a.Start))
					return err
				}
			},
		},
		{
			name: "airing cancel", args: "AIRING",
			summary: "cancel one airing",
			about:   `Cancels one airing, even inside the freeze window. An airing that is over (aired, missed, failed, cancelled) is a conflict (exit 5).`,
			example: `  loaxa airing cancel 01JFZ4A1B2C3D4E5F6G7H8J9K0`,
			output:  true,
			setup: func(fs *flag.FlagSet) action {
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					id, err := oneArg(args, "AIRING")
					if err != nil {
						return err
					}
					b, err := c.callJSON(ctx, http.MethodPost, "/api/v1/airings/"+url.PathEscape(id)+"/cancel", nil, nil)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					var a airing
					if err := decode(b, &a, "cancel"); err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.stdout, "cancelled airing %s at station %s (%s)\n", a.ID, a.Station, c.when(a.Start))
					return err
				}
			},
		},
	}
}
