package directory

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
)

// Route is one route of the directory API with the role it requires; the
// authentication middleware enforces the role.
type Route struct {
	Pattern string
	Role    auth.Role
	Handler http.HandlerFunc
}

// StoreFunc returns the directory of the request's tenant, or writes the
// error response and returns false.
type StoreFunc func(w http.ResponseWriter, r *http.Request) (*Store, bool)

// APIOptions configure the directory API.
type APIOptions struct {
	// MaxRequestBytes bounds a request body; 0 means 64 KiB.
	MaxRequestBytes int64
	Logger          *slog.Logger
	Now             func() time.Time
}

// API is the directory's admin REST API.
type API struct {
	store StoreFunc
	opts  APIOptions
	log   *slog.Logger
}

// NewAPI returns the directory API; store resolves the request's tenant.
func NewAPI(store StoreFunc, opts APIOptions) *API {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 64 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &API{store: store, opts: opts, log: opts.Logger}
}

// Register adds routes to router, which enforces each route's role.
func Register(router *auth.Router, routes []Route) {
	for _, rt := range routes {
		router.HandleFunc(rt.Pattern, rt.Role, rt.Handler)
	}
}

// Routes returns every route of the API: reads need viewer, directory
// writes admin, and registering a deployment operator (the deployment
// user's own credential).
func (a *API) Routes() []Route {
	v, o, ad := auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin
	return []Route{
		{"GET /api/v1/users", v, a.with(a.listUsers)},
		{"GET /api/v1/users/{user}", v, a.with(a.getUser)},
		{"PUT /api/v1/users/{user}", ad, a.with(a.putUser)},
		{"DELETE /api/v1/users/{user}", ad, a.with(a.deleteUser)},
		{"GET /api/v1/teams", v, a.with(a.listTeams)},
		{"GET /api/v1/teams/{team}", v, a.with(a.getTeam)},
		{"PUT /api/v1/teams/{team}", ad, a.with(a.putTeam)},
		{"DELETE /api/v1/teams/{team}", ad, a.with(a.deleteTeam)},
		{"PUT /api/v1/teams/{team}/members/{user}", ad, a.with(a.setMember(true))},
		{"DELETE /api/v1/teams/{team}/members/{user}", ad, a.with(a.setMember(false))},
		{"GET /api/v1/projects", v, a.with(a.listProjects)},
		{"GET /api/v1/projects/{project}", v, a.with(a.getProject)},
		{"PUT /api/v1/projects/{project}", ad, a.with(a.putProject)},
		{"DELETE /api/v1/projects/{project}", ad, a.with(a.deleteProject)},
		{"PUT /api/v1/projects/{project}/admins/{user}", ad, a.with(a.setAdmin(true))},
		{"DELETE /api/v1/projects/{project}/admins/{user}", ad, a.with(a.setAdmin(false))},
		{"GET /api/v1/environments", v, a.with(a.listEnvironments)},
		{"GET /api/v1/environments/{environment}", v, a.with(a.getEnvironment)},
		{"PUT /api/v1/environments/{environment}", ad, a.with(a.putEnvironment)},
		{"DELETE /api/v1/environments/{environment}", ad, a.with(a.deleteEnvironment)},
		{"PUT /api/v1/environments/{environment}/projects/{project}", ad, a.with(a.associate(true))},
		{"DELETE /api/v1/environments/{environment}/projects/{project}", ad, a.with(a.associate(false))},
		{"GET /api/v1/deployments", v, a.with(a.listDeployments)},
		{"GET /api/v1/deployments/{pool}", v, a.with(a.getDeployment)},
		{"PUT /api/v1/deployments/{pool}", o, a.with(a.putDeployment)},
		{"DELETE /api/v1/deployments/{pool}", ad, a.with(a.deleteDeployment)},
	}
}

type handler func(w http.ResponseWriter, r *http.Request, s *Store)

func (a *API) with(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s, ok := a.store(w, r); ok {
			h(w, r, s)
		}
	}
}

// Request bodies.
type (
	userRequest struct {
		Name string `json:"name"`
	}
	projectRequest struct {
		Team string `json:"team"`
	}
	deploymentRequest struct {
		Environment string   `json:"environment"`
		Projects    []string `json:"projects"`
	}
	empty struct{}
)

// decode decodes the body into dst strictly (httpjson.DecodeBody).
func (a *API) decode(w http.ResponseWriter, r *http.Request, dst any, optional bool) bool {
	return httpjson.DecodeBody(w, r, dst, a.opts.MaxRequestBytes, optional)
}

// fail answers err: 400 for an invalid value, 404 for a missing entity,
// 409 for one in use, 403 for a rebind the caller may not make, 503 while the store is unavailable, 500 otherwise
// (logged, without the internal text).
func (a *API) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	if ie, ok := errors.AsType[*InvalidError](err); ok {
		httpjson.WriteError(w, http.StatusBadRequest, ie.Message, ie.Field)
		return
	}
	switch {
	case errors.Is(err, ErrNotFound):
		httpjson.WriteError(w, http.StatusNotFound, err.Error(), "")
	case errors.Is(err, ErrInUse):
		httpjson.WriteError(w, http.StatusConflict, err.Error(), "")
	case errors.Is(err, ErrRebind):
		httpjson.WriteError(w, http.StatusForbidden, err.Error()+": rebinding it to another user needs the admin role", "")
	case r.Context().Err() != nil:
	case queue.IsUnavailable(err):
		a.log.Warn("directory request failed, broker unavailable", "method", r.Method, "path", r.URL.Path, "op", op, "error", err)
		httpjson.WriteUnavailable(w, 2*time.Second, op+": the broker is unavailable for the moment; retry later")
	default:
		a.log.Error("directory request failed", "method", r.Method, "path", r.URL.Path, "op", op, "error", err)
		httpjson.WriteError(w, http.StatusInternalServerError, op+" failed", "")
	}
}

// written answers a PUT: 201 for a new entity, 200 otherwise.
func written(w http.ResponseWriter, v any, created bool) {
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	httpjson.WriteJSON(w, code, v)
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, s *Store) {
	out, err := s.ListUsers(r.Context())
	if err != nil {
		a.fail(w, r, "list users", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"users": nonNil(out)})
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request, s *Store) {
	u, err := s.GetUser(r.Context(), r.PathValue("user"))
	if err != nil {
		a.fail(w, r, "get user", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, u)
}

func (a *API) putUser(w http.ResponseWriter, r *http.Request, s *Store) {
	var req userRequest
	if !a.decode(w, r, &req, true) {
		return
	}
	u, created, err := s.PutUser(r.Context(), r.PathValue("user"), req.Name, a.opts.Now())
	if err != nil {
		a.fail(w, r, "put user", err)
		return
	}
	written(w, u, created)
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, s *Store) {
	if err := s.DeleteUser(r.Context(), r.PathValue("user")); err != nil {
		a.fail(w, r, "delete user", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listTeams(w http.ResponseWriter, r *http.Request, s *Store) {
	out, err := s.ListTeams(r.Context())
	if err != nil {
		a.fail(w, r, "list teams", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"teams": nonNil(out)})
}

func (a *API) getTeam(w http.ResponseWriter, r *http.Request, s *Store) {
	t, err := s.GetTeam(r.Context(), r.PathValue("team"))
	if err != nil {
		a.fail(w, r, "get team", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, t)
}

func (a *API) putTeam(w http.ResponseWriter, r *http.Request, s *Store) {
	if !a.decode(w, r, &empty{}, true) {
		return
	}
	t, created, err := s.PutTeam(r.Context(), r.PathValue("team"), a.opts.Now())
	if err != nil {
		a.fail(w, r, "put team", err)
		return
	}
	written(w, t, created)
}

func (a *API) deleteTeam(w http.ResponseWriter, r *http.Request, s *Store) {
	if err := s.DeleteTeam(r.Context(), r.PathValue("team")); err != nil {
		a.fail(w, r, "delete team", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) setMember(member bool) handler {
	return func(w http.ResponseWriter, r *http.Request, s *Store) {
		if !a.decode(w, r, &empty{}, true) {
			return
		}
		t, err := s.SetMember(r.Context(), r.PathValue("team"), r.PathValue("user"), member)
		if err != nil {
			a.fail(w, r, "set team member", err)
			return
		}
		httpjson.WriteJSON(w, http.StatusOK, t)
	}
}

func (a *API) listProjects(w http.ResponseWriter, r *http.Request, s *Store) {
	out, err := s.ListProjects(r.Context())
	if err != nil {
		a.fail(w, r, "list projects", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"projects": nonNil(out)})
}

func (a *API) getProject(w http.ResponseWriter, r *http.Request, s *Store) {
	p, err := s.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		a.fail(w, r, "get project", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, p)
}

func (a *API) putProject(w http.ResponseWriter, r *http.Request, s *Store) {
	var req projectRequest
	if !a.decode(w, r, &req, false) {
		return
	}
	if req.Team == "" {
		httpjson.WriteError(w, http.StatusBadRequest, "is required: the team the project belongs to", "team")
		return
	}
	p, created, err := s.PutProject(r.Context(), r.PathValue("project"), req.Team, a.opts.Now())
	if err != nil {
		a.fail(w, r, "put project", err)
		return
	}
	written(w, p, created)
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request, s *Store) {
	if err := s.DeleteProject(r.Context(), r.PathValue("project")); err != nil {
		a.fail(w, r, "delete project", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) setAdmin(admin bool) handler {
	return func(w http.ResponseWriter, r *http.Request, s *Store) {
		if !a.decode(w, r, &empty{}, true) {
			return
		}
		p, err := s.SetAdmin(r.Context(), r.PathValue("project"), r.PathValue("user"), admin)
		if err != nil {
			a.fail(w, r, "set project administrator", err)
			return
		}
		httpjson.WriteJSON(w, http.StatusOK, p)
	}
}

func (a *API) listEnvironments(w http.ResponseWriter, r *http.Request, s *Store) {
	out, err := s.ListEnvironments(r.Context())
	if err != nil {
		a.fail(w, r, "list environments", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"environments": nonNil(out)})
}

func (a *API) getEnvironment(w http.ResponseWriter, r *http.Request, s *Store) {
	e, err := s.GetEnvironment(r.Context(), r.PathValue("environment"))
	if err != nil {
		a.fail(w, r, "get environment", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, e)
}

func (a *API) putEnvironment(w http.ResponseWriter, r *http.Request, s *Store) {
	if !a.decode(w, r, &empty{}, true) {
		return
	}
	e, created, err := s.PutEnvironment(r.Context(), r.PathValue("environment"), a.opts.Now())
	if err != nil {
		a.fail(w, r, "put environment", err)
		return
	}
	written(w, e, created)
}

func (a *API) deleteEnvironment(w http.ResponseWriter, r *http.Request, s *Store) {
	if err := s.DeleteEnvironment(r.Context(), r.PathValue("environment")); err != nil {
		a.fail(w, r, "delete environment", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) associate(on bool) handler {
	return func(w http.ResponseWriter, r *http.Request, s *Store) {
		if !a.decode(w, r, &empty{}, true) {
			return
		}
		e, err := s.Associate(r.Context(), r.PathValue("environment"), r.PathValue("project"), on)
		if err != nil {
			a.fail(w, r, "associate project", err)
			return
		}
		httpjson.WriteJSON(w, http.StatusOK, e)
	}
}

func (a *API) listDeployments(w http.ResponseWriter, r *http.Request, s *Store) {
	out, err := s.ListDeployments(r.Context())
	if err != nil {
		a.fail(w, r, "list deployments", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"deployments": nonNil(out)})
}

func (a *API) getDeployment(w http.ResponseWriter, r *http.Request, s *Store) {
	d, err := s.GetDeployment(r.Context(), r.PathValue("pool"))
	if err != nil {
		a.fail(w, r, "get deployment", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, d)
}

// putDeployment registers the pool as a deployment of the caller: the
// principal making the request becomes its deployment user, so that
// reinstalling a deployment with another credential rebinds it. Taking a
// deployment over from another deployment user needs the admin role: an
// operator could otherwise make any deployment run its own jobs.
func (a *API) putDeployment(w http.ResponseWriter, r *http.Request, s *Store) {
	p := auth.PrincipalFrom(r.Context())
	user := UserOf(p)
	if user == "" {
		httpjson.WriteError(w, http.StatusUnauthorized, "a deployment is registered with its deployment user's credential: the request carries none", "")
		return
	}
	var req deploymentRequest
	if !a.decode(w, r, &req, true) {
		return
	}
	mayRebind := auth.RoleOf(p, s.Tenant()) >= auth.RoleAdmin
	d, created, err := s.BindDeployment(r.Context(), r.PathValue("pool"), user, req.Environment, req.Projects, mayRebind, a.opts.Now())
	if err != nil {
		a.fail(w, r, "register deployment", err)
		return
	}
	a.log.Info("deployment registered", "tenant", s.Tenant(), "pool", d.Pool, "user", d.User, "environment", d.Environment, "projects", d.Projects)
	written(w, d, created)
}

func (a *API) deleteDeployment(w http.ResponseWriter, r *http.Request, s *Store) {
	if err := s.DeleteDeployment(r.Context(), r.PathValue("pool")); err != nil {
		a.fail(w, r, "delete deployment", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// UserOf is the directory user a principal acts as: its name, or its
// subject when it has no name ("" for no principal).
func UserOf(p *auth.Principal) string {
	if p == nil {
		return ""
	}
	if p.Name != "" {
		return p.Name
	}
	return p.Subject
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
