{{/* The broker is configured with flags (templates/statefulset.yaml); it reads no configuration file and no credential. */}}
{{- define "broker.credentialEnv" -}}
{{- dict | toJson -}}
{{- end -}}
