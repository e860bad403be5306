package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

func tokenCommands() []*command {
	return []*command{tokenCommand(), tokenListCommand(), tokenRevokeCommand()}
}

func tokenCommand() *command {
	return &command{
		name: "token create", args: "--name NAME --role admin|operator|auditor [--unit CODE] [--expires WHEN]",
		summary: "create an API token (admin); prints it once",
		about: `Creates a token for a person or a script (admin role). An operator's or an
auditor's token is scoped to a unit and everything below it; without
--unit it covers the whole tree. The daemon keeps only a hash: the token is
shown this once. --expires ends its life at a time (2027-06-30T17:00:00+07:00)
or after a duration (720h); operators' and auditors' tokens expire after the
daemon's tokens.max_age (a year by default) in any case.`,
		example: `  loaxa --token-file data/admin.token token create --name "Lê Thị Lan" --role operator --unit 380
  LAN=$(loaxa token create --name Lan --role operator --unit 380 --expires 2160h -q)`,
		output: true,
		setup: func(fs *flag.FlagSet) action {
			name := fs.String("name", "", "`NAME` who or what uses it (required)")
			role := fs.String("role", "", "`ROLE` admin, operator or auditor (required)")
			unit := fs.String("unit", "", "`CODE` the unit it covers, and all below, e.g. 380 (default: all)")
			expires := fs.String("expires", "", "`WHEN` an RFC 3339 time, or a duration from now such as 720h (default: tokens.max_age)")
			quiet := quietFlag(fs, "print only the token")
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				if err := required("name", *name, "role", *role); err != nil {
					return err
				}
				req := map[string]string{"name": *name, "role": *role, "unit": *unit}
				if *expires != "" {
					at, err := parseExpires(*expires, time.Now())
					if err != nil {
						return err
					}
					req["expires"] = at.Format(time.RFC3339)
				}
				b, err := c.callJSON(ctx, http.MethodPost, "/api/v1/tokens", nil, req)
				if err != nil || out == outJSON {
					return jsonOr(c, b, err)
				}
				var t struct {
					ID, Name, Role, Unit, Token string
					ExpiresAt                   time.Time `json:"expires_at"`
				}
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
				exp := "never"
				if !t.ExpiresAt.IsZero() {
					exp = t.ExpiresAt.Format(time.RFC3339)
				}
				if err := fields(c.stdout, "id", t.ID, "name", t.Name, "role", t.Role, "unit", t.Unit, "expires", exp, "token", t.Token); err != nil {
					return err
				}
				fmt.Fprintln(c.stderr, "The token is shown only now: hand it over safely.")
				return nil
			}
		},
	}
}

// parseExpires reads --expires: an RFC 3339 time, or a duration from now.
func parseExpires(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d).Truncate(time.Second), nil
	}
	return time.Time{}, usagef("--expires %q is neither an RFC 3339 time (2027-06-30T17:00:00+07:00) nor a positive duration (720h)", s)
}

func tokenListCommand() *command {
	return &command{
		name: "token list", args: "",
		summary: "list the API tokens of your unit and below (admin); never their secrets",
		about: `Lists the tokens an administrator may revoke: every token for an
administrator of the whole tree, those of its unit and below for a scoped
one. Shows when each expires and when it was last used (to the minute).`,
		example: `  loaxa token list`,
		output:  true,
		setup: func(fs *flag.FlagSet) action {
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				if err := noArgs(args); err != nil {
					return err
				}
				var res struct {
					Tokens []struct {
						ID        string    `json:"id"`
						Name      string    `json:"name"`
						Role      string    `json:"role"`
						Unit      string    `json:"unit"`
						CreatedAt time.Time `json:"created_at"`
						ExpiresAt time.Time `json:"expires_at"`
						LastUsed  time.Time `json:"last_used"`
						Expired   bool      `json:"expired"`
					}
				}
				b, err := c.get(ctx, "/api/v1/tokens", nil, &res)
				if err != nil || out == outJSON {
					return jsonOr(c, b, err)
				}
				when := func(t time.Time, zero string) string {
					if t.IsZero() {
						return zero
					}
					return t.Local().Format("2006-01-02 15:04")
				}
				t := newTable(c.stdout, "ID", "NAME", "ROLE", "UNIT", "CREATED", "EXPIRES", "LAST USED")
				for _, k := range res.Tokens {
					unit := k.Unit
					if unit == "" {
						unit = "all"
					}
					exp := when(k.ExpiresAt, "never")
					if k.Expired {
						exp += " (expired)"
					}
					t.row(k.ID, k.Name, k.Role, unit, when(k.CreatedAt, ""), exp, when(k.LastUsed, "never"))
				}
				return t.flush()
			}
		},
	}
}

func tokenRevokeCommand() *command {
	return &command{
		name: "token revoke", args: "ID",
		summary: "revoke an API token (admin): it stops working at its next request",
		about: `Revokes a token by its id (from loaxa token list): the next request with it
is refused, and console sessions signed in with it end. The operations log
records who revoked it.`,
		example: `  loaxa token revoke 01JF3K8Q2W5X7Y9Z`,
		output:  true,
		setup: func(fs *flag.FlagSet) action {
			return func(ctx context.Context, c *cli, args []string, out outputMode) error {
				id, err := oneArg(args, "ID")
				if err != nil {
					return err
				}
				b, err := c.callJSON(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, nil)
				if err != nil || out == outJSON {
					return jsonOr(c, b, err)
				}
				var t struct{ ID, Name string }
				if err := decode(b, &t, "token revoke"); err != nil {
					return err
				}
				_, err = fmt.Fprintf(c.stdout, "revoked token %s (%s)\n", t.ID, sanitize(t.Name))
				return err
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
