package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/outposthq/outpost/libs/kv"
)

// Config is the `auth` section of a control-plane service's
// configuration.
type Config struct {
	// OIDC lists the trusted issuers; API keys are accepted with or
	// without them.
	OIDC []IssuerConfig `yaml:"oidc"`
	// Skew is the clock skew allowed on token expiry and not-before.
	Skew time.Duration `yaml:"skew" env:"OUTPOST_AUTH_SKEW"`
	// AllowedOrigins are the browser origins allowed to call the API
	// cross-site (scheme://host[:port]); none by default.
	AllowedOrigins []string `yaml:"allowed_origins" env:"OUTPOST_AUTH_ALLOWED_ORIGINS"`
	// RateLimit is each principal's token bucket.
	RateLimit RateLimit `yaml:"rate_limit"`
	// BootstrapKeyFile, when set and missing, receives a new admin API
	// key for every configured tenant (and platform admin) at start,
	// mode 0600: the key of a local installation.
	BootstrapKeyFile string `yaml:"bootstrap_key_file" env:"OUTPOST_AUTH_BOOTSTRAP_KEY_FILE"`
}

// DefaultConfig returns the defaults: no issuer, no origin, 50 requests
// a second with bursts of 100 per principal.
func DefaultConfig() Config {
	return Config{Skew: DefaultSkew, RateLimit: RateLimit{PerSecond: 50, Burst: 100}}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	for _, is := range c.OIDC {
		errs = append(errs, is.Validate())
	}
	if c.Skew < 0 || c.Skew > 5*time.Minute {
		errs = append(errs, fmt.Errorf("auth.skew: %s must be between 0 and 5m", c.Skew))
	}
	for _, o := range c.AllowedOrigins {
		u, err := url.Parse(o)
		if o == "*" || err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" {
			errs = append(errs, fmt.Errorf("auth.allowed_origins: %q is not an origin (scheme://host[:port]; no wildcard)", o))
		}
	}
	if c.RateLimit.PerSecond < 0 || c.RateLimit.Burst < 0 {
		errs = append(errs, errors.New("auth.rate_limit: must not be negative"))
	}
	return errors.Join(errs...)
}

// NewGuard returns the guard of a service configured by c, with the API
// keys of opener's KeysBucket.
func (c Config) NewGuard(opener kv.Opener, defaultTenant string, audit *Auditor, log *slog.Logger) (*Guard, *Keys, error) {
	keys := NewKeys(opener, nil)
	creds := Credentials{Keys: keys}
	if len(c.OIDC) > 0 {
		o, err := NewOIDC(c.OIDC, nil, c.Skew, nil)
		if err != nil {
			return nil, nil, err
		}
		creds.OIDC = o
	}
	g := NewGuard(GuardOptions{
		Verifier: creds, AllowedOrigins: c.AllowedOrigins, DefaultTenant: defaultTenant,
		RateLimit: c.RateLimit, Audit: audit, Logger: log,
	})
	return g, keys, nil
}

// Bootstrap writes a new admin key for tenants and every other tenant
// (AllTenants) to path (mode 0600) when path does not exist yet; an
// existing file is left as it is. The key itself is never logged.
func Bootstrap(ctx context.Context, keys *Keys, path string, tenants []string, log *slog.Logger) error {
	if _, err := os.Stat(path); err == nil {
		log.Info("bootstrap API key file exists", "path", path)
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bootstrap key file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("bootstrap key file: %w", err)
	}
	key, secret, err := keys.Create(ctx, KeyRequest{Owner: "bootstrap", Tenants: append([]string{AllTenants}, tenants...), Role: RoleAdmin})
	if err != nil {
		return fmt.Errorf("bootstrap key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("bootstrap key file: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		_ = f.Close()
		return fmt.Errorf("bootstrap key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bootstrap key file: %w", err)
	}
	log.Info("bootstrap admin API key written; use it as: curl -H \"Authorization: Bearer $(cat <path>)\"", "path", path, "key_id", key.ID)
	return nil
}
