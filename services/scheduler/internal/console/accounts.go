package console

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// accountsGet calls the account-migrator's API with the session's own
// credential and tenant: the browser talks to the scheduler only, and the
// migrator's guard applies its roles to the user as to any client.
func (c *Console) accountsGet(r *http.Request, path string, out any) error {
	return c.accountsDo(r, http.MethodGet, path, nil, out)
}

func (c *Console) accountsDo(r *http.Request, method, path string, body, out any) error {
	s := sessionFrom(r)
	req, err := apiRequest(r.Context(), s.Credential, s.Tenant, method, strings.TrimRight(c.cfg.AccountsURL, "/")+path, body)
	if err != nil {
		return err
	}
	req.RemoteAddr = ""
	resp, err := c.accounts.Do(req)
	if err != nil {
		c.log.Warn("console accounts call failed", "path", path, "error", err)
		return &apiError{Status: http.StatusBadGateway, Message: "the accounts API did not answer"}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return fmt.Errorf("read accounts answer: %w", err)
	}
	return decodeAnswer(resp.StatusCode, raw, out)
}

type account struct {
	Name         string            `json:"name"`
	State        string            `json:"state"`
	ZoneID       string            `json:"zoneId"`
	Agent        string            `json:"agent"`
	FailedCount  int               `json:"failedCount"`
	ErrorMessage string            `json:"errorMessage"`
	Cluster      map[string]any    `json:"cluster"`
	Kinds        []accountKind     `json:"kinds"`
	Generation   uint64            `json:"generation"`
	Source       string            `json:"source"`
	OfferErrors  map[string]string `json:"offerErrors"`
	CreatedAt    time.Time         `json:"createdAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
	StateSince   time.Time         `json:"stateSince"`
	LastSeen     *time.Time        `json:"lastSeen"`
	// History is the account's latest transitions, oldest first as the
	// API sends them (none from a migrator that keeps no history).
	History []transition `json:"history"`
}

type transition struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	Error  string    `json:"error"`
}

type accountKind struct {
	Kind       string `json:"kind"`
	Group      string `json:"group"`
	Version    string `json:"version"`
	Resource   string `json:"resource"`
	Namespaced bool   `json:"namespaced"`
	Token      string `json:"token"`
}

type object struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Namespace  string          `json:"namespace"`
	Name       string          `json:"name"`
	Object     json.RawMessage `json:"object"`
	// Token is the inventory token of the object's kind, for its link: a
	// Kind alone may name kinds of several groups (Event is in "" and in
	// events.k8s.io), and the API resolves a bare Kind to the first.
	Token string `json:"-"`
}

// kindToken is the token of the account's kind of o (its group from its
// apiVersion), or o's Kind when the account does not list it.
func kindToken(kinds []accountKind, o object) string {
	group, _, found := strings.Cut(o.APIVersion, "/")
	if !found {
		group = ""
	}
	for _, k := range kinds {
		if k.Kind == o.Kind && k.Group == group {
			return k.Token
		}
	}
	return o.Kind
}

// notConfigured answers the accounts pages when console.accounts_url is
// unset.
func (c *Console) notConfigured(w http.ResponseWriter, r *http.Request) bool {
	if c.cfg.AccountsURL != "" {
		return false
	}
	c.render(w, r, http.StatusServiceUnavailable, "error", &page{Title: "Accounts", Nav: "accounts", Data: map[string]any{
		"Status": http.StatusServiceUnavailable, "Message": "The accounts API is not configured (console.accounts_url).",
	}})
	return true
}

// accountsPage lists the Dynamic Accounts with state, zone, failed count
// and error.
func (c *Console) accountsPage(w http.ResponseWriter, r *http.Request) {
	if c.notConfigured(w, r) {
		return
	}
	var list []account
	d := map[string]any{}
	path := "/api/v1/accounts"
	if st := strings.TrimSpace(r.URL.Query().Get("state")); st != "" {
		path += "?" + url.Values{"state": {st}}.Encode()
		d["State"] = st
	}
	if err := c.accountsGet(r, path, &list); err != nil {
		d["Error"] = err.Error()
	}
	d["Accounts"] = list
	c.render(w, r, http.StatusOK, "accounts", &page{Title: "Accounts", Nav: "accounts", Data: d})
}

// accountPage shows one account: its lifecycle (state since, failures,
// offers, the history of its transitions), cluster info and the kinds of
// its inventory.
func (c *Console) accountPage(w http.ResponseWriter, r *http.Request) {
	if c.notConfigured(w, r) {
		return
	}
	var a account
	if err := c.accountsGet(r, "/api/v1/accounts/"+url.PathEscape(r.PathValue("name")), &a); err != nil {
		c.failure(w, r, err)
		return
	}
	// The page shows the latest transition first.
	slices.Reverse(a.History)
	c.render(w, r, http.StatusOK, "account", &page{Title: "Account " + a.Name, Nav: "accounts", Data: &a})
}

// objectsPage browses an account's inventory: by kind and namespace.
func (c *Console) objectsPage(w http.ResponseWriter, r *http.Request) {
	if c.notConfigured(w, r) {
		return
	}
	name := r.PathValue("name")
	var a account
	if err := c.accountsGet(r, "/api/v1/accounts/"+url.PathEscape(name), &a); err != nil {
		c.failure(w, r, err)
		return
	}
	q := url.Values{}
	kind, ns := r.URL.Query().Get("kind"), r.URL.Query().Get("namespace")
	if kind != "" {
		q.Set("kind", kind)
	}
	if ns != "" {
		q.Set("namespace", ns)
	}
	var out struct {
		Items []object `json:"items"`
	}
	d := map[string]any{"Account": &a, "Kind": kind, "Namespace": ns}
	if err := c.accountsGet(r, "/api/v1/accounts/"+url.PathEscape(name)+"/objects?"+q.Encode(), &out); err != nil {
		d["Error"] = err.Error()
	}
	namespaces := map[string]bool{}
	for i, o := range out.Items {
		out.Items[i].Token = kindToken(a.Kinds, o)
		if o.Namespace != "" {
			namespaces[o.Namespace] = true
		}
	}
	d["Items"], d["Namespaces"] = out.Items, slices.Sorted(maps.Keys(namespaces))
	c.render(w, r, http.StatusOK, "objects", &page{Title: "Inventory of " + a.Name, Nav: "accounts", Data: d})
}

// objectPage shows one object. A Secret's values never reach the page:
// the watcher scrubs them before they leave the cluster, and the console
// drops data and stringData again whatever the store holds.
func (c *Console) objectPage(w http.ResponseWriter, r *http.Request) {
	if c.notConfigured(w, r) {
		return
	}
	name := r.PathValue("name")
	path := "/api/v1/accounts/" + url.PathEscape(name) + "/objects/" + url.PathEscape(r.PathValue("kind")) + "/" +
		url.PathEscape(r.PathValue("namespace")) + "/" + url.PathEscape(r.PathValue("object"))
	var o object
	if err := c.accountsGet(r, path, &o); err != nil {
		c.failure(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "object", &page{Title: o.Kind + " " + o.Name, Nav: "accounts", Data: map[string]any{
		"Account": name, "Object": o, "Body": scrubbed(o),
	}})
}

// scrubbed renders o's object as indented JSON, without a Secret's values.
func scrubbed(o object) string {
	var m map[string]any
	if len(o.Object) == 0 || json.Unmarshal(o.Object, &m) != nil {
		return ""
	}
	if strings.EqualFold(o.Kind, "Secret") {
		for _, k := range []string{"data", "stringData"} {
			if v, ok := m[k].(map[string]any); ok {
				for key := range v {
					v[key] = "(hidden)"
				}
			}
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return ""
	}
	return string(b)
}

// setAccountState migrates (ACTIVE), retries (a FAILED account, ACTIVE
// again) or deactivates (INACTIVE) an account through the accounts API,
// which asks an admin for it.
func (c *Console) setAccountState(w http.ResponseWriter, r *http.Request) {
	if c.notConfigured(w, r) {
		return
	}
	name := r.PathValue("name")
	state := r.PostForm.Get("state")
	if state != "ACTIVE" && state != "INACTIVE" {
		http.Error(w, "state must be ACTIVE or INACTIVE", http.StatusBadRequest)
		return
	}
	if err := c.accountsDo(r, http.MethodPatch, "/api/v1/accounts", []map[string]string{{"name": name, "state": state}}, nil); err != nil {
		c.failure(w, r, err)
		return
	}
	http.Redirect(w, r, "/accounts/"+url.PathEscape(name), http.StatusSeeOther)
}
