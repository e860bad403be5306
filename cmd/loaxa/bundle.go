package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/loaxa/loaxa/audit"
)

// verifyBundle checks an evidence bundle offline with the same code an
// auditor can read in package audit; the CLI adds nothing of its own to
// the verdict, so that the two cannot disagree.
func verifyBundle(path string) (audit.BundleCheck, error) {
	f, err := os.Open(path)
	if err != nil {
		return audit.BundleCheck{}, err
	}
	defer f.Close()
	return audit.CheckBundleFigures(bufio.NewReaderSize(f, 1<<20), "")
}

// bundleVerdict is what `audit verify --bundle -o json` prints: the
// verdict's fields as /audit/verify gives them, and what the bundle says of
// its period.
type bundleVerdict struct {
	audit.Result
	Period   string              `json:"period"`
	Unit     string              `json:"unit,omitempty"`
	Withheld bool                `json:"withheld"`
	Over     bool                `json:"over"`
	Complete bool                `json:"complete"`
	Sealed   []string            `json:"sealed"`
	Unsealed []string            `json:"unsealed"`
	Figures  []audit.FigureCheck `json:"figures"`
}

func verdictOf(b audit.BundleCheck) bundleVerdict {
	v := bundleVerdict{Result: b.Result, Period: b.Manifest.Period, Unit: b.Manifest.Unit, Withheld: b.Manifest.Withheld,
		Over: b.Over, Complete: b.Complete, Sealed: []string{}, Unsealed: []string{}, Figures: b.Figures}
	for _, m := range b.Sealed {
		v.Sealed = append(v.Sealed, string(m))
	}
	for _, m := range b.Unsealed {
		v.Unsealed = append(v.Unsealed, string(m))
	}
	if v.Figures == nil {
		v.Figures = []audit.FigureCheck{}
	}
	return v
}

// printBundle states plainly what the bundle is — its unit, whether its
// period was over and sealed — and prints the per-station table recomputed
// from it beside the sealed figures.
func (c *cli) printBundle(b bundleVerdict, m audit.Manifest) error {
	unit := "the whole tree"
	if b.Unit != "" {
		unit = "unit " + sanitize(b.Unit)
		if b.Withheld {
			unit += fmt.Sprintf(" (%d as-run and %d operations entries of other units given as hashes only)", m.WithheldAsRun, m.WithheldOplog)
		} else {
			unit += " (every unit's entries in full)"
		}
	}
	over := "yes"
	switch {
	case !b.Over:
		over = fmt.Sprintf("NO: the bundle was made on %s, before the period ended; its figures are not final", m.GeneratedAt.Format("2006-01-02 15:04 MST"))
	case !b.Complete:
		over = "yes, but not its 7 days of grace: devices may still report; a later bundle holds more"
	}
	sealed := "yes: " + joinOr(b.Sealed, "")
	if len(b.Unsealed) > 0 {
		sealed = "NO: no seal of " + joinOr(b.Unsealed, "") + " in the bundle; its figures are compared with nothing"
		if len(b.Sealed) > 0 {
			sealed += " (sealed: " + joinOr(b.Sealed, "") + ")"
		}
	}
	if err := fields(c.stdout, "period", sanitize(b.Period), "unit", unit, "period over", over, "sealed", sealed); err != nil {
		return err
	}
	if len(b.Figures) == 0 {
		_, err := fmt.Fprintln(c.stdout, "\nno per-station table: the bundle carries no required.json (made before version 2)")
		return err
	}
	fmt.Fprintln(c.stdout, "\nper station, recomputed from the bundle alone:")
	t := newTable(c.stdout, "STATION", "NAME", "MONTH", "REQUIRED", "AIRED", "STATUS", "SEALED")
	for _, f := range b.Figures {
		seal := "not sealed"
		switch {
		case f.Match:
			seal = "matches"
		case f.Sealed != nil:
			seal = fmt.Sprintf("MISMATCH: sealed %s", f.Sealed)
		case len(b.Unsealed) == 0 || !contains(b.Unsealed, string(f.Month)):
			seal = "MISSING from the seal"
		}
		t.row(sanitize(f.Station), sanitize(f.Name), string(f.Month), fmt.Sprint(f.Required), fmt.Sprint(f.Aired), f.Status, seal)
	}
	return t.flush()
}

func joinOr(s []string, none string) string {
	if len(s) == 0 {
		return none
	}
	out := s[0]
	for _, x := range s[1:] {
		out += ", " + x
	}
	return out
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
