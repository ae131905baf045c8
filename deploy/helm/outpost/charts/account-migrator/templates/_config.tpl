{{/*
The account-migrator's configuration file and credentials: the one place
that maps chart values to the service's configuration
(services/account-migrator/internal/config). A new setting goes into
"account-migrator.config" (or is set through .Values.config); a new
credential into "account-migrator.credentialEnv" with a credentials.<name>
entry in values.yaml and values.schema.json.
*/}}
{{- define "account-migrator.config" -}}
{{- $cfg := dict
  "listen" (printf "0.0.0.0:%v" .Values.service.port)
  "log_level" .Values.logLevel
  "broker" (dict "url" (include "outpost.brokerURL" .) "stack" (include "outpost.stack" .) "layout" (include "outpost.brokerLayout" .))
  "default_tenant" (include "outpost.tenant" .)
  "tenants" (concat (list (include "outpost.tenant" .)) .Values.tenants | uniq)
-}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.config)) -}}
{{- end -}}

{{- define "account-migrator.credentialEnv" -}}
{{- dict "brokerUrl" "OUTPOST_BROKER_URL_FILE" "kubeconfigKey" "OUTPOST_KUBECONFIG_KEY_FILE" "signingKey" "OUTPOST_SIGNING_KEY_FILE" "brokerCredentials" "OUTPOST_BROKER_CREDENTIALS" | toJson -}}
{{- end -}}
