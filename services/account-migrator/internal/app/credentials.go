package app

import (
	"regexp"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/services/account-migrator/internal/credentials"
)

// registerCredentials serves Spinnaker's /credentials. Accounts created
// there are migrated at once when automatic migration is enabled and
// their name matches its pattern (config validated the pattern).
func (m *Migrator) registerCredentials(r *auth.Router) {
	opts := credentials.Options{MaxRequestBytes: m.cfg.MaxRequestBytes, Logger: m.log.With("component", "credentials")}
	if a := m.cfg.AutoMigration; a.Enabled {
		opts.Migrate = regexp.MustCompile(a.Pattern)
		opts.ZoneID = a.ZoneID
	}
	credentials.New(m.engine, m, opts).Register(r)
}
