package oidctest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"time"
)

// Login is the sign-in the issuer's authorization endpoint approves
// without asking: the client it accepts and the user it signs in.
type Login struct {
	// ClientID and RedirectURI must match the authorization and token
	// requests.
	ClientID    string
	RedirectURI string
	// Claims are the ID token's claims (sub, email, groups, ...); iss,
	// aud (the client id), nonce, iat and exp are filled.
	Claims Claims
	// Nonce, when set, replaces the nonce of the authorization request
	// in the ID token (a token minted for another login).
	Nonce string
	// Expired makes the ID token one that expired two hours ago.
	Expired bool
}

// grant is an issued authorization code, valid once.
type grant struct {
	login     Login
	challenge string
	nonce     string
	expires   time.Time
}

// AllowLogin makes the authorization endpoint approve l (replacing any
// earlier login).
func (is *Issuer) AllowLogin(l Login) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.login = &l
}

// Codes counts the codes the token endpoint has redeemed.
func (is *Issuer) Codes() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.redeemed
}

func (is *Issuer) routeLogin(mux *http.ServeMux) {
	mux.HandleFunc("GET /authorize", is.authorize)
	mux.HandleFunc("POST /token", is.token)
}

// authorize checks the request against the configured login and
// redirects back with a code, or with error=access_denied.
func (is *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	is.mu.Lock()
	l := is.login
	is.mu.Unlock()
	if l == nil || q.Get("client_id") != l.ClientID || q.Get("redirect_uri") != l.RedirectURI {
		http.Error(w, "unknown client or redirect URI", http.StatusBadRequest)
		return
	}
	back, err := url.Parse(l.RedirectURI)
	if err != nil {
		http.Error(w, "bad redirect URI", http.StatusBadRequest)
		return
	}
	out := back.Query()
	out.Set("state", q.Get("state"))
	if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		out.Set("error", "invalid_request")
	} else {
		code := make([]byte, 16)
		_, _ = rand.Read(code)
		c := hex.EncodeToString(code)
		is.mu.Lock()
		if is.codes == nil {
			is.codes = map[string]grant{}
		}
		is.codes[c] = grant{login: *l, challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), expires: time.Now().Add(time.Minute)}
		is.mu.Unlock()
		out.Set("code", c)
	}
	back.RawQuery = out.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// token redeems a code once: the client id, the redirect URI and the
// PKCE verifier must match the authorization request.
func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request")
		return
	}
	client, _, ok := r.BasicAuth()
	if !ok {
		client = r.PostForm.Get("client_id")
	}
	if u, err := url.QueryUnescape(client); err == nil {
		client = u
	}
	is.mu.Lock()
	g, found := is.codes[r.PostForm.Get("code")]
	delete(is.codes, r.PostForm.Get("code"))
	if found {
		is.redeemed++
	}
	is.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case r.PostForm.Get("grant_type") != "authorization_code":
		tokenError(w, "unsupported_grant_type")
		return
	case !found || time.Now().After(g.expires):
		tokenError(w, "invalid_grant")
		return
	case client != g.login.ClientID:
		tokenError(w, "invalid_client")
		return
	case r.PostForm.Get("redirect_uri") != g.login.RedirectURI,
		base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		tokenError(w, "invalid_grant")
		return
	}
	claims := Claims{"aud": g.login.ClientID, "nonce": g.nonce}
	for k, v := range g.login.Claims {
		claims[k] = v
	}
	if g.login.Nonce != "" {
		claims["nonce"] = g.login.Nonce
	}
	id := is.Token(claims)
	if g.login.Expired {
		id = is.Expired(claims)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, map[string]any{"access_token": "at-" + r.PostForm.Get("code"), "token_type": "Bearer", "expires_in": 3600, "id_token": id})
}

func tokenError(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(`{"error":"` + code + `"}`))
}
