package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/loaxa/loaxa/broadcast"
)

// FigureCheck is a station's month as a bundle's verifier recomputed it,
// beside the figure the daemon sealed (nil: the month is not sealed, or the
// seal holds no figures).
type FigureCheck struct {
	Figure
	Name   string  `json:"name"`
	Sealed *Figure `json:"sealed,omitempty"`
	// Match: the recomputed figure is the sealed one (false when unsealed).
	Match bool `json:"match"`
}

// BundleCheck is everything a verification of a bundle found: the verdict,
// the manifest, the per-station table recomputed from the bundle alone
// (empty when the bundle has no required.json, as before version 2), and
// which of the period's months are sealed.
type BundleCheck struct {
	Result   Result
	Manifest Manifest
	Figures  []FigureCheck
	// Sealed and Unsealed are the period's months with a seal in the
	// manifest and without one.
	Sealed, Unsealed []broadcast.Month
	// Over: the period had ended when the bundle was made; Complete: its
	// grace too (Manifest.Complete).
	Over, Complete bool
}

// CheckBundleFigures is CheckBundle that also recomputes the per-station
// figures from the bundle and says what is sealed.
func CheckBundleFigures(r io.Reader, tempDir string) (BundleCheck, error) {
	c, err := checkBundle(r, tempDir)
	if err != nil {
		return BundleCheck{}, err
	}
	res := c.result()
	m := *c.m
	out := BundleCheck{Result: res, Manifest: m, Figures: c.figures, Over: !m.GeneratedAt.Before(m.To), Complete: m.Complete}
	sealed := map[string]bool{}
	for _, o := range m.Seals {
		sealed[o.Subject] = true
	}
	p, err := broadcast.ParsePeriod(m.Period)
	if err == nil {
		for _, mo := range p.Months {
			if sealed[string(mo)] {
				out.Sealed = append(out.Sealed, mo)
			} else {
				out.Unsealed = append(out.Unsealed, mo)
			}
		}
	}
	return out, nil
}

func (c *bundleCheck) planProblem(format string, args ...any) {
	c.planProbs = append(c.planProbs, Problem{Log: "figures", Problem: fmt.Sprintf(format, args...)})
}

// readRequired reads required.json, checks the sealed figures it carries
// against the seals of the manifest, and sets up the replays of its months.
func (c *bundleCheck) readRequired(r io.Reader) error {
	if c.m == nil {
		// The manifest comes first in every bundle loaxa writes; without
		// it the seals are unknown. The file's hash is still checked.
		c.planProblem("%s comes before %s: the figures are not recomputed", FileRequired, FileManifest)
		return nil
	}
	var plan Plan
	if err := json.NewDecoder(io.LimitReader(r, maxDevices)).Decode(&plan); err != nil {
		c.planProblem("%s is not a plan: %v", FileRequired, err)
		return nil
	}
	loc, err := time.LoadLocation(c.m.TimeZone)
	if err != nil {
		c.planProblem("the manifest's time zone %q is unknown here: %v", c.m.TimeZone, err)
		return nil
	}
	seals := map[uint64]SealRecord{}
	for _, o := range c.m.Seals {
		var rec SealRecord
		if o.ChainHashIn(c.m.HashForms) == o.Hash && json.Unmarshal(o.Detail, &rec) == nil {
			seals[o.Seq] = rec // the others are named by sealCheckpoints
		}
	}
	c.sealed = map[broadcast.Month]*BundleSeal{}
	for i := range plan.Sealed {
		bs := &plan.Sealed[i]
		rec, ok := seals[bs.Op]
		switch {
		case !ok || rec.Period != string(bs.Month):
			c.planProblem("the sealed figures of %s name operation %d, which is not a seal of that month in the manifest", bs.Month, bs.Op)
			continue
		case rec.Figures == nil:
			c.planProblem("the seal of %s (operation %d) records no figures, yet the bundle gives some", bs.Month, bs.Op)
			continue
		case FiguresRoot(bs.Leaves) != rec.Figures.Root || len(bs.Leaves) != rec.Figures.Stations:
			c.planProblem("the sealed figures of %s do not hash to the root its seal (operation %d) records: they were changed", bs.Month, bs.Op)
			continue
		}
		good := true
		for _, f := range bs.Figures {
			if f.Index < 0 || f.Index >= len(bs.Leaves) || f.Leaf() != bs.Leaves[f.Index] || f.Month != bs.Month {
				c.planProblem("the sealed figure of station %s for %s is not the one its seal (operation %d) holds: it was changed", f.Station, bs.Month, bs.Op)
				good = false
			}
		}
		if good {
			c.sealed[bs.Month] = bs
		}
	}
	c.plan = &plan
	for _, mo := range plan.Months {
		// A sealed month is judged with the devices it was sealed with:
		// devices added or disabled since change nothing of it.
		devices := map[string]int{}
		for _, st := range plan.Stations {
			devices[st.ID] = st.Devices
		}
		if bs := c.sealed[mo]; bs != nil {
			for _, f := range bs.Figures {
				devices[f.Station] = f.Devices
			}
		}
		rp, err := newMonthReplay(mo, loc, &plan, devices)
		if err != nil {
			c.planProblem("month %s: %v", mo, err)
			continue
		}
		c.replays = append(c.replays, rp)
	}
	return nil
}

// figureProblems judges every station of the plan from the replays and
// compares each with its sealed figure; a station whose figure differs is
// named.
func (c *bundleCheck) figureProblems() []Problem {
	if c.plan == nil {
		return c.planProbs
	}
	names := map[string]string{}
	for _, st := range c.plan.Stations {
		names[st.ID] = st.Name
	}
	c.figures = nil
	for _, rp := range c.replays {
		bs := c.sealed[rp.month]
		sealed := map[string]Figure{}
		if bs != nil {
			for _, f := range bs.Figures {
				sealed[f.Station] = f.Figure
			}
		}
		for _, f := range rp.figures(c.plan.Stations, c.m.GeneratedAt) {
			fc := FigureCheck{Figure: f, Name: names[f.Station]}
			if bs != nil {
				sf, ok := sealed[f.Station]
				switch {
				case !ok:
					c.planProblem("station %s, %s: the seal of the month (operation %d) gives no figure for it", f.Station, rp.month, bs.Op)
				case sf != f:
					fc.Sealed = &sf
					c.planProblem("station %s, %s: the bundle's evidence gives %s, the seal (operation %d) says %s", f.Station, rp.month, f, bs.Op, sf)
				default:
					fc.Sealed, fc.Match = &sf, true
				}
			}
			c.figures = append(c.figures, fc)
		}
	}
	return c.planProbs
}
