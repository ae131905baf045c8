{{/*
The k8s-watcher's configuration file and credentials: the one place that
maps chart values to the service's configuration
(services/k8s-watcher/internal/config). A new setting goes into
"k8s-watcher.config" (or is set through .Values.config); a new credential
into "k8s-watcher.credentialEnv" with a credentials.<name> entry in
values.yaml and values.schema.json. The watcher id is the pod's name
(OUTPOST_WATCHER_ID in the Deployment).
*/}}
{{- define "k8s-watcher.config" -}}
{{- $cfg := dict
  "tenant" (include "outpost.tenant" .)
  "zone" .Values.zone
  "ops_addr" (printf "0.0.0.0:%v" .Values.opsPort)
  "log_level" .Values.logLevel
  "broker" (dict "url" (include "outpost.brokerURL" .) "stack" (include "outpost.stack" .) "layout" (include "outpost.brokerLayout" .))
-}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.config)) -}}
{{- end -}}

{{- define "k8s-watcher.credentialEnv" -}}
{{- dict "brokerUrl" "OUTPOST_BROKER_URL_FILE" "kubeconfigKey" "OUTPOST_KUBECONFIG_KEY_FILE" "trustedKeys" "OUTPOST_SIGNING_TRUSTED_KEYS_FILE" "brokerCredentials" "OUTPOST_BROKER_CREDENTIALS" | toJson -}}
{{- end -}}
