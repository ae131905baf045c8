package console

import (
	"fmt"
	"io"
	"net/http"
	"strings"
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
