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
{{- dict "brokerUrl" "OUTPOST_BROKER_URL_FILE" "aws" "AWS_SHARED_CREDENTIALS_FILE" "signingKey" "OUTPOST_SIGNING_KEY_FILE" "brokerCredentials" "OUTPOST_BROKER_CREDENTIALS" "consoleSessionKey" "OUTPOST_CONSOLE_SESSION_KEY_FILE" "consoleOidcClientSecret" "OUTPOST_CONSOLE_OIDC_CLIENT_SECRET_FILE" | toJson -}}
{{- end -}}

{{/*
The web console's session key: replicas behind one Service must share it,
or a session sealed by one is refused by the next. Without
credentials.consoleSessionKey the chart makes a Secret of its own, whose
key a later upgrade keeps (lookup).
*/}}
{{- define "scheduler.consoleEnabled" -}}
{{- if not (dig "console" "disabled" false .Values.config) }}true{{ end -}}
{{- end -}}

{{- define "scheduler.sessionSecretName" -}}
{{- printf "%s-console-session" (include "outpost.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The chart makes the session Secret: the console is on and no Secret is given. */}}
{{- define "scheduler.makesSessionSecret" -}}
{{- $given := .Values.credentials.consoleSessionKey.existingSecret -}}
{{- if and (include "scheduler.consoleEnabled" .) (or (not $given) (eq $given (include "scheduler.sessionSecretName" .))) }}true{{ end -}}
{{- end -}}
