// Package chaos runs Outpost's real binaries under a stream of short jobs
// while a Driver kills its processes with SIGKILL at seeded random moments
// and restarts them, then checks that no job was lost or recorded twice.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Target is one kind of process the driver kills: the scheduler, a runner,
// the broker or a node of a broker cluster.
type Target struct {
	Kind string
	// Kill kills one process of the kind with SIGKILL (the one rng picks
	// when there are several) and returns its name.
	Kill func(rng *rand.Rand) string
	// Restart starts the killed process again and returns once it is
	// ready.
	Restart func(name string)
}

// Kill is one entry of the driver's schedule.
type Kill struct {
	// At is the moment of the kill, from the start of the run.
	At   time.Duration
	Kind string
	// Down is how long the process stays dead before its restart.
	Down time.Duration
}

func (k Kill) String() string {
	return fmt.Sprintf("%s at %s (down %s)", k.Kind, k.At.Round(time.Millisecond), k.Down.Round(time.Millisecond))
}

// Driver kills and restarts processes along a schedule drawn from a seed:
// the same seed gives the same schedule and the same choice of victims.
type Driver struct {
	Seed     uint64
	Schedule []Kill
	targets  map[string]Target
	rng      *rand.Rand
	// Kills counts the kills done, by kind.
	Kills map[string]int
	// Events lists what was done, in order, for the test log.
	Events []string
}

// maxDown bounds how long a killed process stays down.
const maxDown = time.Second

// NewDriver plans kills kills over span: the span is cut into as many
// equal slots and each kill falls at a random moment of its slot (so that
// two kills do not overlap), and the kinds take turns in a shuffled order
// so that every kind is killed when kills >= len(targets).
func NewDriver(seed uint64, kills int, span time.Duration, targets []Target) *Driver {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	d := &Driver{Seed: seed, targets: map[string]Target{}, rng: rng, Kills: map[string]int{}}
	kinds := make([]string, 0, len(targets))
	for _, t := range targets {
		d.targets[t.Kind] = t
		kinds = append(kinds, t.Kind)
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	slot := span / time.Duration(max(kills, 1))
	for i := range kills {
		// The first half of a slot, so that the restart (down time and
		// readiness) fits before the next one.
		at := time.Duration(i)*slot + time.Duration(rng.Int64N(int64(slot/2)+1))
		d.Schedule = append(d.Schedule, Kill{
			At:   at,
			Kind: kinds[i%len(kinds)],
			Down: time.Duration(rng.Int64N(int64(maxDown) + 1)),
		})
	}
	return d
}

// Run carries out the schedule from start and returns after the last
// restart. Each kill waits for its moment, or for the previous restart when
// that took longer.
func (d *Driver) Run(start time.Time) {
	for _, k := range d.Schedule {
		if wait := time.Until(start.Add(k.At)); wait > 0 {
			<-time.After(wait)
		}
		t := d.targets[k.Kind]
		name := t.Kill(d.rng)
		killedAt := time.Since(start)
		d.Kills[k.Kind]++
		<-time.After(k.Down)
		t.Restart(name)
		d.Events = append(d.Events, fmt.Sprintf("%s: SIGKILL %s at %s, ready again at %s",
			k.Kind, name, killedAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond)))
	}
}

// Plan describes the schedule for the test log.
func (d *Driver) Plan() string {
	parts := make([]string, 0, len(d.Schedule))
	for _, k := range d.Schedule {
		parts = append(parts, k.String())
	}
	return fmt.Sprintf("seed %d: %s", d.Seed, strings.Join(parts, "; "))
}

// Kinds returns the kinds of the driver's targets, sorted.
func (d *Driver) Kinds() []string {
	kinds := make([]string, 0, len(d.targets))
	for k := range d.targets {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return kinds
}
