{{/*
The secretFiles Secrets, projected into one folder: each key a file named
after a ${NAME} the runner resolves for jobs (secrets.dir).
*/}}
{{- define "ingestion-runner.secretMounts" -}}
{{- if .Values.secretFiles -}}
- name: job-secrets
  mountPath: /var/run/secrets/outpost/job-secrets
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "ingestion-runner.secretVolumes" -}}
{{- if .Values.secretFiles -}}
- name: job-secrets
  projected:
    defaultMode: 0440
    sources:
      {{- range .Values.secretFiles }}
      - secret:
          name: {{ .existingSecret }}
      {{- end }}
{{- end -}}
{{- end -}}
