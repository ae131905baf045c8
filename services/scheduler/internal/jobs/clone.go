package jobs

import (
	"maps"
	"slices"
)

// Clone returns a deep copy of r: no map, slice or pointed-to value is
// shared with r, so either can be changed without the other seeing it. It
// costs a small fraction of decoding the record again, which is why the
// store keeps the records it wrote decoded (kv.Cache).
// TestCloneSharesNothing fills every field, so a field added to the record
// without its copy here fails it.
func (r *Record) Clone() *Record {
	if r == nil {
		return nil
	}
	c := *r
	c.Task = r.Task.clone()
	c.Labels = maps.Clone(r.Labels)
	c.TraceContext = maps.Clone(r.TraceContext)
	c.Outputs = maps.Clone(r.Outputs)
	c.ExitCode = clonePtr(r.ExitCode)
	c.StartedAt = clonePtr(r.StartedAt)
	c.FinishedAt = clonePtr(r.FinishedAt)
	c.RetryAt = clonePtr(r.RetryAt)
	c.History = slices.Clone(r.History)
	if r.Logs != nil {
		c.Logs = make([]AttemptLogs, len(r.Logs))
		for i, l := range r.Logs {
			c.Logs[i] = l
			c.Logs[i].Lines = slices.Clone(l.Lines)
		}
	}
	return &c
}

func (t Task) clone() Task {
	c := t
	if t.Command != nil {
		cmd := *t.Command
		cmd.Args = slices.Clone(cmd.Args)
		cmd.Env = maps.Clone(cmd.Env)
		cmd.Recipe = clonePtr(cmd.Recipe)
		c.Command = &cmd
	}
	c.Noop = clonePtr(t.Noop)
	c.Ingest = clonePtr(t.Ingest)
	if t.Assertion != nil {
		a := *t.Assertion
		a.Checks = slices.Clone(a.Checks)
		for i, ch := range a.Checks {
			if ch.RowCount != nil {
				rc := *ch.RowCount
				rc.Min, rc.Max = clonePtr(rc.Min), clonePtr(rc.Max)
				a.Checks[i].RowCount = &rc
			}
			a.Checks[i].Freshness = clonePtr(ch.Freshness)
			a.Checks[i].SQL = clonePtr(ch.SQL)
			a.Checks[i].Column = clonePtr(ch.Column)
		}
		c.Assertion = &a
	}
	if t.Kubernetes != nil {
		k := *t.Kubernetes
		k.Command = slices.Clone(k.Command)
		k.Args = slices.Clone(k.Args)
		k.Env = maps.Clone(k.Env)
		k.Resources = clonePtr(k.Resources)
		c.Kubernetes = &k
	}
	return c
}

// clonePtr copies the value p points to (p's type holds no references).
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
