package console

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// ErrOIDC is a failed OIDC login.
var ErrOIDC = errors.New("oidc login failed")

// oidcLogin is the authorization-code flow (with PKCE and a nonce). The
// provider is discovered on first use, so the scheduler starts while the
// issuer is away.
type oidcLogin struct {
	cfg OIDCConfig
	log *slog.Logger

	mu       sync.Mutex
	provider *oidc.Provider
	oauth    *oauth2.Config
}

func newOIDCLogin(cfg OIDCConfig, log *slog.Logger) *oidcLogin { return &oidcLogin{cfg: cfg, log: log} }

func (o *oidcLogin) client(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, o.oauth, nil
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, o.cfg.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: discovery: %w", ErrOIDC, err)
	}
	secret := ""
	if o.cfg.ClientSecretFile != "" {
		raw, err := os.ReadFile(o.cfg.ClientSecretFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: client secret: %w", ErrOIDC, err)
		}
		secret = strings.TrimSpace(string(raw))
	}
	scopes := o.cfg.Scopes
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "email", "profile", "groups"}
	}
	o.provider = p
	o.oauth = &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: secret, Endpoint: p.Endpoint(), RedirectURL: o.cfg.RedirectURL, Scopes: scopes}
	return o.provider, o.oauth, nil
}

// oidcState is kept, sealed, in the login cookie between the redirect and
// the callback.
type oidcState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"x"`
}

func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		http.NotFound(w, r)
		return
	}
	_, oc, err := c.oidc.client(r.Context())
	if err != nil {
		c.log.Warn("console oidc login unavailable", "error", err)
		c.renderLogin(w, r, http.StatusServiceUnavailable, "Single sign-on is unavailable for the moment; use an API key or retry.")
		return
	}
	st := oidcState{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Next: safeNext(r.URL.Query().Get("next"))}
	raw, err := json.Marshal(st)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	sealed, err := c.sessions.seal(session{Credential: string(raw), Expires: c.now().Add(10 * time.Minute)})
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// Lax, not Strict: the callback is a top-level navigation from the
	// issuer's site, which a Strict cookie would not accompany.
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: sealed, Path: "/login", MaxAge: 600, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: c.secure(r)})
	http.Redirect(w, r, oc.AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), http.StatusFound)
}

func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		http.NotFound(w, r)
		return
	}
	fail := func(msg string, err error) {
		c.log.Info("console oidc login refused", "reason", msg, "error", err)
		c.renderLogin(w, r, http.StatusUnauthorized, "Single sign-on failed: "+msg+".")
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil {
		fail("the login took too long or cookies are blocked", err)
		return
	}
	held, err := c.sessions.open(ck.Value, c.now())
	var st oidcState
	if err != nil || json.Unmarshal([]byte(held.Credential), &st) != nil {
		fail("the login took too long", err)
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		fail("the issuer answered "+e, nil)
		return
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		fail("the state does not match", nil)
		return
	}
	p, oc, err := c.oidc.client(r.Context())
	if err != nil {
		fail("the issuer is unavailable", err)
		return
	}
	tok, err := oc.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		fail("the code was not accepted", err)
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		fail("the issuer sent no ID token", nil)
		return
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: c.oidc.cfg.ClientID}).Verify(r.Context(), rawID)
	if err != nil || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		fail("the ID token is not valid", err)
		return
	}
	// The ID token is the session's bearer: the API's guard verifies it
	// on every call, with the roles its claims and groups give.
	c.startSession(w, r, rawID, st.Next, idt.Expiry)
}
