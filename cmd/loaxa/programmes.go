package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// programme is what the CLI shows of docs/api.md's programme.
type programme struct {
	ID           string    `json:"id"`
	Unit         string    `json:"unit"`
	Month        string    `json:"month"`
	Title        string    `json:"title"`
	Description  string    `json:"description"`
	Status       string    `json:"status"`
	Priority     int       `json:"priority"`
	SHA256       string    `json:"sha256"`
	Size         int64     `json:"size"`
	DurationMS   int64     `json:"duration_ms"`
	Format       string    `json:"format"`
	UploadedBy   string    `json:"uploaded_by"`
	ApprovedBy   string    `json:"approved_by"`
	UploaderName string    `json:"uploaded_by_name"`
	ApproverName string    `json:"approved_by_name"`
	CreatedAt    time.Time `json:"created_at"`
	ApprovedAt   time.Time `json:"approved_at"`
	WithdrawnAt  time.Time `json:"withdrawn_at"`
}

func (c *cli) printProgramme(p programme) error {
	return fields(c.stdout,
		"id", p.ID, "title", p.Title, "description", p.Description, "unit", p.Unit, "month", p.Month,
		"status", p.Status, "audio", fmt.Sprintf("%s, %s, %s", p.Format, length(p.DurationMS), size(p.Size)),
		"sha256", p.SHA256, "uploaded by", named(p.UploaderName, p.UploadedBy), "uploaded", c.when(p.CreatedAt),
		"approved by", named(p.ApproverName, p.ApprovedBy), "approved", c.when(p.ApprovedAt), "withdrawn", c.when(p.WithdrawnAt))
}

// named shows who acted by name, with the token id that proves it.
func named(name, id string) string {
	if name == "" || id == "" {
		return id
	}
	return name + " (" + id + ")"
}

func programmeCommands() []*command {
	return []*command{
		{
			name: "programme upload", args: "FILE --unit CODE --month YYYY-MM --title TEXT [--description TEXT] [--priority LEVEL]",
			summary: "upload a month's programme (MP3, WAV, Ogg/Opus, WebM/Opus) as a draft",
			about: `Uploads the audio of a unit's programme for a month. It is a draft until an
operator other than the uploader approves it; then airings are planned at
every station below the unit. The file is streamed, never held in memory;
a progress bar shows on a terminal.`,
			example: `  loaxa programme upload chuyen-doi-so-12-2026.mp3 --unit 380 --month 2026-12 \
      --title "Chuyển đổi số tháng 12/2026" --description "Bản tin Thành phố Thanh Hóa"`,
			output: true,
			setup: func(fs *flag.FlagSet) action {
				unit := fs.String("unit", "", "`CODE` the unit whose stations air it, e.g. 380 (required)")
				month := fs.String("month", "", "`YYYY-MM` the month it is for (required)")
				title := fs.String("title", "", "`TEXT` its title (required)")
				desc := fs.String("description", "", "`TEXT` a longer description")
				priority := fs.String("priority", "", "`LEVEL` normal or priority: a priority programme takes slots that clash with normal ones (default normal)")
				quiet := quietFlag(fs, "print only the new programme's id")
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					file, err := oneArg(args, "FILE")
					if err == nil {
						err = required("unit", *unit, "month", *month, "title", *title)
					}
					if err != nil {
						return err
					}
					b, err := c.upload(ctx, "/api/v1/programmes", []formField{
						{"unit", *unit}, {"month", *month}, {"title", *title}, {"description", *desc}, {"priority", *priority},
					}, "audio", file)
					if err != nil {
						return err
					}
					var p programme
					if err := decode(b, &p, "the upload"); err != nil {
						return err
					}
					switch {
					case out == outJSON:
						return printJSON(c.stdout, b)
					case *quiet:
						_, err := fmt.Fprintln(c.stdout, p.ID)
						return err
					}
					if err := c.printProgramme(p); err != nil {
						return err
					}
					fmt.Fprintf(c.stderr, "Another operator approves it with: loaxa programme approve %s\n", p.ID)
					return nil
				}
			},
		},
		{
			name: "programme list", args: "[--unit CODE] [--month YYYY-MM]",
			summary: "list programmes of a unit and below",
			about:   `Lists the programmes of a unit and the units below it (default: the token's unit), newest month first as the daemon orders them.`,
			example: `  loaxa programme list --unit 380 --month 2026-12
  loaxa programme list --month 2026-12 -o json | jq -r '.programmes[] | select(.status=="draft") | .id'`,
			output: true,
			setup: func(fs *flag.FlagSet) action {
				unit := fs.String("unit", "", "`CODE` a unit (default: the token's)")
				month := fs.String("month", "", "`YYYY-MM` only programmes for this month")
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					if err := noArgs(args); err != nil {
						return err
					}
					var res struct{ Programmes []programme }
					b, err := c.get(ctx, "/api/v1/programmes", query("unit", *unit, "month", *month), &res)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					t := newTable(c.stdout, "ID", "MONTH", "UNIT", "STATUS", "LENGTH", "TITLE")
					for _, p := range res.Programmes {
						t.row(p.ID, p.Month, p.Unit, p.Status, length(p.DurationMS), truncate(p.Title, 60))
					}
					return t.flush()
				}
			},
		},
		{
			name: "programme show", args: "PROGRAMME",
			summary: "show one programme",
			about:   `Shows a programme: its audio, status, who uploaded and who approved it.`,
			example: `  loaxa programme show 01JFZ3K8W6T9Q2M4N5P7R8S0AB`,
			output:  true,
			setup: func(fs *flag.FlagSet) action {
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					id, err := oneArg(args, "PROGRAMME")
					if err != nil {
						return err
					}
					var p programme
					b, err := c.get(ctx, "/api/v1/programmes/"+url.PathEscape(id), nil, &p)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					return c.printProgramme(p)
				}
			},
		},
		{
			name: "programme approve", args: "PROGRAMME",
			summary: "approve a draft; plans its airings at every station below its unit",
			about: `Approves a draft programme and plans its premiere and replays at every
station below its unit. The uploader cannot approve their own programme
unless the daemon's policy.self_approval is on (exit 3 otherwise); a
programme that is not a draft is a conflict (exit 5).`,
			example: `  loaxa --token "$MINH" programme approve 01JFZ3K8W6T9Q2M4N5P7R8S0AB`,
			output:  true,
			setup: func(fs *flag.FlagSet) action {
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					id, err := oneArg(args, "PROGRAMME")
					if err != nil {
						return err
					}
					b, err := c.callJSON(ctx, http.MethodPost, "/api/v1/programmes/"+url.PathEscape(id)+"/approve", nil, nil)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					var res struct {
						programme
						Plan struct {
							Stations int `json:"stations"`
							Required int `json:"required_per_station"`
							Planned  int `json:"airings_planned"`
							Short    []struct {
								Station string `json:"station"`
								Planned int    `json:"planned"`
							} `json:"short_stations"`
						} `json:"plan"`
					}
					if err := decode(b, &res, "approve"); err != nil {
						return err
					}
					fmt.Fprintf(c.stdout, "approved programme %s (%s): %d airings planned at %d stations, %d required at each\n",
						res.ID, sanitize(res.Title), res.Plan.Planned, res.Plan.Stations, res.Plan.Required)
					if len(res.Plan.Short) > 0 {
						fmt.Fprintf(c.stdout, "%d stations cannot get all %d airings this month:\n", len(res.Plan.Short), res.Plan.Required)
						t := newTable(c.stdout, "STATION", "PLANNED")
						for _, s := range res.Plan.Short {
							t.row(s.Station, strconv.Itoa(s.Planned))
						}
						return t.flush()
					}
					return nil
				}
			},
		},
		{
			name: "programme withdraw", args: "PROGRAMME",
			summary: "withdraw a programme; its future airings are cancelled",
			about:   `Withdraws a programme: airings that have not started are cancelled at every station; what already aired stays in the evidence.`,
			example: `  loaxa programme withdraw 01JFZ3K8W6T9Q2M4N5P7R8S0AB`,
			output:  true,
			setup: func(fs *flag.FlagSet) action {
				return func(ctx context.Context, c *cli, args []string, out outputMode) error {
					id, err := oneArg(args, "PROGRAMME")
					if err != nil {
						return err
					}
					b, err := c.callJSON(ctx, http.MethodPost, "/api/v1/programmes/"+url.PathEscape(id)+"/withdraw", nil, nil)
					if err != nil || out == outJSON {
						return jsonOr(c, b, err)
					}
					var res struct {
						Programme programme `json:"programme"`
						Cancelled int       `json:"airings_cancelled"`
					}
					if err := decode(b, &res, "withdraw"); err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.stdout, "withdrew programme %s (%s); %d future airings cancelled\n", res.Programme.ID, sanitize(res.Programme.Title), res.Cancelled)
					return err
				}
			},
		},
	}
}

// jsonOr ends a command that has its answer in b: the error if there is
// one, else the JSON. Commands call it when -o json was asked for or the
// request failed.
func jsonOr(c *cli, b []byte, err error) error {
	if err != nil {
		return err
	}
	return printJSON(c.stdout, b)
}

func oneArg(args []string, name string) (string, error) {
	switch {
	case len(args) == 0:
		return "", usagef("missing %s", name)
	case len(args) > 1:
		return "", usagef("want one %s, got %d arguments: %q", name, len(args), args)
	case args[0] == "":
		return "", usagef("%s is empty", name)
	}
	return args[0], nil
}

func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// required checks flags that have no sensible default, by name and value.
func required(kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			return usagef("--%s is required", kv[i])
		}
	}
	return nil
}

func quietFlag(fs *flag.FlagSet, usage string) *bool {
	q := fs.Bool("quiet", false, usage)
	fs.BoolVar(q, "q", false, "")
	return q
}
