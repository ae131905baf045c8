package directory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/outposthq/outpost/libs/kv"
)

// The rules a deployment may take a job by (Check.Rule).
const (
	// RuleDeploymentUser: the job was started by the deployment user.
	RuleDeploymentUser = "deployment-user"
	// RuleProjectAdmin: same team, and the deployment user administers
	// the job's project.
	RuleProjectAdmin = "team-and-project-admin"
	// RuleEnvironment: same team, and the job's project is associated with
	// the deployment's environment.
	RuleEnvironment = "team-and-environment"
	// RuleProjectList: same team, and the job's project is in the
	// deployment's explicit project list.
	RuleProjectList = "team-and-project-list"
)

// Snapshot is the whole directory of a tenant, read at once.
type Snapshot struct {
	Teams        []Team
	Projects     []Project
	Environments []Environment
	Deployments  []Deployment
}

// Snapshot reads the teams, projects, environments and deployments, in
// one pass over the bucket.
func (s *Store) Snapshot(ctx context.Context) (*Snapshot, error) {
	var (
		snap Snapshot
		derr error
	)
	decodeInto := func(e kv.Entry, v any) bool {
		if err := json.Unmarshal(e.Value, v); err != nil {
			derr = fmt.Errorf("decode %s: %w", e.Key, err)
			return false
		}
		return true
	}
	err := s.kv.List(ctx, func(e kv.Entry) bool {
		switch {
		case strings.HasPrefix(e.Key, prefixTeam):
			var v Team
			if !decodeInto(e, &v) {
				return false
			}
			snap.Teams = append(snap.Teams, v)
		case strings.HasPrefix(e.Key, prefixProject):
			var v Project
			if !decodeInto(e, &v) {
				return false
			}
			snap.Projects = append(snap.Projects, v)
		case strings.HasPrefix(e.Key, prefixEnv):
			var v Environment
			if !decodeInto(e, &v) {
				return false
			}
			snap.Environments = append(snap.Environments, v)
		case strings.HasPrefix(e.Key, prefixDeployment):
			var v Deployment
			if !decodeInto(e, &v) {
				return false
			}
			snap.Deployments = append(snap.Deployments, v)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("read the directory: %w", err)
	}
	if derr != nil {
		return nil, derr
	}
	return &snap, nil
}

// Check is the outcome of the polling rules for one job and one
// deployment.
type Check struct {
	Pool           string `json:"pool"`
	DeploymentUser string `json:"deployment_user"`
	Environment    string `json:"environment,omitempty"`
	Allowed        bool   `json:"allowed"`
	// Rule is the rule that admits the job (one of the Rule constants).
	Rule string `json:"rule,omitempty"`
	// Failed names each rule that did not hold, when none admits the job.
	Failed []string `json:"failed,omitempty"`
}

// Summary says in one line why the deployment may or may not take the job.
func (c *Check) Summary() string {
	if c.Allowed {
		return fmt.Sprintf("deployment %s (user %s) may take the job: rule %s", c.Pool, c.DeploymentUser, c.Rule)
	}
	return fmt.Sprintf("deployment %s (user %s) may not take the job: %s", c.Pool, c.DeploymentUser, strings.Join(c.Failed, "; "))
}

// Evaluate applies the polling rules of deployment d to a job of user and
// project (either may be empty). A job is taken when it was started by the
// deployment user; or when its user is in a team of the deployment user
// and (the deployment user administers the project, or the project is
// associated with the deployment's environment, or the project is in the
// deployment's explicit project list).
func (snap *Snapshot) Evaluate(d *Deployment, user, project string) Check {
	c := Check{Pool: d.Pool, DeploymentUser: d.User, Environment: d.Environment}
	if user != "" && user == d.User {
		c.Allowed, c.Rule = true, RuleDeploymentUser
		return c
	}
	if user == "" {
		c.Failed = append(c.Failed, fmt.Sprintf("the job has no submitting user, so it is neither the deployment user %s nor in a team of it", d.User))
	} else if !snap.shareTeam(user, d.User) {
		c.Failed = append(c.Failed, fmt.Sprintf("user %s is not in team of deployment user %s", user, d.User))
	}
	if project == "" {
		c.Failed = append(c.Failed, "the job names no project, so no project rule can admit it")
		return c
	}
	var projectFails []string
	rule := ""
	if p := snap.project(project); p != nil && slices.Contains(p.Admins, d.User) {
		rule = RuleProjectAdmin
	} else {
		projectFails = append(projectFails, fmt.Sprintf("deployment user %s is not administrator of project %s", d.User, project))
	}
	switch {
	case rule != "":
	case d.Environment == "":
		projectFails = append(projectFails, fmt.Sprintf("deployment %s has no environment", d.Pool))
	case slices.Contains(snap.environment(d.Environment), project):
		rule = RuleEnvironment
	default:
		projectFails = append(projectFails, fmt.Sprintf("project %s not associated with environment %s", project, d.Environment))
	}
	switch {
	case rule != "":
	case slices.Contains(d.Projects, project):
		rule = RuleProjectList
	default:
		projectFails = append(projectFails, fmt.Sprintf("project %s not in the project list of deployment %s", project, d.Pool))
	}
	if rule == "" {
		c.Failed = append(c.Failed, projectFails...)
	}
	if len(c.Failed) == 0 {
		c.Allowed, c.Rule = true, rule
	}
	return c
}

// Check applies the polling rules of pool's deployment to a job of user
// and project; nil when the pool has no registered deployment.
func (snap *Snapshot) Check(pool, user, project string) *Check {
	for i := range snap.Deployments {
		if d := &snap.Deployments[i]; d.Pool == pool {
			c := snap.Evaluate(d, user, project)
			return &c
		}
	}
	return nil
}

func (snap *Snapshot) shareTeam(a, b string) bool {
	for _, t := range snap.Teams {
		if slices.Contains(t.Members, a) && slices.Contains(t.Members, b) {
			return true
		}
	}
	return false
}

func (snap *Snapshot) project(id string) *Project {
	for i := range snap.Projects {
		if snap.Projects[i].ID == id {
			return &snap.Projects[i]
		}
	}
	return nil
}

func (snap *Snapshot) environment(name string) []string {
	for _, e := range snap.Environments {
		if e.Name == name {
			return e.Projects
		}
	}
	return nil
}

// Gate applies the polling rules of pool's deployment to a job of user and
// project. It returns nil when the pool has no registered deployment: such
// a pool takes every job of the tenant, as before deployments existed.
func (s *Store) Gate(ctx context.Context, pool, user, project string) (*Check, error) {
	d, err := s.GetDeployment(ctx, pool)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return gate(d, user, project, func() (*Snapshot, error) { return s.Snapshot(ctx) })
}

// gate applies the rules of d (nil: no deployment, every job passes); it
// reads the directory with snapshot only when the job's user is not the
// deployment user.
func gate(d *Deployment, user, project string, snapshot func() (*Snapshot, error)) (*Check, error) {
	if d == nil {
		return nil, nil
	}
	if user != "" && user == d.User {
		c := Check{Pool: d.Pool, DeploymentUser: d.User, Environment: d.Environment, Allowed: true, Rule: RuleDeploymentUser}
		return &c, nil
	}
	snap, err := snapshot()
	if err != nil {
		return nil, err
	}
	c := snap.Evaluate(d, user, project)
	return &c, nil
}
