package console

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/auth"
)

// ErrNoSession is returned for a missing, tampered with or expired
// session cookie.
var ErrNoSession = errors.New("no valid session")

const (
	sessionCookie = "outpost_session"
	// loginCookie carries the sign-in form's CSRF token (and the OIDC
	// state) before a session exists.
	loginCookie = "outpost_login"
	csrfField   = "csrf"
	csrfHeader  = "X-CSRF-Token"
)

// session is what the sealed cookie holds. The credential never reaches
// a page: it is the bearer of the console's own calls.
type session struct {
	Credential string    `json:"c"`
	Tenant     string    `json:"t,omitempty"`
	CSRF       string    `json:"x"`
	Name       string    `json:"n,omitempty"`
	Expires    time.Time `json:"e"`
}

// sealer seals sessions with AES-256-GCM: a browser can neither read the
// credential nor change the tenant or the CSRF token.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: session key: %w", ErrInvalid, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: session key: %w", ErrInvalid, err)
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(v session) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("seal session: %w", err)
	}
	nonce := randomBytes(s.aead.NonceSize())
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(sessionCookie))), nil
}

func (s *sealer) open(raw string, now time.Time) (session, error) {
	var v session
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) < s.aead.NonceSize() {
		return v, ErrNoSession
	}
	plain, err := s.aead.Open(nil, b[:s.aead.NonceSize()], b[s.aead.NonceSize():], []byte(sessionCookie))
	if err != nil {
		return v, ErrNoSession
	}
	if err := json.Unmarshal(plain, &v); err != nil || v.Credential == "" || !now.Before(v.Expires) {
		return v, ErrNoSession
	}
	return v, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randomToken() string { return base64.RawURLEncoding.EncodeToString(randomBytes(24)) }

// parseKey takes a 32-byte key as base64 (standard or URL) or raw bytes.
func parseKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	if len(s) == 32 {
		return []byte(s), nil
	}
	return nil, fmt.Errorf("%w: console.session_key_file: want 32 bytes, raw or base64", ErrInvalid)
}

func (c *Console) secure(r *http.Request) bool { return r.TLS != nil || c.cfg.SecureCookies }

// setSession writes the session cookie: HttpOnly (no script reads it),
// SameSite=Strict (no other site's page sends it), Secure under TLS.
func (c *Console) setSession(w http.ResponseWriter, r *http.Request, s session) error {
	v, err := c.sessions.seal(s)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: v, Path: "/", Expires: s.Expires, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.secure(r),
	})
	return nil
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	// A cookie is removed only at the path it was set with.
	path := "/"
	if name == loginCookie {
		path = "/login"
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.secure(r)})
}

// readSession returns the request's session.
func (c *Console) readSession(r *http.Request) (session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, ErrNoSession
	}
	return c.sessions.open(ck.Value, c.now())
}

type sessionKeyT struct{}

func contextWithSession(ctx context.Context, s session) context.Context {
	return context.WithValue(ctx, sessionKeyT{}, s)
}

func sessionFrom(r *http.Request) session {
	s, _ := r.Context().Value(sessionKeyT{}).(session)
	return s
}

// withSession turns the session into the request's credential for the
// guarded routes: the bearer and tenant header the API reads. A request
// without a session is sent to the sign-in page; a POST must carry the
// session's CSRF token. The form is read here, and the body dropped, so
// that the guard (which takes only JSON bodies) sees a request without
// one; the handlers read r.PostForm.
func (c *Console) withSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.readSession(r)
		if err != nil {
			navigate := r.Header.Get("Sec-Fetch-Mode") == "" || r.Header.Get("Sec-Fetch-Mode") == "navigate"
			if r.Method == http.MethodGet && navigate && r.Header.Get("HX-Request") == "" {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if err := r.ParseForm(); err != nil {
				http.Error(w, "the form could not be read", http.StatusBadRequest)
				return
			}
			token := r.Header.Get(csrfHeader)
			if token == "" {
				token = r.PostForm.Get(csrfField)
			}
			if subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRF)) != 1 {
				http.Error(w, "the form is stale or forged (CSRF token mismatch): reload the page", http.StatusForbidden)
				return
			}
			r.Body, r.ContentLength = http.NoBody, 0
			r.Header.Del("Content-Type")
			if r.URL.Path == "/tenant" {
				// The guard checks that the credential holds the tenant
				// asked for, as it checks the API's tenant header.
				s.Tenant = r.PostForm.Get("tenant")
			}
		}
		r.Header.Set("Authorization", "Bearer "+s.Credential)
		r.Header.Del(auth.TenantHeader)
		if s.Tenant != "" {
			r.Header.Set(auth.TenantHeader, s.Tenant)
		}
		r = r.WithContext(contextWithSession(r.Context(), s))
		next.ServeHTTP(w, r)
	})
}

// safeNext keeps a post-sign-in redirect on this site.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/jobs"
	}
	return next
}

// loginPage shows the sign-in form: an API key, and the OIDC button when
// it is configured.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.renderLogin(w, r, http.StatusOK, "")
}

func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	// The token of an earlier sign-in page is kept: another tab, or a
	// request the browser makes on its own, does not spoil the form.
	token := randomToken()
	if ck, err := r.Cookie(loginCookie); err == nil && len(ck.Value) == len(token) {
		token = ck.Value
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: token, Path: "/login", MaxAge: 600, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.secure(r)})
	c.render(w, r, status, "login", &page{Title: "Sign in", CSRF: token, Data: map[string]any{
		"Next": safeNext(r.FormValue("next")), "Error": msg, "OIDC": c.oidc != nil,
	}})
}

// loginKey signs in with an API key: it is checked by asking the API for
// the tenants it holds.
func (c *Console) loginKey(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read", http.StatusBadRequest)
		return
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostForm.Get(csrfField))) != 1 {
		c.renderLogin(w, r, http.StatusForbidden, "The sign-in form expired: try again.")
		return
	}
	key := strings.TrimSpace(r.PostForm.Get("api_key"))
	if key == "" {
		c.renderLogin(w, r, http.StatusBadRequest, "Enter an API key.")
		return
	}
	c.startSession(w, r, key, safeNext(r.PostForm.Get("next")), time.Time{})
}

// startSession checks credential against the API and, when it holds a
// tenant, signs the browser in. A credential that expires (an ID token)
// ends the session with it: the API would refuse it from then on.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, credential, next string, expires time.Time) {
	var out struct {
		Tenants []struct {
			Name string `json:"name"`
		} `json:"tenants"`
	}
	status, body, err := c.call(r.Context(), credential, "", http.MethodGet, "/api/v1/tenants", nil)
	if err == nil && status == http.StatusOK {
		err = json.Unmarshal(body, &out)
	}
	switch {
	case err != nil:
		c.log.Warn("console sign-in check failed", "error", err)
		c.renderLogin(w, r, http.StatusServiceUnavailable, "The scheduler could not check the credential; retry in a moment.")
		return
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		c.renderLogin(w, r, http.StatusUnauthorized, "This credential is not valid, or it holds no tenant.")
		return
	case status != http.StatusOK:
		c.renderLogin(w, r, http.StatusServiceUnavailable, "The scheduler is not ready; retry in a moment.")
		return
	case len(out.Tenants) == 0:
		c.renderLogin(w, r, http.StatusForbidden, "This credential holds no tenant.")
		return
	}
	// No tenant yet: the guard picks the credential's own, or the
	// default tenant, as it does for an API call without the header.
	s := session{Credential: credential, CSRF: randomToken(), Expires: c.now().Add(c.cfg.SessionTTL)}
	if !expires.IsZero() && expires.Before(s.Expires) {
		s.Expires = expires
	}
	if err := c.setSession(w, r, s); err != nil {
		c.log.Error("console session not written", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	c.clearCookie(w, r, loginCookie)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session (a POST with the session's CSRF token, so that
// no other page can sign the user out).
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	s, err := c.readSession(r)
	if err == nil && subtle.ConstantTimeCompare([]byte(r.PostFormValue(csrfField)), []byte(s.CSRF)) != 1 {
		http.Error(w, "the form is stale or forged (CSRF token mismatch): reload the page", http.StatusForbidden)
		return
	}
	c.clearCookie(w, r, sessionCookie)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// switchTenant moves the session to another tenant. The guard has already
// checked that the credential holds it: the tenant header of this request
// is the one asked for (withSession).
func (c *Console) switchTenant(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r)
	s.Tenant = auth.TenantFrom(r.Context())
	if err := c.setSession(w, r, s); err != nil {
		c.log.Error("console session not written", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/jobs", http.StatusSeeOther)
}
