package console

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outposthq/outpost/services/scheduler/internal/explain"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
)

// jobStates are the states the list filters on.
var jobStates = []string{"QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}

// jobFilter is the jobs list's filter form; the jobs API applies every
// filter, so Total counts every matching job, not only those shown.
type jobFilter struct {
	State  string
	Pool   string
	Label  string
	Since  string
	States []string
}

// sinceChoices are the time filter's options.
var sinceChoices = []struct{ Value, Label string }{
	{"", "any time"}, {"15m", "last 15 minutes"}, {"1h", "last hour"}, {"24h", "last day"}, {"168h", "last week"},
}

type jobsData struct {
	Filter jobFilter
	Since  any
	Jobs   []*jobs.Record
	Total  int
	Shown  int
	Query  string
	Error  string
}

func (c *Console) jobsData(r *http.Request) jobsData {
	q := r.URL.Query()
	f := jobFilter{State: q.Get("state"), Pool: q.Get("pool"), Label: strings.TrimSpace(q.Get("label")), Since: q.Get("since"), States: jobStates}
	d := jobsData{Filter: f, Since: sinceChoices, Query: r.URL.RawQuery}
	api := url.Values{"limit": {"500"}}
	for k, v := range map[string]string{"state": f.State, "pool": f.Pool, "label": f.Label} {
		if v != "" {
			api.Set(k, v)
		}
	}
	if dur, err := time.ParseDuration(f.Since); err == nil && dur > 0 {
		api.Set("since", c.now().Add(-dur).UTC().Format(time.RFC3339))
	}
	var out struct {
		Jobs  []*jobs.Record `json:"jobs"`
		Total int            `json:"total"`
	}
	if err := c.get(r, "/api/v1/jobs?"+api.Encode(), &out); err != nil {
		d.Error = err.Error()
		return d
	}
	d.Jobs, d.Total, d.Shown = out.Jobs, out.Total, len(out.Jobs)
	return d
}

// jobsPage lists the tenant's jobs, newest first. The table refreshes
// itself (htmx) so that states change without a reload; an htmx request
// gets the table alone.
func (c *Console) jobsPage(w http.ResponseWriter, r *http.Request) {
	d := c.jobsData(r)
	if r.Header.Get("HX-Request") != "" {
		c.fragment(w, "jobs", "jobs-table", d)
		return
	}
	c.render(w, r, http.StatusOK, "jobs", &page{Title: "Jobs", Nav: "jobs", Data: d})
}

type jobForm struct {
	Pool    string
	Kind    string
	Command string
	Args    string
	Timeout string
	Labels  string
	Sleep   string
	Error   string
	Field   string
}

func (c *Console) newJobPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "job_new", &page{Title: "Submit a job", Nav: "jobs", Data: jobForm{Pool: "default", Kind: "command", Timeout: "5m"}})
}

// submitJob submits the form's job through the API; its validation error
// is shown at its field.
func (c *Console) submitJob(w http.ResponseWriter, r *http.Request) {
	f := jobForm{
		Pool: strings.TrimSpace(r.PostForm.Get("pool")), Kind: r.PostForm.Get("kind"),
		Command: strings.TrimSpace(r.PostForm.Get("command")), Args: r.PostForm.Get("args"),
		Timeout: strings.TrimSpace(r.PostForm.Get("timeout")), Labels: r.PostForm.Get("labels"),
		Sleep: strings.TrimSpace(r.PostForm.Get("sleep")),
	}
	body := map[string]any{"pool": f.Pool}
	if f.Timeout != "" {
		body["timeout"] = f.Timeout
	}
	switch f.Kind {
	case "noop":
		noop := map[string]any{}
		if f.Sleep != "" {
			noop["sleep"] = f.Sleep
		}
		body["task"] = map[string]any{"noop": noop}
	default:
		f.Kind = "command"
		cmd := map[string]any{"command": f.Command}
		if args := lines(f.Args); len(args) > 0 {
			cmd["args"] = args
		}
		body["task"] = map[string]any{"command": cmd}
	}
	labels := map[string]string{}
	for _, l := range lines(f.Labels) {
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.TrimSpace(k) == "" {
			f.Error, f.Field = "each label is key=value on its own line", "labels"
			c.render(w, r, http.StatusBadRequest, "job_new", &page{Title: "Submit a job", Nav: "jobs", Data: f})
			return
		}
		labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if len(labels) > 0 {
		body["labels"] = labels
	}
	var rec jobs.Record
	if err := c.do(r, http.MethodPost, "/api/v1/jobs", body, &rec); err != nil {
		if e, ok := inputError(err); ok {
			f.Error, f.Field = e.Message, e.Field
			c.render(w, r, e.Status, "job_new", &page{Title: "Submit a job", Nav: "jobs", Data: f})
			return
		}
		c.failure(w, r, err)
		return
	}
	http.Redirect(w, r, "/jobs/"+url.PathEscape(rec.ID), http.StatusSeeOther)
}

// lines splits s into its non-empty lines.
func lines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		if l = strings.TrimRight(l, " \t"); strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// attempt is one attempt of a job, from its history.
type attempt struct {
	Number      int
	Transitions []jobs.Transition
}

type jobData struct {
	Job      *jobs.Record
	Attempts []attempt
	Explain  *explain.Explanation
	Results  json.RawMessage
	Task     string
}

func (c *Console) loadJob(r *http.Request, id string) (*jobData, error) {
	var rec jobs.Record
	if err := c.get(r, "/api/v1/jobs/"+url.PathEscape(id), &rec); err != nil {
		return nil, err
	}
	d := &jobData{Job: &rec}
	for _, t := range rec.History {
		if n := len(d.Attempts); n == 0 || d.Attempts[n-1].Number != t.Attempt {
			d.Attempts = append(d.Attempts, attempt{Number: t.Attempt})
		}
		d.Attempts[len(d.Attempts)-1].Transitions = append(d.Attempts[len(d.Attempts)-1].Transitions, t)
	}
	if rec.Live() {
		var ex explain.Explanation
		if err := c.get(r, "/api/v1/jobs/"+url.PathEscape(id)+"/explain", &ex); err == nil {
			d.Explain = &ex
		}
	}
	if task, err := json.MarshalIndent(rec.Task, "", "  "); err == nil {
		d.Task = string(task)
	}
	return d, nil
}

// jobPage shows one job: state, attempts and their transitions, reasons,
// explain while it waits or runs, results and its log, followed live.
func (c *Console) jobPage(w http.ResponseWriter, r *http.Request) {
	d, err := c.loadJob(r, r.PathValue("id"))
	if err != nil {
		c.failure(w, r, err)
		return
	}
	if !d.Job.Live() {
		var res map[string]any
		if err := c.get(r, "/api/v1/jobs/"+url.PathEscape(d.Job.ID)+"/results?limit=50", &res); err == nil {
			if n, _ := res["total_records"].(float64); n > 0 || res["total_checks"] != float64(0) {
				d.Results, _ = json.MarshalIndent(res, "", "  ")
			}
		}
	}
	c.render(w, r, http.StatusOK, "job", &page{Title: "Job " + d.Job.ID, Nav: "jobs", Data: d})
}

// cancelJob cancels through the API.
func (c *Console) cancelJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := c.do(r, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(id)+"/cancel", map[string]any{"reason": "cancelled from the console"}, nil); err != nil {
		c.failure(w, r, err)
		return
	}
	http.Redirect(w, r, "/jobs/"+url.PathEscape(id), http.StatusSeeOther)
}

// statePoll is how often a job's live page looks at the record.
const statePoll = 500 * time.Millisecond

// jobEvents streams a job page's live parts as server-sent events until
// the job has ended and its log is drained: "state" (the state panel's
// HTML, when the record changed), "log" (one log line as JSON, from the
// API's log follow, masked as the runner masked it) and "end".
func (c *Console) jobEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d, err := c.loadJob(r, id)
	if err != nil {
		if e, ok := err.(*apiError); ok { //nolint:errorlint // never wrapped
			http.Error(w, e.Message, e.Status)
			return
		}
		http.Error(w, "the job could not be read", http.StatusBadGateway)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a follow lasts as long as the job
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(c.stopping, cancel)
	defer stop()

	var mu sync.Mutex
	send := func(event string, data []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		var b bytes.Buffer
		b.WriteString("event: " + event + "\n")
		for l := range bytes.SplitSeq(data, []byte("\n")) {
			b.WriteString("data: ")
			b.Write(l)
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
		if _, err := w.Write(b.Bytes()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	sendState := func(d *jobData) bool {
		var b bytes.Buffer
		if err := c.pages["job"].ExecuteTemplate(&b, "job-state", d); err != nil {
			c.log.Error("console fragment failed", "block", "job-state", "error", err)
			return false
		}
		return send("state", b.Bytes())
	}
	if !sendState(d) {
		return
	}
	logsDone := make(chan struct{})
	s := sessionFrom(r)
	go func() {
		defer close(logsDone)
		err := c.stream(ctx, s, "/api/v1/jobs/"+url.PathEscape(id)+"/logs?follow=true&format=ndjson", func(line []byte) bool {
			return send("log", line)
		})
		if err != nil && ctx.Err() == nil {
			c.log.Warn("console log follow failed", "job_id", id, "error", err)
		}
	}()
	last := d.Job.UpdatedAt
	live := d.Job.Live()
	tick := time.NewTicker(statePoll)
	defer tick.Stop()
	for live {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		nd, err := c.loadJob(r.WithContext(ctx), id)
		if err != nil {
			continue
		}
		if nd.Job.UpdatedAt.Equal(last) {
			continue
		}
		last, live = nd.Job.UpdatedAt, nd.Job.Live()
		if !sendState(nd) {
			return
		}
	}
	select {
	case <-logsDone:
	case <-ctx.Done():
		return
	}
	send("end", []byte(strconv.Quote(string(d.Job.State))))
}
