package sources

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser reads standard five-field cron expressions, with an optional
// leading seconds field (schedules of a few seconds, for tests and tight
// monitors) and the @hourly-style descriptors. robfig/cron is used for
// parsing and next-time computation only; the firing is ours.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ErrInvalidSchedule is wrapped by every schedule parse error.
var ErrInvalidSchedule = errors.New("invalid schedule")

// maxCatchUp bounds the steps Due takes from the last fire; past it, Due
// starts again from a day before now (a per-second schedule down for a
// week has ~600,000 missed fires, of which only the last counts).
const maxCatchUp = 100_000

// Schedule is a parsed cron expression in a time zone.
type Schedule struct {
	sched cron.Schedule
	loc   *time.Location
}

// ParseSchedule parses expr in the IANA time zone tz ("" is UTC). The zone
// is given apart, never inside the expression (TZ=, CRON_TZ=), so that a
// source has one place that says it.
func ParseSchedule(expr, tz string) (*Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, fmt.Errorf("%w: the cron expression is empty", ErrInvalidSchedule)
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("%w: give the time zone in time_zone, not in the expression", ErrInvalidSchedule)
	}
	if strings.HasPrefix(expr, "@every") {
		// @every counts from when it is parsed, not from the wall
		// clock: two replicas would not agree on the fire times.
		return nil, fmt.Errorf("%w: @every is not supported; use a cron expression", ErrInvalidSchedule)
	}
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return nil, fmt.Errorf("%w: unknown time zone %q", ErrInvalidSchedule, tz)
		}
		loc = l
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSchedule, err)
	}
	return &Schedule{sched: s, loc: loc}, nil
}

// Next returns the first fire time strictly after t (zero if none within
// five years, robfig's bound for impossible dates such as 30 February).
//
// Daylight saving time is handled as cron users expect of a wall-clock
// time (robfig alone does otherwise):
//   - a wall time that does not exist (02:30 on a spring-forward night)
//     fires at the transition (03:00), instead of skipping the day;
//   - a wall time that happens twice (02:30 on a fall-back night) fires
//     once, at the first, unless the hour field is "*": an hourly
//     schedule keeps firing every hour by the clock.
func (s *Schedule) Next(t time.Time) time.Time {
	for range 4 {
		n := s.sched.Next(t.In(s.loc))
		if gap, ok := s.inGap(t, n); ok {
			return gap.UTC()
		}
		if n.IsZero() || !s.repeated(n) {
			return n.UTC()
		}
		t = n // the second occurrence of a wall time: skip it
	}
	return time.Time{}
}

// repeated reports whether n's wall time already happened in the hour or
// two before it (a fall-back overlap) and the schedule names its hour.
func (s *Schedule) repeated(n time.Time) bool {
	if spec, ok := s.sched.(*cron.SpecSchedule); !ok || spec.Hour&starBit != 0 {
		return false
	}
	w := n.In(s.loc)
	for _, back := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		p := n.Add(-back).In(s.loc)
		if p.Hour() == w.Hour() && p.Minute() == w.Minute() && p.Second() == w.Second() && p.YearDay() == w.YearDay() {
			return true
		}
	}
	return false
}

// starBit is robfig's mark of a "*" field.
const starBit = 1 << 63

// inGap looks for a spring-forward transition between t and n (n zero:
// none within robfig's bound, so none is looked for) and returns it when
// the schedule would have fired at a wall time the transition skipped.
func (s *Schedule) inGap(t, n time.Time) (time.Time, bool) {
	if n.IsZero() {
		return time.Time{}, false
	}
	_, offT := t.In(s.loc).Zone()
	_, offN := n.In(s.loc).Zone()
	if offN <= offT {
		return time.Time{}, false
	}
	// The transition: the first second whose offset is offN's side.
	lo, hi := t, n
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2)
		if _, off := mid.In(s.loc).Zone(); off == offT {
			lo = mid
		} else {
			hi = mid
		}
	}
	tr := hi.Truncate(time.Second)
	_, before := tr.Add(-time.Second).In(s.loc).Zone()
	_, after := tr.In(s.loc).Zone()
	// On the clock as it was before the transition, would the schedule
	// have fired inside the skipped wall times?
	c := s.sched.Next(t.In(time.FixedZone("", before)))
	if c.IsZero() || c.Before(tr) || !c.Before(tr.Add(time.Duration(after-before)*time.Second)) || !c.Before(n) {
		return time.Time{}, false
	}
	return tr, true
}

// Due returns the latest fire time in (last, now], if any. Fires missed
// between last and now are skipped: only the latest one runs.
func (s *Schedule) Due(last, now time.Time) (time.Time, bool) {
	from := last
	for range 2 {
		var due time.Time
		t := from
		i := 0
		for ; i < maxCatchUp; i++ {
			n := s.Next(t)
			if n.IsZero() || n.After(now) {
				return due, !due.IsZero()
			}
			due, t = n, n
		}
		from = now.Add(-24 * time.Hour)
	}
	return time.Time{}, false
}
