package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/version"
)

// page is what every template gets.
type page struct {
	Title string
	// Nav is the section the page belongs to (highlighted in the menu).
	Nav string
	// CSRF is the token every form of the page carries.
	CSRF string
	// User, Tenant, Tenants and Role are the signed-in principal's; empty
	// on the sign-in page.
	User    string
	Tenant  string
	Tenants []string
	Role    string
	// CanOperate and CanAdmin hide what the role may not do (the guard
	// refuses it anyway).
	CanOperate bool
	CanAdmin   bool
	Accounts   bool
	Version    string
	Data       any
}

var funcs = template.FuncMap{
	"ago": func(t any) string {
		var tt time.Time
		switch v := t.(type) {
		case time.Time:
			tt = v
		case *time.Time:
			if v == nil {
				return ""
			}
			tt = *v
		default:
			return ""
		}
		if tt.IsZero() {
			return ""
		}
		d := time.Since(tt).Round(time.Second)
		switch {
		case d < 0:
			return "in " + (-d).String()
		case d < time.Minute:
			return d.String() + " ago"
		case d < 48*time.Hour:
			return d.Truncate(time.Minute).String() + " ago"
		default:
			return tt.UTC().Format("2006-01-02 15:04")
		}
	},
	"ts": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return ""
			}
			return v.UTC().Format(time.RFC3339)
		case *time.Time:
			if v == nil {
				return ""
			}
			return v.UTC().Format(time.RFC3339)
		}
		return ""
	},
	"lower": func(v any) string { return strings.ToLower(fmt.Sprint(v)) },
	"json": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err.Error()
		}
		return string(b)
	},
	"join": strings.Join,
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" || base == "partials" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// fill completes p with the signed-in principal and its tenants.
func (c *Console) fill(r *http.Request, p *page) {
	s := sessionFrom(r)
	pr := auth.PrincipalFrom(r.Context())
	tenant := auth.TenantFrom(r.Context())
	p.CSRF = s.CSRF
	p.Tenant = tenant
	role := auth.RoleOf(pr, tenant)
	p.Role = role.String()
	p.CanOperate = role >= auth.RoleOperator
	p.CanAdmin = role >= auth.RoleAdmin
	p.Accounts = c.cfg.AccountsURL != ""
	if pr != nil {
		p.User = pr.Name
		if p.User == "" {
			p.User = pr.Subject
		}
	}
	// Only the tenants the principal holds: the API's answer.
	var out struct {
		Tenants []struct {
			Name string `json:"name"`
		} `json:"tenants"`
	}
	if err := c.get(r, "/api/v1/tenants", &out); err == nil {
		for _, t := range out.Tenants {
			p.Tenants = append(p.Tenants, t.Name)
		}
	}
}

// render writes the page template name with p.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	t, ok := c.pages[name]
	if !ok {
		c.log.Error("console page missing", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if p.CSRF == "" {
		c.fill(r, p)
	}
	p.Version = version.Version
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		c.log.Error("console page failed", "page", name, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fragment writes one named template of page name (an htmx swap).
func (c *Console) fragment(w http.ResponseWriter, name, block string, data any) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, block, data); err != nil {
		c.log.Error("console fragment failed", "page", name, "block", block, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

// securityHeaders: no framing, no inline script, no sniffing.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// failure renders an API error as a page with the API's status.
func (c *Console) failure(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	msg := "The request failed."
	if e, ok := err.(*apiError); ok { //nolint:errorlint // the API's answers are never wrapped here
		status, msg = e.Status, e.Error()
	} else {
		c.log.Error("console request failed", "path", r.URL.Path, "error", err)
	}
	c.render(w, r, status, "error", &page{Title: http.StatusText(status), Data: map[string]any{"Status": status, "Message": msg}})
}
