package credentials

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
)

// TypeKubernetes is the only account type (@type) served.
const TypeKubernetes = "kubernetes"

// ErrBadDefinition is returned for a definition that cannot be taken; the
// message says why.
var ErrBadDefinition = errors.New("bad account definition")

// definition is the part of Spinnaker's KubernetesAccountProperties
// .ManagedAccount that Outpost uses.
type definition struct {
	Name                    string                `json:"name"`
	KubeconfigFile          *string               `json:"kubeconfigFile"`
	KubeconfigContents      *string               `json:"kubeconfigContents"`
	ServiceAccount          *bool                 `json:"serviceAccount"`
	Context                 *string               `json:"context"`
	Namespaces              *[]string             `json:"namespaces"`
	OmitNamespaces          *[]string             `json:"omitNamespaces"`
	Kinds                   *[]string             `json:"kinds"`
	OmitKinds               *[]string             `json:"omitKinds"`
	Permissions             *accounts.Permissions `json:"permissions"`
	RequiredGroupMembership *[]string             `json:"requiredGroupMembership"`
}

// ignoredFields are the ManagedAccount fields (and the older ones
// Spinnaker tooling still sends) that Outpost accepts but does not use:
// caching, kubectl and naming settings of Clouddriver's own Kubernetes
// provider. They are reported back, never silently dropped.
var ignoredFields = map[string]bool{
	"environment": true, "accountType": true, "oAuthServiceAccount": true, "oAuthScopes": true,
	"kubectlExecutable": true, "kubectlRequestTimeoutSeconds": true, "cacheThreads": true,
	"namingStrategy": true, "debug": true, "metrics": true, "checkPermissionsOnStartup": true,
	"customResources": true, "cachingPolicies": true, "onlySpinnakerManaged": true,
	"cacheIntervalSeconds": true, "cacheAllApplicationRelationships": true,
	"rawResourcesEndpointConfig": true, "providerVersion": true, "dockerRegistries": true,
	"configureImagePullSecrets": true, "liveManifestCalls": true,
}

// readOnlyFields are what GET answers beside the definition: a GET sent
// back as a PUT is taken, without them.
var readOnlyFields = map[string]bool{"dynamicAccount": true, "ignoredFields": true, "hasKubeconfigContents": true}

// decoded is a definition and the fields of the request it ignores.
type decoded struct {
	def     definition
	ignored []string
}

// decode reads one Kubernetes account definition: a JSON object whose
// @type is kubernetes, with known fields only.
func decode(raw []byte) (decoded, error) {
	var fields map[string]json.RawMessage
	if err := httpjson.Decode(raw, &fields, ""); err != nil {
		return decoded{}, err
	}
	if fields == nil {
		return decoded{}, &httpjson.FieldError{Message: "the request body must be a JSON object: an account definition"}
	}
	typ, ok := fields["@type"]
	if !ok {
		return decoded{}, &httpjson.FieldError{Field: "@type", Message: `@type is required: "kubernetes" is the supported account type`}
	}
	var t string
	if json.Unmarshal(typ, &t) != nil || t != TypeKubernetes {
		return decoded{}, &httpjson.FieldError{Field: "@type", Message: fmt.Sprintf("@type %s is not supported: only %q accounts are managed here", strings.TrimSpace(string(typ)), TypeKubernetes)}
	}
	used := map[string]json.RawMessage{}
	var out decoded
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		switch {
		case k == "@type", readOnlyFields[k]:
		case ignoredFields[k]:
			out.ignored = append(out.ignored, k)
		case knownField(k):
			used[k] = fields[k]
		default:
			return decoded{}, &httpjson.FieldError{Field: k, Message: fmt.Sprintf("unknown field %q of a kubernetes account definition", k)}
		}
	}
	b, err := json.Marshal(used)
	if err != nil {
		return decoded{}, fmt.Errorf("%w: %w", ErrBadDefinition, err)
	}
	if err := httpjson.Decode(b, &out.def, ""); err != nil {
		if fe, ok := errors.AsType[*httpjson.FieldError](err); ok {
			if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
				fe.Message = "wrong type: " + fe.Message
			}
		}
		return decoded{}, err
	}
	if out.ignored == nil {
		out.ignored = []string{}
	}
	return out, out.def.validate()
}

// knownField reports whether k is a field of definition.
func knownField(k string) bool {
	switch k {
	case "name", "kubeconfigFile", "kubeconfigContents", "serviceAccount", "context", "namespaces",
		"omitNamespaces", "kinds", "omitKinds", "permissions", "requiredGroupMembership":
		return true
	}
	return false
}

// validate applies Spinnaker's own rules (ManagedAccount.validate) and
// refuses what Outpost cannot honour.
func (d definition) validate() error {
	switch {
	case d.Name == "":
		return &httpjson.FieldError{Field: "name", Message: "name is required"}
	case nonEmpty(d.OmitNamespaces) && nonEmpty(d.Namespaces):
		return &httpjson.FieldError{Field: "omitNamespaces", Message: "at most one of namespaces and omitNamespaces can be specified"}
	case nonEmpty(d.OmitNamespaces):
		// Ignoring it would stream the namespaces it names.
		return &httpjson.FieldError{Field: "omitNamespaces", Message: "omitNamespaces is not supported: list the namespaces to watch in namespaces"}
	case nonEmpty(d.OmitKinds) && nonEmpty(d.Kinds):
		return &httpjson.FieldError{Field: "omitKinds", Message: "at most one of kinds and omitKinds can be specified"}
	}
	return nil
}

func nonEmpty(s *[]string) bool { return s != nil && len(*s) > 0 }

// permissions are the definition's permissions, or, without any,
// requiredGroupMembership for both (Spinnaker's older setting).
func (d definition) permissions() *accounts.Permissions {
	if d.Permissions != nil && (len(d.Permissions.Read) > 0 || len(d.Permissions.Write) > 0) {
		return d.Permissions
	}
	if nonEmpty(d.RequiredGroupMembership) {
		g := *d.RequiredGroupMembership
		return &accounts.Permissions{Read: slices.Clone(g), Write: slices.Clone(g)}
	}
	return &accounts.Permissions{}
}

// input is the Dynamic Accounts entry of a POST (create) or a PUT
// (replace: a field left out is cleared, except the credentials: without
// kubeconfigFile, kubeconfigContents or serviceAccount the stored ones
// stay, since GET never returns an inline kubeconfig to send back).
func (d decoded) input(replace bool) accounts.Input {
	in := accounts.Input{
		Name: d.def.Name, KubeconfigFile: d.def.KubeconfigFile, KubeconfigContents: d.def.KubeconfigContents,
		ServiceAccount: d.def.ServiceAccount, Context: d.def.Context, Namespaces: d.def.Namespaces,
		Kinds: d.def.Kinds, OmitKinds: d.def.OmitKinds, Permissions: d.def.permissions(),
		IgnoredFields: &d.ignored,
	}
	if !replace {
		return in
	}
	empty := func(p **[]string) {
		if *p == nil {
			*p = &[]string{}
		}
	}
	empty(&in.Namespaces)
	empty(&in.Kinds)
	empty(&in.OmitKinds)
	if in.Context == nil {
		in.Context = new(string)
	}
	sa := in.ServiceAccount != nil && *in.ServiceAccount
	if in.ServiceAccount == nil {
		in.ServiceAccount = new(bool)
	}
	if sa && in.KubeconfigFile == nil && in.KubeconfigContents == nil {
		in.KubeconfigFile, in.KubeconfigContents = new(string), new(string)
	}
	return in
}
