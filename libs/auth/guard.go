package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/outposthq/outpost/libs/httpjson"
)

// TenantHeader lets a principal holding several tenants name the one a
// request acts in.
const TenantHeader = "X-Outpost-Tenant"

// RequestIDHeader carries the request's id in every guarded response.
const RequestIDHeader = "X-Request-Id"

// Verifier turns a bearer token into a principal.
type Verifier interface {
	Verify(ctx context.Context, token string) (*Principal, error)
}

// Credentials verifies both kinds of bearer token: API keys (KeyPrefix)
// with Keys, anything else as an OIDC JWT. A nil field refuses its kind.
type Credentials struct {
	Keys *Keys
	OIDC *OIDC
}

// Verify returns the token's principal.
func (c Credentials) Verify(ctx context.Context, token string) (*Principal, error) {
	if strings.HasPrefix(token, KeyPrefix) {
		if c.Keys == nil {
			return nil, fmt.Errorf("%w: API keys are not accepted", ErrUnauthenticated)
		}
		return c.Keys.Verify(ctx, token)
	}
	if c.OIDC == nil {
		return nil, fmt.Errorf("%w: no OIDC issuer is configured", ErrUnauthenticated)
	}
	return c.OIDC.Verify(ctx, token)
}

// RateLimit is the per-principal token bucket.
type RateLimit struct {
	// PerSecond is the sustained rate; 0 means no limit.
	PerSecond float64 `yaml:"per_second" json:"per_second" env:"OUTPOST_AUTH_RATE_LIMIT"`
	// Burst is the bucket size (at least 1).
	Burst int `yaml:"burst" json:"burst" env:"OUTPOST_AUTH_RATE_BURST"`
}

// GuardOptions configure a Guard.
type GuardOptions struct {
	// Verifier authenticates bearer tokens (required).
	Verifier Verifier
	// AllowedOrigins are the browser origins (scheme://host[:port])
	// allowed to call cross-site; others are refused.
	AllowedOrigins []string
	// DefaultTenant is the tenant of a request without TenantHeader from
	// a principal holding several tenants, if it holds it.
	DefaultTenant string
	RateLimit     RateLimit
	// Audit records every mutating call (nil: log lines only).
	Audit *Auditor
	// MaxLimiters bounds the per-principal limiters kept (default 10000).
	MaxLimiters int
	Logger      *slog.Logger
	Now         func() time.Time
}

// Guard authenticates and authorizes requests: the one place where the
// rules of an API are enforced. Routes are added through a Router.
type Guard struct {
	opts GuardOptions
	log  *slog.Logger

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// NewGuard returns a guard.
func NewGuard(opts GuardOptions) *Guard {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxLimiters <= 0 {
		opts.MaxLimiters = 10000
	}
	if opts.Audit == nil {
		opts.Audit = NewAuditor(nil, opts.Logger)
	}
	return &Guard{opts: opts, log: opts.Logger, limiters: map[string]*rate.Limiter{}}
}

// Rule is the access rule of one route.
type Rule struct {
	// Pattern is the route's http.ServeMux pattern ("POST /api/v1/jobs").
	Pattern string
	// Role is the least role the principal needs in the tenant.
	Role Role
	// TenantParam, when set, names the path value that is the tenant
	// (PUT /api/v1/tenants/{tenant}); the tenant header is not read.
	TenantParam string
}

// Router registers routes on a mux, each with its Rule: a route cannot be
// added without one.
type Router struct {
	g     *Guard
	mux   *http.ServeMux
	rules []Rule
	front bool
}

// Router returns a router adding guarded routes to mux.
func (g *Guard) Router(mux *http.ServeMux) *Router { return &Router{g: g, mux: mux} }

// FrontRouter returns a router for a front end whose actions are made
// through guarded API calls (the web console): the API audits each call it
// serves, so the front audits only the calls it refuses itself, and an
// action is recorded once, under the API's action.
func (g *Guard) FrontRouter(mux *http.ServeMux) *Router {
	return &Router{g: g, mux: mux, front: true}
}

// Handle adds h at pattern for principals holding at least role in the
// request's tenant. It panics on RoleNone: every route has a rule.
func (r *Router) Handle(pattern string, role Role, h http.Handler) {
	r.add(Rule{Pattern: pattern, Role: role}, h)
}

// HandleFunc is Handle for a function.
func (r *Router) HandleFunc(pattern string, role Role, h http.HandlerFunc) {
	r.Handle(pattern, role, h)
}

// HandlePathTenant adds h at pattern for principals holding at least role
// in the tenant named by the path value param.
func (r *Router) HandlePathTenant(pattern, param string, role Role, h http.HandlerFunc) {
	r.add(Rule{Pattern: pattern, Role: role, TenantParam: param}, h)
}

func (r *Router) add(rule Rule, h http.Handler) {
	if rule.Role < RoleViewer || rule.Role > RoleAdmin {
		panic("auth: route " + rule.Pattern + " registered without a role")
	}
	r.rules = append(r.rules, rule)
	r.mux.Handle(rule.Pattern, r.g.wrap(rule, r.front, h))
}

// Rules returns the rules of the routes added, in order.
func (r *Router) Rules() []Rule { return slices.Clone(r.rules) }

func (g *Guard) wrap(rule Rule, front bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rid := newRequestID()
		w.Header().Set(RequestIDHeader, rid)
		ctx := WithRequestID(r.Context(), rid)
		if !g.sameSite(r) {
			httpjson.WriteError(w, http.StatusForbidden, "cross-site requests are refused: the origin is not allowed", "Origin")
			return
		}
		if hasBody(r) && !isJSON(r.Header.Get("Content-Type")) {
			httpjson.WriteError(w, http.StatusUnsupportedMediaType, "the request body must be application/json", "Content-Type")
			return
		}
		token, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outpost"`)
			httpjson.WriteError(w, http.StatusUnauthorized, "a credential is required: Authorization: Bearer <OIDC token or API key>", "Authorization")
			return
		}
		p, err := g.opts.Verifier.Verify(ctx, token)
		switch {
		case errors.Is(err, ErrUnauthenticated):
			g.log.Info("request not authenticated", "request_id", rid, "method", r.Method, "path", r.URL.Path, "error", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="outpost", error="invalid_token"`)
			httpjson.WriteError(w, http.StatusUnauthorized, "the credential is not valid", "Authorization")
			return
		case errors.Is(err, ErrNoTenant):
			httpjson.WriteError(w, http.StatusForbidden, "the credential grants no tenant", "")
			return
		case err != nil:
			g.log.Error("verify credential failed", "request_id", rid, "error", err)
			httpjson.WriteUnavailable(w, 2*time.Second, "credentials cannot be verified for the moment; retry later (request "+rid+")")
			return
		}
		if wait, ok := g.allow(p.Subject); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			httpjson.WriteError(w, http.StatusTooManyRequests, "rate limit exceeded", "")
			return
		}
		// A refused call that would have changed something is audited
		// too: in the tenant's audit when the principal holds it (nobody
		// writes into the audit of a tenant it does not hold), else in
		// the log only.
		deny := func(tenant string, status int, msg, field string) {
			httpjson.WriteError(w, status, msg, field)
			if !mutating(r.Method) {
				return
			}
			if RoleOf(p, tenant) == RoleNone {
				g.log.Info("audit", "principal", p.Subject, "name", p.Name, "tenant", tenant, "action", rule.Pattern,
					"target", r.URL.Path, "result", "denied", "status", status, "request_id", rid)
				return
			}
			{
				g.opts.Audit.Record(ctx, Event{
					Time: g.opts.Now().UTC(), RequestID: rid, Principal: p.Subject, Name: p.Name, Tenant: tenant,
					Action: rule.Pattern, Target: r.URL.Path, Status: status,
				})
			}
		}
		tenant, status, msg := g.tenant(r, p, rule)
		if status != 0 {
			deny(r.Header.Get(TenantHeader), status, msg, TenantHeader)
			return
		}
		if RoleOf(p, tenant) < rule.Role {
			deny(tenant, http.StatusForbidden, fmt.Sprintf("this needs the %s role in tenant %q", rule.Role, tenant), "")
			return
		}
		ctx = WithTenant(WithPrincipal(ctx, p), tenant)
		r = r.WithContext(ctx)
		if !mutating(r.Method) || front {
			h.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		g.opts.Audit.Record(ctx, Event{
			Time: g.opts.Now().UTC(), RequestID: rid, Principal: p.Subject, Name: p.Name, Tenant: tenant,
			Action: rule.Pattern, Target: r.URL.Path, Status: sw.status,
		})
	})
}

// tenant resolves the request's tenant from the credential: a principal
// with one tenant acts in it (naming it is allowed); one with several
// names one of them with TenantHeader, or acts in DefaultTenant if held.
func (g *Guard) tenant(r *http.Request, p *Principal, rule Rule) (string, int, string) {
	if rule.TenantParam != "" {
		return r.PathValue(rule.TenantParam), 0, ""
	}
	named := r.Header.Get(TenantHeader)
	held := p.TenantNames()
	platform := p.Tenants[AllTenants] > RoleNone
	switch {
	case named != "" && (platform || slices.Contains(held, named)):
		return named, 0, ""
	case named != "":
		return "", http.StatusForbidden, "the credential does not hold tenant " + strconv.Quote(named)
	case len(held) == 1 && !platform:
		return held[0], 0, ""
	case g.opts.DefaultTenant != "" && RoleOf(p, g.opts.DefaultTenant) > RoleNone:
		return g.opts.DefaultTenant, 0, ""
	default:
		return "", http.StatusBadRequest, "the credential holds several tenants: name one with " + TenantHeader
	}
}

// allow takes a token from the principal's bucket, or says how long to
// wait for one.
func (g *Guard) allow(subject string) (time.Duration, bool) {
	rl := g.opts.RateLimit
	if rl.PerSecond <= 0 {
		return 0, true
	}
	g.mu.Lock()
	lim, ok := g.limiters[subject]
	if !ok {
		if len(g.limiters) >= g.opts.MaxLimiters {
			// A full bucket is the state of a new limiter: dropping
			// them all forgives at most one burst per principal.
			clear(g.limiters)
		}
		lim = rate.NewLimiter(rate.Limit(rl.PerSecond), max(rl.Burst, 1))
		g.limiters[subject] = lim
	}
	g.mu.Unlock()
	now := g.opts.Now()
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// sameSite refuses browser requests from an origin that is neither the
// API's own nor allowed. Clients that are not browsers send no Origin.
func (g *Guard) sameSite(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin != "" && slices.Contains(g.opts.AllowedOrigins, origin) {
		return true
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s == "cross-site" || s == "same-site" {
		return false
	}
	if origin == "" {
		return true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return origin == scheme+"://"+r.Host
}

func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}

func mutating(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Flush lets streamed responses through.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the writer underneath.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
