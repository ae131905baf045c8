package directory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// PutUser creates a user or renames it; created is true for a new one.
func (s *Store) PutUser(ctx context.Context, id, name string, now time.Time) (*User, bool, error) {
	if err := CheckUserID(id, "user"); err != nil {
		return nil, false, err
	}
	return upsert(ctx, s, userKey(id), "user "+id,
		func() *User { return &User{ID: id, Name: name, CreatedAt: now} },
		func(u *User) (bool, error) {
			if u.Name == name {
				return false, nil
			}
			u.Name = name
			return true, nil
		})
}

// GetUser returns a user.
func (s *Store) GetUser(ctx context.Context, id string) (*User, error) {
	if err := CheckUserID(id, "user"); err != nil {
		return nil, err
	}
	u, _, err := get[User](ctx, s, userKey(id), "user "+id)
	return u, err
}

// ListUsers returns every user, by id.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	out, err := list[User](ctx, s, prefixUser)
	slices.SortFunc(out, func(a, b User) int { return compare(a.ID, b.ID) })
	return out, err
}

// DeleteUser removes a user that no team, project or deployment names.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	if err := CheckUserID(id, "user"); err != nil {
		return err
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		return err
	}
	for _, t := range snap.Teams {
		if slices.Contains(t.Members, id) {
			return fmt.Errorf("user %s is a member of team %s: %w", id, t.ID, ErrInUse)
		}
	}
	for _, p := range snap.Projects {
		if slices.Contains(p.Admins, id) {
			return fmt.Errorf("user %s administers project %s: %w", id, p.ID, ErrInUse)
		}
	}
	return s.remove(ctx, userKey(id), "user "+id)
}

// PutTeam creates a team (no change if it exists).
func (s *Store) PutTeam(ctx context.Context, id string, now time.Time) (*Team, bool, error) {
	if err := CheckName(id, "team"); err != nil {
		return nil, false, err
	}
	return upsert(ctx, s, prefixTeam+id, "team "+id,
		func() *Team { return &Team{ID: id, Members: []string{}, CreatedAt: now} },
		func(*Team) (bool, error) { return false, nil })
}

// GetTeam returns a team.
func (s *Store) GetTeam(ctx context.Context, id string) (*Team, error) {
	if err := CheckName(id, "team"); err != nil {
		return nil, err
	}
	t, _, err := get[Team](ctx, s, prefixTeam+id, "team "+id)
	return t, err
}

// ListTeams returns every team, by id.
func (s *Store) ListTeams(ctx context.Context) ([]Team, error) {
	out, err := list[Team](ctx, s, prefixTeam)
	slices.SortFunc(out, func(a, b Team) int { return compare(a.ID, b.ID) })
	return out, err
}

// DeleteTeam removes a team no project belongs to.
func (s *Store) DeleteTeam(ctx context.Context, id string) error {
	if err := CheckName(id, "team"); err != nil {
		return err
	}
	projects, err := s.ListProjects(ctx)
	if err != nil {
		return err
	}
	for _, p := range projects {
		if p.Team == id {
			return fmt.Errorf("project %s belongs to team %s: %w", p.ID, id, ErrInUse)
		}
	}
	return s.remove(ctx, prefixTeam+id, "team "+id)
}

// SetMember adds user to team (member true) or removes it. The user must
// exist to be added.
func (s *Store) SetMember(ctx context.Context, team, user string, member bool) (*Team, error) {
	if err := CheckName(team, "team"); err != nil {
		return nil, err
	}
	if err := CheckUserID(user, "user"); err != nil {
		return nil, err
	}
	if member {
		if _, err := s.GetUser(ctx, user); err != nil {
			return nil, err
		}
	}
	return update(ctx, s, prefixTeam+team, "team "+team, func(t *Team) (bool, error) {
		if member {
			return addTo(&t.Members, user), nil
		}
		return removeFrom(&t.Members, user), nil
	})
}

// PutProject creates a project of team, or moves it to team.
func (s *Store) PutProject(ctx context.Context, id, team string, now time.Time) (*Project, bool, error) {
	if err := CheckName(id, "project"); err != nil {
		return nil, false, err
	}
	if err := CheckName(team, "team"); err != nil {
		return nil, false, err
	}
	if _, err := s.GetTeam(ctx, team); err != nil {
		return nil, false, err
	}
	return upsert(ctx, s, prefixProject+id, "project "+id,
		func() *Project { return &Project{ID: id, Team: team, Admins: []string{}, CreatedAt: now} },
		func(p *Project) (bool, error) {
			if p.Team == team {
				return false, nil
			}
			p.Team = team
			return true, nil
		})
}

// GetProject returns a project.
func (s *Store) GetProject(ctx context.Context, id string) (*Project, error) {
	if err := CheckName(id, "project"); err != nil {
		return nil, err
	}
	p, _, err := get[Project](ctx, s, prefixProject+id, "project "+id)
	return p, err
}

// ListProjects returns every project, by id.
func (s *Store) ListProjects(ctx context.Context) ([]Project, error) {
	out, err := list[Project](ctx, s, prefixProject)
	slices.SortFunc(out, func(a, b Project) int { return compare(a.ID, b.ID) })
	return out, err
}

// DeleteProject removes a project no environment or deployment names.
func (s *Store) DeleteProject(ctx context.Context, id string) error {
	if err := CheckName(id, "project"); err != nil {
		return err
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		return err
	}
	for _, e := range snap.Environments {
		if slices.Contains(e.Projects, id) {
			return fmt.Errorf("project %s is associated with environment %s: %w", id, e.Name, ErrInUse)
		}
	}
	for _, d := range snap.Deployments {
		if slices.Contains(d.Projects, id) {
			return fmt.Errorf("project %s is in the project list of deployment %s: %w", id, d.Pool, ErrInUse)
		}
	}
	return s.remove(ctx, prefixProject+id, "project "+id)
}

// SetAdmin makes user an administrator of project (admin true) or no
// longer one. The user must exist to be made one.
func (s *Store) SetAdmin(ctx context.Context, project, user string, admin bool) (*Project, error) {
	if err := CheckName(project, "project"); err != nil {
		return nil, err
	}
	if err := CheckUserID(user, "user"); err != nil {
		return nil, err
	}
	if admin {
		if _, err := s.GetUser(ctx, user); err != nil {
			return nil, err
		}
	}
	return update(ctx, s, prefixProject+project, "project "+project, func(p *Project) (bool, error) {
		if admin {
			return addTo(&p.Admins, user), nil
		}
		return removeFrom(&p.Admins, user), nil
	})
}

// PutEnvironment creates an environment (no change if it exists).
func (s *Store) PutEnvironment(ctx context.Context, name string, now time.Time) (*Environment, bool, error) {
	if err := CheckName(name, "environment"); err != nil {
		return nil, false, err
	}
	return upsert(ctx, s, prefixEnv+name, "environment "+name,
		func() *Environment { return &Environment{Name: name, Projects: []string{}, CreatedAt: now} },
		func(*Environment) (bool, error) { return false, nil })
}

// GetEnvironment returns an environment.
func (s *Store) GetEnvironment(ctx context.Context, name string) (*Environment, error) {
	if err := CheckName(name, "environment"); err != nil {
		return nil, err
	}
	e, _, err := get[Environment](ctx, s, prefixEnv+name, "environment "+name)
	return e, err
}

// ListEnvironments returns every environment, by name.
func (s *Store) ListEnvironments(ctx context.Context) ([]Environment, error) {
	out, err := list[Environment](ctx, s, prefixEnv)
	slices.SortFunc(out, func(a, b Environment) int { return compare(a.Name, b.Name) })
	return out, err
}

// DeleteEnvironment removes an environment no deployment runs in.
func (s *Store) DeleteEnvironment(ctx context.Context, name string) error {
	if err := CheckName(name, "environment"); err != nil {
		return err
	}
	deps, err := s.ListDeployments(ctx)
	if err != nil {
		return err
	}
	for _, d := range deps {
		if d.Environment == name {
			return fmt.Errorf("deployment %s runs in environment %s: %w", d.Pool, name, ErrInUse)
		}
	}
	return s.remove(ctx, prefixEnv+name, "environment "+name)
}

// Associate associates project with environment (on true) or dissociates
// it. The project must exist to be associated.
func (s *Store) Associate(ctx context.Context, env, project string, on bool) (*Environment, error) {
	if err := CheckName(env, "environment"); err != nil {
		return nil, err
	}
	if err := CheckName(project, "project"); err != nil {
		return nil, err
	}
	if on {
		if _, err := s.GetProject(ctx, project); err != nil {
			return nil, err
		}
	}
	return update(ctx, s, prefixEnv+env, "environment "+env, func(e *Environment) (bool, error) {
		if on {
			return addTo(&e.Projects, project), nil
		}
		return removeFrom(&e.Projects, project), nil
	})
}

// BindDeployment registers pool as a deployment of user (the deployment
// user), in environment env ("" for none) and with the explicit project
// list projects. Registering it again replaces the environment and list,
// and rebinds it when user is another one, which only a caller that may
// rebind (mayRebind) can do (ErrRebind otherwise). The environment and
// the projects must exist.
func (s *Store) BindDeployment(ctx context.Context, pool, user, env string, projects []string, mayRebind bool, now time.Time) (*Deployment, bool, error) {
	if err := CheckName(pool, "pool"); err != nil {
		return nil, false, err
	}
	if err := CheckUserID(user, "user"); err != nil {
		return nil, false, err
	}
	if env != "" {
		if err := CheckName(env, "environment"); err != nil {
			return nil, false, err
		}
		if _, err := s.GetEnvironment(ctx, env); err != nil {
			return nil, false, err
		}
	}
	set := []string{}
	for i, p := range projects {
		if err := CheckName(p, fmt.Sprintf("projects[%d]", i)); err != nil {
			return nil, false, err
		}
		if _, err := s.GetProject(ctx, p); err != nil {
			return nil, false, err
		}
		addTo(&set, p)
	}
	return upsert(ctx, s, prefixDeployment+pool, "deployment "+pool,
		func() *Deployment {
			return &Deployment{Pool: pool, User: user, Environment: env, Projects: set, BoundAt: now, CreatedAt: now}
		},
		func(d *Deployment) (bool, error) {
			if d.User == user && d.Environment == env && slices.Equal(d.Projects, set) {
				return false, nil
			}
			if d.User != user {
				if !mayRebind {
					return false, fmt.Errorf("deployment %s is bound to %s: %w", pool, d.User, ErrRebind)
				}
				d.BoundAt = now
			}
			d.User, d.Environment, d.Projects = user, env, set
			return true, nil
		})
}

// GetDeployment returns the deployment of pool.
func (s *Store) GetDeployment(ctx context.Context, pool string) (*Deployment, error) {
	if err := CheckName(pool, "pool"); err != nil {
		return nil, err
	}
	d, _, err := get[Deployment](ctx, s, prefixDeployment+pool, "deployment "+pool)
	return d, err
}

// ListDeployments returns every deployment, by pool.
func (s *Store) ListDeployments(ctx context.Context) ([]Deployment, error) {
	out, err := list[Deployment](ctx, s, prefixDeployment)
	slices.SortFunc(out, func(a, b Deployment) int { return compare(a.Pool, b.Pool) })
	return out, err
}

// DeleteDeployment unregisters the deployment of pool: the pool's jobs
// are dispatched without the polling rules again.
func (s *Store) DeleteDeployment(ctx context.Context, pool string) error {
	if err := CheckName(pool, "pool"); err != nil {
		return err
	}
	return s.remove(ctx, prefixDeployment+pool, "deployment "+pool)
}

func compare(a, b string) int { return strings.Compare(a, b) }
