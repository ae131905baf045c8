// Package console is the scheduler's web console, served on the API's
// port at /: server-rendered HTML (html/template) with small progressive
// enhancement (htmx, vendored in static/, and server-sent events for live
// job state and log following). Its assets and templates are embedded in
// the binary: no Node toolchain at build or run time.
//
// The console holds no data of its own and no authority of its own. A
// browser signs in with an API key or through OIDC; the credential is
// sealed into the session cookie. Every console route is registered on an
// auth.Router of the API's guard with the role it needs, after the session
// has been turned into the request's bearer, so a page or action is
// refused exactly as the API would refuse it; every read and change is
// then an in-process call of the API itself (the same validation, tenant
// isolation, masking and audit), and the accounts pages call the
// account-migrator's API with the same credential, so the browser talks
// to one origin only.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/auth"
)

// ErrInvalid is returned by Config.Validate for a bad console setting.
var ErrInvalid = errors.New("invalid console configuration")

// Config configures the console (key "console").
type Config struct {
	// Disabled turns the console off: / then answers 404 like any other
	// unknown path.
	Disabled bool `yaml:"disabled" env:"OUTPOST_CONSOLE_DISABLED"`
	// AccountsURL is the account-migrator's API, called server-side with
	// the signed-in user's credential for the accounts pages. Empty: the
	// accounts pages say so.
	AccountsURL string `yaml:"accounts_url" env:"OUTPOST_CONSOLE_ACCOUNTS_URL"`
	// SessionKeyFile holds the key (32 bytes, raw or base64) that seals
	// session cookies. Replicas behind one address share it. Empty: a key
	// is made at start, so a restart signs everybody out.
	SessionKeyFile string `yaml:"session_key_file" env:"OUTPOST_CONSOLE_SESSION_KEY_FILE"`
	// SessionTTL bounds a session (default 12h).
	SessionTTL time.Duration `yaml:"session_ttl" env:"OUTPOST_CONSOLE_SESSION_TTL"`
	// SecureCookies marks cookies Secure even when the scheduler itself
	// is reached over plain HTTP (TLS ended by a proxy). With TLS they are
	// always Secure.
	SecureCookies bool `yaml:"secure_cookies" env:"OUTPOST_CONSOLE_SECURE_COOKIES"`
	// OIDC, when its issuer is set, offers the authorization-code login.
	OIDC OIDCConfig `yaml:"oidc"`
}

// OIDCConfig is the console's OIDC client. The ID token it obtains is the
// session's credential: the API's own OIDC issuer list (auth.oidc) must
// trust the issuer with the client id as audience.
type OIDCConfig struct {
	Issuer           string   `yaml:"issuer" env:"OUTPOST_CONSOLE_OIDC_ISSUER"`
	ClientID         string   `yaml:"client_id" env:"OUTPOST_CONSOLE_OIDC_CLIENT_ID"`
	ClientSecretFile string   `yaml:"client_secret_file" env:"OUTPOST_CONSOLE_OIDC_CLIENT_SECRET_FILE"`
	RedirectURL      string   `yaml:"redirect_url" env:"OUTPOST_CONSOLE_OIDC_REDIRECT_URL"`
	Scopes           []string `yaml:"scopes" env:"OUTPOST_CONSOLE_OIDC_SCOPES"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.AccountsURL != "" {
		if u, err := url.Parse(c.AccountsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%w: console.accounts_url: %q is not an http(s) URL", ErrInvalid, c.AccountsURL))
		}
	}
	if c.SessionTTL < 0 {
		errs = append(errs, fmt.Errorf("%w: console.session_ttl: must not be negative", ErrInvalid))
	}
	if o := c.OIDC; o.Issuer != "" && (o.ClientID == "" || o.RedirectURL == "") {
		errs = append(errs, fmt.Errorf("%w: console.oidc: issuer needs client_id and redirect_url", ErrInvalid))
	}
	return errors.Join(errs...)
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options are what the console runs over.
type Options struct {
	Config Config
	// API is the scheduler's API handler: the console's reads and
	// changes are in-process calls of it.
	API http.Handler
	// Guard enforces the API's rules on the console's routes too.
	Guard  *auth.Guard
	Logger *slog.Logger
	// AccountsClient calls the account-migrator (default: a client with
	// a 15 s timeout).
	AccountsClient *http.Client
	Now            func() time.Time
}

// Console serves the web console.
type Console struct {
	cfg      Config
	api      http.Handler
	log      *slog.Logger
	now      func() time.Time
	sessions *sealer
	pages    map[string]*template.Template
	static   http.Handler
	oidc     *oidcLogin
	accounts *http.Client
	mux      *http.ServeMux
	// stopping ends the live streams on shutdown.
	stopping context.Context
	stop     context.CancelFunc
}

// New returns the console.
func New(opts Options) (*Console, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AccountsClient == nil {
		opts.AccountsClient = &http.Client{Timeout: 15 * time.Second}
	}
	cfg := opts.Config
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	key, err := sessionKey(cfg.SessionKeyFile)
	if err != nil {
		return nil, err
	}
	sealer, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("console: static assets: %w", err)
	}
	stopping, stop := context.WithCancel(context.Background())
	c := &Console{
		cfg: cfg, api: opts.API, log: opts.Logger, now: opts.Now, sessions: sealer, pages: pages,
		static: http.StripPrefix("/static/", http.FileServerFS(sub)), accounts: opts.AccountsClient,
		stopping: stopping, stop: stop,
	}
	if cfg.OIDC.Issuer != "" {
		c.oidc = newOIDCLogin(cfg.OIDC, opts.Logger)
	}
	c.mux = c.routes(opts.Guard)
	return c, nil
}

// Stop ends the live streams in progress (server shutdown).
func (c *Console) Stop() { c.stop() }

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.mux.ServeHTTP(w, r) }

// routes builds the console's mux: public routes (assets, sign-in) and,
// behind the session, the guarded pages and actions.
func (c *Console) routes(g *auth.Guard) *http.ServeMux {
	guarded := http.NewServeMux()
	// Every action goes through a guarded API call, which audits it.
	c.register(g.FrontRouter(guarded))
	outer := http.NewServeMux()
	outer.Handle("GET /static/", c.cacheAssets(c.static))
	outer.HandleFunc("GET /favicon.ico", http.NotFound)
	outer.HandleFunc("GET /login", c.loginPage)
	outer.HandleFunc("POST /login", c.loginKey)
	outer.HandleFunc("POST /logout", c.logout)
	outer.HandleFunc("GET /login/oidc", c.oidcStart)
	outer.HandleFunc("GET /login/oidc/callback", c.oidcCallback)
	outer.Handle("/", c.known(guarded, c.withSession(guarded)))
	return outer
}

// register adds the pages and actions, each with the least role the API
// asks for what it shows or does.
func (c *Console) register(r *auth.Router) {
	const v, o = auth.RoleViewer, auth.RoleOperator
	r.HandleFunc("GET /{$}", v, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/jobs", http.StatusSeeOther)
	})
	r.HandleFunc("POST /tenant", v, c.switchTenant)
	r.HandleFunc("GET /jobs", v, c.jobsPage)
	r.HandleFunc("GET /jobs/new", o, c.newJobPage)
	r.HandleFunc("POST /jobs", o, c.submitJob)
	r.HandleFunc("GET /jobs/{id}", v, c.jobPage)
	r.HandleFunc("GET /jobs/{id}/events", v, c.jobEvents)
	r.HandleFunc("POST /jobs/{id}/cancel", o, c.cancelJob)
	c.registerMore(r)
}

// known answers 404 for a path the console does not serve (the API
// listener's /metrics, say), rather than sending it to the sign-in page.
func (c *Console) known(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cacheAssets lets browsers keep the embedded assets: they change only
// with the binary.
func (c *Console) cacheAssets(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// sessionKey reads the key of path, or makes one.
func sessionKey(path string) ([]byte, error) {
	if path == "" {
		return randomBytes(32), nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: console.session_key_file: %w", ErrInvalid, err)
	}
	return parseKey(strings.TrimSpace(string(raw)))
}
