package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

type station struct {
	ID       string `json:"id"`
	Unit     string `json:"unit"`
	Name     string `json:"name"`
	Path     string `json:"path"`
	Timezone string `json:"timezone"`
}

type device struct {
	ID         string    `json:"id"`
	Station    string    `json:"station"`
	PublicKey  []byte    `json:"public_key"`
	Disabled   bool      `json:"disabled"`
	CreatedAt  time.Time `json:"created_at"`
	DisabledAt time.Time `json:"disabled_at"`
}

func stationCommands() []*command {
	return []*command{
		{
			name: "station list", args: "[--unit CODE]",
			summary: "list the stations of a unit and below",
			about:   `Lists the commune stations below a unit (default: the token's unit; all of them for an unscoped token).`,
			example: `  loaxa station list --unit 380`,
			output:  true,
			setup: func(fs *flag.FlagSet) action {
				unit := fs.String("unit", "", "`CODE` a unit, e.g. 380")
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					if err := noArgs(args); err != nil {
						return err
					}
					var res struct{ Stations []station }
					b, err := c.get(ctx, "/api/v1/stations", query("unit", *unit), &res)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					t := newTable(c.stdout, "STATION", "NAME", "UNIT", "PATH", "TIMEZONE")
					for _, s := range res.Stations {
						t.row(s.ID, s.Name, s.Unit, s.Path, s.Timezone)
					}
					return t.flush()
				}
			},
		},
		{
			name: "station show", args: "STATION",
			summary: "show a station, its devices and this month's compliance",
			about:   `Shows a station with its devices and this month's compliance figures.`,
			example: `  loaxa station show 14755`,
			output:  true,
			setup: func(fs *flag.FlagSet) action {
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					id, err := oneArg(args, "STATION")
					if err != nil {
						return err
					}
					var s struct {
						station
						Devices    []device      `json:"devices"`
						Compliance *stationMonth `json:"compliance"`
					}
					b, err := c.get(ctx, "/api/v1/stations/"+url.PathEscape(id), nil, &s)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					kv := []string{"station", s.ID, "name", s.Name, "unit", s.Unit, "path", s.Path, "timezone", s.Timezone}
					if m := s.Compliance; m != nil {
						kv = append(kv, "month", m.Month, "compliance", m.Status,
							"aired", fmt.Sprintf("%d of %d required (%d pending)", m.Aired, m.Required, m.Pending),
							"coverage", percent(m.Coverage))
					}
					if err := fields(c.stdout, kv...); err != nil {
						return err
					}
					fmt.Fprintln(c.stdout)
					if len(s.Devices) == 0 {
						_, err := fmt.Fprintf(c.stdout, "no devices; add one with: loaxa device add %s-01 --station %s\n", s.ID, s.ID)
						return err
					}
					t := newTable(c.stdout, "DEVICE", "STATE", "SIGNS EVENTS", "ADDED", "DISABLED")
					for _, d := range s.Devices {
						state, signs := "enabled", "no"
						if d.Disabled {
							state = "disabled"
						}
						if len(d.PublicKey) > 0 {
							signs = "yes"
						}
						t.row(d.ID, state, signs, c.when(d.CreatedAt), c.when(d.DisabledAt))
					}
					return t.flush()
				}
			},
		},
	}
}

func unitCommands() []*command {
	return []*command{
		{
			name: "unit list", args: "[--parent CODE]",
			summary: "list administrative units under a parent",
			about:   `Lists the units directly under a parent: provinces without --parent, the districts of a province, the communes of a district.`,
			example: `  loaxa unit list --parent 38     # the districts of Tỉnh Thanh Hóa
  loaxa unit list --parent 380    # the communes of Thành phố Thanh Hóa`,
			output: true,
			setup: func(fs *flag.FlagSet) action {
				parent := fs.String("parent", "", "`CODE` the parent unit")
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					if err := noArgs(args); err != nil {
						return err
					}
					var res struct {
						Units []struct {
							Code   string `json:"code"`
							Name   string `json:"name"`
							Type   string `json:"type"`
							Level  string `json:"level"`
							Parent string `json:"parent"`
						}
					}
					b, err := c.get(ctx, "/api/v1/units", query("parent", *parent), &res)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					t := newTable(c.stdout, "CODE", "NAME", "TYPE", "LEVEL", "PARENT")
					for _, u := range res.Units {
						t.row(u.Code, u.Name, u.Type, u.Level, u.Parent)
					}
					return t.flush()
				}
			},
		},
		{
			name: "unit import", args: "FILE|-",
			summary: "import units and their stations from the shared CSV (admin)",
			about: `Imports units, and one station per commune-level unit, from a CSV in the
shared data format (configs/data). Importing again is harmless: what exists
is kept. "-" reads the CSV from standard input.`,
			example: `  loaxa unit import configs/data/thanh-hoa-units-2025-03.csv`,
			output:  true,
			setup: func(fs *flag.FlagSet) action {
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					file, err := oneArg(args, "FILE")
					if err != nil {
						return err
					}
					var body io.Reader = c.stdin
					if file != "-" {
						f, err := os.Open(file)
						if err != nil {
							return fmt.Errorf("open the units: %w", err)
						}
						defer f.Close()
						body = f
					}
					ctx, cancel := c.deadline(ctx)
					defer cancel()
					req, err := c.request(ctx, http.MethodPost, "/api/v1/units/import", nil, body)
					if err != nil {
						return err
					}
					req.Header.Set("Content-Type", "text/csv; charset=utf-8")
					b, err := c.readAll(req)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					var res struct {
						UnitsCreated    int `json:"units_created"`
						UnitsUpdated    int `json:"units_updated"`
						StationsCreated int `json:"stations_created"`
						StationsUpdated int `json:"stations_updated"`
						Units           int `json:"units"`
						Stations        int `json:"stations"`
					}
					if err := decode(b, &res, "the import"); err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.stdout, "units: %d (%d new, %d changed); stations: %d (%d new, %d changed)\n",
						res.Units, res.UnitsCreated, res.UnitsUpdated, res.Stations, res.StationsCreated, res.StationsUpdated)
					return err
				}
			},
		},
	}
}

func deviceCommands() []*command {
	return []*command{
		{
			name: "device add", args: "DEVICE --station ID [--public-key KEY]",
			summary: "register a device at a station; prints its secret once",
			about: `Registers a device (a loudspeaker cluster's player) at a station and prints
its MQTT and audio secret. The daemon keeps only a hash: the secret is
shown this once, so put it in the device's configuration now. With
--public-key (base64 ed25519, from loaxa-station keygen) the device's
events must be signed.`,
			example: `  loaxa device add 14755-01 --station 14755 --public-key "$(loaxa-station pubkey --key key)"`,
			output:  true,
			setup: func(fs *flag.FlagSet) action {
				st := fs.String("station", "", "`ID` the station, e.g. 14755 (required)")
				key := fs.String("public-key", "", "`KEY` the device's ed25519 public key, base64")
				quiet := quietFlag(fs, "print only the secret")
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					id, err := oneArg(args, "DEVICE")
					if err == nil {
						err = required("station", *st)
					}
					if err != nil {
						return err
					}
					req := map[string]string{"id": id}
					if *key != "" {
						req["public_key"] = *key
					}
					b, err := c.callJSON(ctx, http.MethodPost, "/api/v1/stations/"+url.PathEscape(*st)+"/devices", nil, req)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					var d struct{ ID, Station, Secret string }
					if err := decode(b, &d, "device add"); err != nil {
						return err
					}
					if *quiet {
						_, err := fmt.Fprintln(c.stdout, d.Secret)
						return err
					}
					if err := fields(c.stdout, "device", d.ID, "station", d.Station, "secret", d.Secret); err != nil {
						return err
					}
					fmt.Fprintln(c.stderr, "The secret is shown only now: put it in the device's station.yaml.")
					return nil
				}
			},
		},
		{
			name: "device disable", args: "DEVICE",
			summary: "disable a device; its history stays",
			about:   `Disables a device: it can no longer connect or fetch audio, and its open connection is closed. Its events stay in the evidence.`,
			example: `  loaxa device disable 14755-01`,
			output:  true,
			setup: func(fs *flag.FlagSet) action {
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					id, err := oneArg(args, "DEVICE")
					if err != nil {
						return err
					}
					b, err := c.callJSON(ctx, http.MethodDelete, "/api/v1/devices/"+url.PathEscape(id), nil, nil)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					var d device
					if err := decode(b, &d, "device disable"); err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.stdout, "disabled device %s of station %s at %s\n", d.ID, d.Station, c.when(d.DisabledAt))
					return err
				}
			},
		},
	}
}

// deadline bounds a plain request by --timeout.
func (c *cli) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}
