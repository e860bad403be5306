package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"strings"
)

func tokenCommand() *command {
	return &command{
		name: "token create", args: "--name NAME --role admin|operator|auditor [--unit CODE]",
		summary: "create an API token (admin); prints it once",
		about: `Creates a token for a person or a script (admin role). An operator's or an
auditor's token is scoped to a unit and everything below it; without
--unit it covers the whole tree. The daemon keeps only a hash: the token is
shown this once.`,
		example: `  loaxa --token-file data/admin.token token create --name "Lê Thị Lan" --role operator --unit 380
  LAN=$(loaxa token create --name Lan --role operator --unit 380 -q)`,
		output: true,
		setup: func(fs *flag.FlagSet) action {
			name := fs.String("name", "", "`NAME` who or what uses it (required)")
			role := fs.String("role", "", "`ROLE` admin, operator or auditor (required)")
			unit := fs.String("unit", "", "`CODE` the unit it covers, and all below, e.g. 380 (default: all)")
			quiet := quietFlag(fs, "print only the token")
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				if err := required("name", *name, "role", *role); err != nil {
					return err
				}
				b, err := c.callJSON(ctx, http.MethodPost, "/api/v1/tokens", nil, map[string]string{"name": *name, "role": *role, "unit": *unit})
				if err != nil || out == outJSON {
					return jsonOr(c, b, err)
				}
				var t struct{ ID, Name, Role, Unit, Token string }
				if err := decode(b, &t, "token create"); err != nil {
					return err
				}
				if *quiet {
					_, err := fmt.Fprintln(c.stdout, t.Token)
					return err
				}
				if t.Unit == "" {
					t.Unit = "all"
				}
				if err := fields(c.stdout, "id", t.ID, "name", t.Name, "role", t.Role, "unit", t.Unit, "token", t.Token); err != nil {
					return err
				}
				fmt.Fprintln(c.stderr, "The token is shown only now: hand it over safely.")
				return nil
			}
		},
	}
}

func emergencyCommand() *command {
	return &command{
		name: "emergency", args: "--unit CODE --title TEXT FILE",
		summary: "broadcast an announcement now on every device below a unit",
		about: `Plays an announcement at once on every enabled device below a unit,
preempting whatever plays (a flood or storm warning). It skips the second
operator's review on purpose; the operations log records who sent it.`,
		example: `  loaxa emergency --unit 380 --title "Cảnh báo lũ sông Mã" canh-bao-lu.mp3`,
		output:  true,
		setup: func(fs *flag.FlagSet) action {
			unit := fs.String("unit", "", "`CODE` the unit whose devices play it, e.g. 380 (required)")
			title := fs.String("title", "", "`TEXT` its title (required)")
			desc := fs.String("description", "", "`TEXT` a longer description")
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				file, err := oneArg(args, "FILE")
				if err == nil {
					err = required("unit", *unit, "title", *title)
				}
				if err != nil {
					return err
				}
				b, err := c.upload(ctx, "/api/v1/emergency", []formField{
					{"unit", *unit}, {"title", *title}, {"description", *desc},
				}, "audio", file)
				if err != nil || out == outJSON {
					return jsonOr(c, b, err)
				}
				var res struct {
					Programme programme `json:"programme"`
					Broadcast struct {
						Stations int      `json:"stations"`
						Devices  int      `json:"devices"`
						Sent     int      `json:"sent"`
						Failed   []string `json:"failed_devices"`
					} `json:"broadcast"`
				}
				if err := decode(b, &res, "emergency"); err != nil {
					return err
				}
				r := res.Broadcast
				fmt.Fprintf(c.stdout, "emergency broadcast %s (%s): sent to %d of %d devices at %d stations\n",
					res.Programme.ID, sanitize(res.Programme.Title), r.Sent, r.Devices, r.Stations)
				if len(r.Failed) > 0 {
					fmt.Fprintf(c.stdout, "not sent to: %s\n", sanitize(strings.Join(r.Failed, ", ")))
				}
				return nil
			}
		},
	}
}

func versionCommand() *command {
	return &command{
		name: "version", args: "", summary: "print the client's version",
		about: `Prints the version of this client.`,
		setup: func(fs *flag.FlagSet) action {
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				_, err := fmt.Fprintln(c.stdout, "loaxa", version)
				return err
			}
		},
	}
}
