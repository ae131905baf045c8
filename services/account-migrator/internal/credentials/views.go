package credentials

import (
	"time"

	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
)

// dynamicAccount is the Dynamic Accounts state shown beside Spinnaker's
// fields.
type dynamicAccount struct {
	State        accounts.State `json:"state"`
	ZoneID       string         `json:"zoneId,omitempty"`
	FailedCount  int            `json:"failedCount"`
	ErrorMessage string         `json:"errorMessage,omitempty"`
	Source       string         `json:"source,omitempty"`
	StateSince   time.Time      `json:"stateSince"`
}

func dynamicOf(rec *accounts.Record) dynamicAccount {
	return dynamicAccount{
		State: rec.State, ZoneID: rec.ZoneID, FailedCount: rec.FailedCount,
		ErrorMessage: rec.ErrorMessage, Source: rec.Source, StateSince: rec.StateSince,
	}
}

// permissionsOf is Spinnaker's permissions map, both keys always present.
func permissionsOf(rec *accounts.Record) map[string][]string {
	out := map[string][]string{"READ": {}, "WRITE": {}}
	if p := rec.Permissions; p != nil {
		if p.Read != nil {
			out["READ"] = p.Read
		}
		if p.Write != nil {
			out["WRITE"] = p.Write
		}
	}
	return out
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// summaryOf is an account as Clouddriver's GET /credentials lists it.
func summaryOf(rec *accounts.Record) map[string]any {
	return map[string]any{
		"name":                        rec.Name,
		"type":                        TypeKubernetes,
		"cloudProvider":               TypeKubernetes,
		"accountType":                 rec.Name,
		"environment":                 rec.Name,
		"providerVersion":             "v2",
		"permissions":                 permissionsOf(rec),
		"requiredGroupMembership":     []string{},
		"challengeDestructiveActions": false,
		"primaryAccount":              false,
		"dynamicAccount":              dynamicOf(rec),
	}
}

// detailOf is GET /credentials/{accountName}: the summary with what is
// watched (never the inline kubeconfig).
func detailOf(rec *accounts.Record) map[string]any {
	out := summaryOf(rec)
	out["namespaces"] = orEmpty(rec.Spec.Namespaces)
	out["kinds"] = orEmpty(rec.Spec.Kinds)
	out["omitKinds"] = orEmpty(rec.Spec.OmitKinds)
	out["serviceAccount"] = rec.Spec.UsesServiceAccount()
	out["hasKubeconfigContents"] = len(rec.Spec.KubeconfigSealed) > 0
	if rec.Spec.KubeconfigFile != "" {
		out["kubeconfigFile"] = rec.Spec.KubeconfigFile
	}
	if rec.Spec.Context != "" {
		out["context"] = rec.Spec.Context
	}
	if c := rec.Cluster; c != nil {
		out["cluster"] = c
	}
	return out
}

// definitionView is the account definition as stored (GET
// /credentials/type/kubernetes, and the answer to POST and PUT), with
// the fields the last request sent that Outpost ignores.
type definitionView struct {
	Type                  string              `json:"@type"`
	Name                  string              `json:"name"`
	KubeconfigFile        string              `json:"kubeconfigFile,omitempty"`
	HasKubeconfigContents bool                `json:"hasKubeconfigContents"`
	ServiceAccount        bool                `json:"serviceAccount"`
	Context               string              `json:"context,omitempty"`
	Namespaces            []string            `json:"namespaces"`
	Kinds                 []string            `json:"kinds"`
	OmitKinds             []string            `json:"omitKinds"`
	Permissions           map[string][]string `json:"permissions"`
	IgnoredFields         []string            `json:"ignoredFields"`
	DynamicAccount        dynamicAccount      `json:"dynamicAccount"`
}

func definitionOf(rec *accounts.Record) definitionView {
	return definitionView{
		Type: TypeKubernetes, Name: rec.Name, KubeconfigFile: rec.Spec.KubeconfigFile,
		HasKubeconfigContents: len(rec.Spec.KubeconfigSealed) > 0,
		// As stored: true only when asked for (an account without
		// credentials is also watched with the watcher's identity).
		ServiceAccount: rec.Spec.ServiceAccount, Context: rec.Spec.Context,
		Namespaces: orEmpty(rec.Spec.Namespaces), Kinds: orEmpty(rec.Spec.Kinds), OmitKinds: orEmpty(rec.Spec.OmitKinds),
		Permissions: permissionsOf(rec), IgnoredFields: orEmpty(rec.IgnoredFields), DynamicAccount: dynamicOf(rec),
	}
}
