{{/*
The ingestion-runner's configuration file and credentials: the one place
that maps chart values to the service's configuration
(services/ingestion-runner/internal/config). A new setting goes into
"ingestion-runner.config" (or is set through .Values.config); a new
credential into "ingestion-runner.credentialEnv" with a credentials.<name>
entry in values.yaml and values.schema.json. The runner id is the pod's name
(OUTPOST_RUNNER_ID in the Deployment); the secretFiles Secrets are the
folder secrets.dir.
*/}}
{{- define "ingestion-runner.config" -}}
{{- $secrets := dict -}}
{{- if .Values.secretFiles -}}
{{- $_ := set $secrets "dir" "/var/run/secrets/outpost/job-secrets" -}}
{{- end -}}
{{- $cfg := dict
  "tenant" (include "outpost.tenant" .)
  "pool" .Values.pool
  "ops_addr" (printf "0.0.0.0:%v" .Values.opsPort)
  "log_level" .Values.logLevel
  "concurrency" .Values.concurrency
  "broker" (dict "url" (include "outpost.brokerURL" .) "stack" (include "outpost.stack" .) "layout" (include "outpost.brokerLayout" .))
  "queue" (dict "kind" .Values.queueKind)
  "command" (dict "allowlist" .Values.commandAllowlist)
  "secrets" $secrets
-}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.config)) -}}
{{- end -}}

{{- define "ingestion-runner.credentialEnv" -}}
{{- dict "brokerUrl" "OUTPOST_BROKER_URL_FILE" "aws" "AWS_SHARED_CREDENTIALS_FILE" "trustedKeys" "OUTPOST_SIGNING_TRUSTED_KEYS_FILE" "brokerCredentials" "OUTPOST_BROKER_CREDENTIALS" | toJson -}}
{{- end -}}
