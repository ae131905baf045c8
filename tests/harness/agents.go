package harness

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"
)

// AgentRequest is the body of POST /api/v1/agents.
type AgentRequest struct {
	Role   string `json:"role"`
	Tenant string `json:"tenant"`
	Pool   string `json:"pool,omitempty"`
	Zone   string `json:"zone,omitempty"`
	Name   string `json:"name,omitempty"`
	Expiry string `json:"expiry,omitempty"`
}

// Agent is a broker credential the control plane issued to an agent.
type Agent struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Tenant    string    `json:"tenant"`
	Pool      string    `json:"pool"`
	Zone      string    `json:"zone"`
	ExpiresAt time.Time `json:"expires_at"`
	Revoked   bool      `json:"revoked"`
	// Credentials is the NATS credentials file's contents.
	Credentials string `json:"credentials"`
	// File is where the harness wrote Credentials (0600).
	File string `json:"-"`
}

// agentExpiry is the validity the harness asks for: longer than any test.
const agentExpiry = "2h"

// IssueAgent asks the stack's scheduler for an agent's broker credentials
// (POST /api/v1/agents, the stack's admin key), as a customer installing a
// runner or watcher does, and writes them to a file of the test.
func (s *Stack) IssueAgent(req AgentRequest) Agent {
	s.t.Helper()
	return IssueAgent(s.t, s.API, s.Token, req)
}

// IssueAgent asks the scheduler at api for an agent's broker credentials
// with the API key token and writes them to a file of the test (Agent.File).
func IssueAgent(t testing.TB, api, token string, req AgentRequest) Agent {
	t.Helper()
	if req.Expiry == "" {
		req.Expiry = agentExpiry
	}
	c := &testenv.Client{Base: api, Token: token}
	code, body := c.Do(t, http.MethodPost, "/api/v1/agents", req)
	require.Equal(t, http.StatusCreated, code, "issue agent credentials: %s", body)
	var a Agent
	require.NoError(t, json.Unmarshal(body, &a))
	require.NotEmpty(t, a.Credentials, "issued agent without credentials")
	a.File = filepath.Join(t.TempDir(), a.Name+".creds")
	require.NoError(t, os.WriteFile(a.File, []byte(a.Credentials), 0o600))
	return a
}

// RevokeAgent revokes an agent's credentials (DELETE /api/v1/agents/{id}):
// the scheduler pushes the revocation to the broker, which cuts the agent
// off.
func (s *Stack) RevokeAgent(id string) Agent {
	s.t.Helper()
	code, body := s.Client().Do(http.MethodDelete, "/api/v1/agents/"+id, nil)
	require.Equal(s.t, http.StatusOK, code, "revoke agent %s: %s", id, body)
	var a Agent
	require.NoError(s.t, json.Unmarshal(body, &a))
	require.True(s.t, a.Revoked, "agent %s not revoked: %s", id, body)
	return a
}
