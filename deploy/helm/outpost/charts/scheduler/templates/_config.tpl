{{/*
The scheduler's configuration file and credentials: the one place that maps
chart values to the service's configuration (services/scheduler/internal/config).
A new setting goes into "scheduler.config" (or is set through .Values.config);
a new credential into "scheduler.credentialEnv" with a credentials.<name>
entry in values.yaml and values.schema.json.
*/}}
{{- define "scheduler.config" -}}
{{- $cfg := dict
  "listen" (printf "0.0.0.0:%v" .Values.service.port)
  "log_level" .Values.logLevel
  "broker" (dict "url" (include "outpost.brokerURL" .) "stack" (include "outpost.stack" .) "layout" (include "outpost.brokerLayout" .) "replicas" .Values.brokerReplicas)
  "queue" (dict "kind" .Values.queueKind)
  "tenants" (dict "default" (include "outpost.tenant" .) "names" (concat (list (include "outpost.tenant" .)) .Values.tenants | uniq))
-}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.config)) -}}
{{- end -}}

{{/* Credential name (values credentials.<name>) to the variable that gets its file's path. */}}
{{- define "scheduler.credentialEnv" -}}
{{- dict "brokerUrl" "OUTPOST_BROKER_URL_FILE" "aws" "AWS_SHARED_CREDENTIALS_FILE" "signingKey" "OUTPOST_SIGNING_KEY_FILE" "brokerCredentials" "OUTPOST_BROKER_CREDENTIALS" | toJson -}}
{{- end -}}
