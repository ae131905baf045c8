package service

import (
	"errors"
	"log/slog"
	"math"
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// JobPathGCPercent is the garbage collector's target of the processes
// every job goes through on the control plane's side, the broker and the
// scheduler: a collection each time the heap has grown by four times what
// the last one kept, against Go's once. Their heaps are a few tens of MiB
// of short-lived messages and records, so collections were about a tenth
// of their CPU; at 400 the scheduler spends about a tenth less CPU per
// job and the broker a few percent less, for about 1.6 times their peak
// resident memory (docs/benchmarks.md). The runners keep Go's default:
// their memory is the customer's, and ingestion's peak grows with it.
const JobPathGCPercent = 400

// memoryLimitRatio is the share of the container's memory limit taken as
// the soft memory limit: the rest is for what the Go runtime does not
// count (stacks of C code, the kernel's buffers of the process).
const memoryLimitRatio = 0.9

// Tuning is the garbage collector's configuration a process runs with.
type Tuning struct {
	// GCPercent is the collector's target percentage (GOGC's meaning); -1
	// when collection is off.
	GCPercent int
	// MemoryLimit is the soft memory limit in bytes (GOMEMLIMIT's
	// meaning); math.MaxInt64 when there is none.
	MemoryLimit int64
}

// TuneRuntime sets the garbage collector's defaults, each only where the
// operator set none, and returns what the process runs with:
//
//   - gcPercent, when above 0 and GOGC is not set, becomes the collector's
//     target (0 keeps Go's 100);
//   - when GOMEMLIMIT is not set and the process runs in a container
//     (cgroup) with a memory limit, 90% of that limit becomes the soft
//     memory limit: near it the collector runs more often instead of the
//     container being killed, which is what makes a high target safe.
//     AUTOMEMLIMIT sets another ratio (0 to 1], or "off".
//
// The tuning is logged once.
func TuneRuntime(log *slog.Logger, gcPercent int) Tuning {
	return tuneRuntime(log, gcPercent, memlimit.FromCgroup)
}

func tuneRuntime(log *slog.Logger, gcPercent int, limit memlimit.Provider) Tuning {
	if gcPercent > 0 && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	tuning := Tuning{GCPercent: debug.SetGCPercent(-1)}
	debug.SetGCPercent(tuning.GCPercent)

	// memlimit leaves a GOMEMLIMIT of the environment alone, and takes no
	// limit when the cgroup has none; outside a cgroup (a developer's
	// machine) there is nothing to read.
	set, err := memlimit.Set(memlimit.WithProvider(limit), memlimit.WithRatio(memoryLimitRatio))
	tuning.MemoryLimit = set
	if err != nil {
		tuning.MemoryLimit = debug.SetMemoryLimit(-1)
		if !errors.Is(err, memlimit.ErrNoCgroup) {
			log.Warn("memory limit not set", "error", err)
		}
	}
	attrs := []any{"gc_percent", tuning.GCPercent}
	if tuning.MemoryLimit != math.MaxInt64 {
		attrs = append(attrs, "memory_limit_bytes", tuning.MemoryLimit)
	}
	log.Info("garbage collector tuned", attrs...)
	return tuning
}
