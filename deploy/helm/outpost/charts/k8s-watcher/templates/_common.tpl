{{/*
Shared helpers of the Outpost charts. Every subchart carries this same file
(tests/ship checks that the copies are identical): named templates are
global in Helm, so identical copies never shadow each other differently.
*/}}

{{- define "outpost.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "outpost.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "outpost.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "outpost.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: outpost
{{- end -}}

{{- define "outpost.global" -}}
{{- toJson (.Values.global | default dict) -}}
{{- end -}}

{{/* The stack (subject prefix) of the installation: two releases on one broker need two stacks. */}}
{{- define "outpost.stack" -}}
{{- $g := include "outpost.global" . | fromJson -}}
{{- $g.stack | default "outpost" -}}
{{- end -}}

{{- define "outpost.tenant" -}}
{{- $g := include "outpost.global" . | fromJson -}}
{{- $g.tenant | default "default" -}}
{{- end -}}

{{/* The broker URL: the chart's own value, else global.broker.url, else the release's evaluation broker. */}}
{{- define "outpost.brokerURL" -}}
{{- $g := include "outpost.global" . | fromJson -}}
{{- $gb := $g.broker | default dict -}}
{{- .Values.brokerUrl | default $gb.url | default (printf "nats://%s-broker:4222" .Release.Name) -}}
{{- end -}}

{{/* The stream layout of the stack (global.broker.layout): the control plane's and every agent's must be the same. */}}
{{- define "outpost.brokerLayout" -}}
{{- $g := include "outpost.global" . | fromJson -}}
{{- $gb := $g.broker | default dict -}}
{{- $gb.layout | default "per-tenant" -}}
{{- end -}}

{{- define "outpost.image" -}}
{{- $g := include "outpost.global" . | fromJson -}}
{{- $gi := $g.image | default dict -}}
{{- $registry := .Values.image.registry | default $gi.registry -}}
{{- $tag := .Values.image.tag | default $gi.tag | default .Chart.AppVersion -}}
{{- if $registry }}{{ $registry }}/{{ end }}{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}

{{- define "outpost.pullPolicy" -}}
{{- $g := include "outpost.global" . | fromJson -}}
{{- $gi := $g.image | default dict -}}
{{- .Values.image.pullPolicy | default $gi.pullPolicy | default "IfNotPresent" -}}
{{- end -}}

{{- define "outpost.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "outpost.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/*
Credentials: each entry of .Values.credentials with an existingSecret is
mounted read-only at /var/run/secrets/outpost/<credential>/<key>, and the
environment variable the chart's credentialEnv (templates/_config.tpl)
names for it receives that path (OUTPOST_X_FILE variables are read by
libs/config). Values never appear in the pod spec.
*/}}
{{- define "outpost.credentialEnv" -}}
{{- $root := .root -}}
{{- range $name, $env := .env }}
{{- $c := index $root.Values.credentials $name | default dict }}
{{- if $c.existingSecret }}
- name: {{ $env }}
  value: {{ printf "/var/run/secrets/outpost/%s/%s" $name $c.key | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "outpost.credentialMounts" -}}
{{- range $name, $c := .Values.credentials }}
{{- if $c.existingSecret }}
- name: {{ printf "cred-%s" ($name | kebabcase) }}
  mountPath: {{ printf "/var/run/secrets/outpost/%s" $name }}
  readOnly: true
{{- end }}
{{- end }}
{{- range .Values.extraSecretMounts }}
- name: {{ printf "extra-%s" .name }}
  mountPath: {{ .mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "outpost.credentialVolumes" -}}
{{- range $name, $c := .Values.credentials }}
{{- if $c.existingSecret }}
- name: {{ printf "cred-%s" ($name | kebabcase) }}
  secret:
    secretName: {{ $c.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $c.key }}
        path: {{ $c.key }}
{{- end }}
{{- end }}
{{- range .Values.extraSecretMounts }}
- name: {{ printf "extra-%s" .name }}
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "outpost.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "outpost.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Tracing (libs/telemetry): the chart's otel values over global.otel, as JSON
(endpoint empty: tracing off). A chart without an otel section (the broker)
never traces.
*/}}
{{- define "outpost.otel" -}}
{{- $g := include "outpost.global" . | fromJson -}}
{{- $go := $g.otel | default dict -}}
{{- $o := dict -}}
{{- if hasKey .Values "otel" }}{{ $o = .Values.otel | default dict }}{{ else }}{{ $go = dict }}{{ end -}}
{{- $gh := $go.headers | default dict -}}
{{- $h := $o.headers | default dict -}}
{{- $headers := dict -}}
{{- if $h.existingSecret }}{{ $headers = $h }}{{ else if $gh.existingSecret }}{{ $headers = dict "existingSecret" $gh.existingSecret "key" ($gh.key | default "headers") }}{{ end -}}
{{- $endpoint := $o.exporterEndpoint | default $go.exporterEndpoint | default "" -}}
{{- $port := "" -}}
{{- if $endpoint -}}
{{- $u := urlParse $endpoint -}}
{{- $port = regexFind ":[0-9]+$" $u.host | trimPrefix ":" -}}
{{- if not $port }}{{ $port = ternary "443" "80" (eq $u.scheme "https") }}{{ end -}}
{{- end -}}
{{- /* A ratio of 0 is a value, not "unset": compared as text. */ -}}
{{- $samplerArg := toString $o.samplerArg -}}
{{- if has $samplerArg (list "" "<nil>") }}{{ $samplerArg = toString $go.samplerArg }}{{ end -}}
{{- if eq $samplerArg "<nil>" }}{{ $samplerArg = "" }}{{ end -}}
{{- toJson (dict
  "endpoint" $endpoint
  "port" $port
  "protocol" ($o.protocol | default $go.protocol | default "")
  "prefix" ($o.serviceNamePrefix | default $go.serviceNamePrefix | default "")
  "attributes" (merge (deepCopy ($o.resourceAttributes | default dict)) ($go.resourceAttributes | default dict))
  "sampler" ($o.sampler | default $go.sampler | default "")
  "samplerArg" $samplerArg
  "headers" $headers) -}}
{{- end -}}

{{/*
The standard OTEL_* variables of the service, none while tracing is off.
The resource attributes name the pod and its namespace (downward API).
*/}}
{{- define "outpost.otelEnv" -}}
{{- $t := include "outpost.otel" . | fromJson -}}
{{- if $t.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.endpoint | quote }}
{{- with $t.protocol }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ . | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "%s%s" $t.prefix .Chart.Name | quote }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.namespace}
{{- $attrs := list }}
{{- range $k, $v := $t.attributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k $v) }}
{{- end }}
{{- $attrs = concat $attrs (list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE_NAME)") }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- with $t.sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- with $t.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- with $t.headers.existingSecret }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef: {name: {{ . | quote }}, key: {{ $t.headers.key | quote }}}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The Deployment of a service. Parameters: root (the chart's context), port
(the HTTP port serving /healthz, /readyz and /metrics), portName, env
(extra container env, YAML), mounts and volumes (extra, YAML).
*/}}
{{- define "outpost.deployment" -}}
{{- $root := .root -}}
{{- with $root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "outpost.fullname" . }}
  labels:
    {{- include "outpost.labels" . | nindent 4 }}
spec:
  replicas: {{ .Values.replicas }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "outpost.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "outpost.selectorLabels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (printf "%s.config" .Chart.Name) . | sha256sum }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "outpost.serviceAccountName" . }}
      automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
      securityContext:
        {{- include "outpost.podSecurityContext" . | nindent 8 }}
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .Chart.Name }}
          image: {{ include "outpost.image" . | quote }}
          imagePullPolicy: {{ include "outpost.pullPolicy" . }}
          args: ["-config", "/etc/outpost/config.yaml"]
          ports:
            - name: {{ $.portName }}
              containerPort: {{ $.port }}
              protocol: TCP
          env:
            {{- include "outpost.credentialEnv" (dict "root" . "env" (include (printf "%s.credentialEnv" .Chart.Name) . | fromJson)) | nindent 12 }}
            {{- include "outpost.otelEnv" . | nindent 12 }}
            {{- with $.env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          livenessProbe:
            httpGet: {path: /healthz, port: {{ $.portName }}}
            periodSeconds: 10
            failureThreshold: 6
          readinessProbe:
            httpGet: {path: /readyz, port: {{ $.portName }}}
            periodSeconds: 5
            failureThreshold: 3
          startupProbe:
            httpGet: {path: /healthz, port: {{ $.portName }}}
            periodSeconds: 2
            failureThreshold: 60
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          securityContext:
            {{- include "outpost.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/outpost
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- include "outpost.credentialMounts" . | nindent 12 }}
            {{- with $.mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "outpost.fullname" . }}
        - name: tmp
          emptyDir:
            sizeLimit: {{ .Values.tmpSize }}
        {{- include "outpost.credentialVolumes" . | nindent 8 }}
        {{- with $.volumes }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
{{- end -}}

{{- define "outpost.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "outpost.fullname" . }}
  labels:
    {{- include "outpost.labels" . | nindent 4 }}
data:
  config.yaml: |
    {{- include (printf "%s.config" .Chart.Name) . | nindent 4 }}
{{- end -}}

{{- define "outpost.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "outpost.serviceAccountName" . }}
  labels:
    {{- include "outpost.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken | default false }}
{{- end -}}
{{- end -}}

{{- define "outpost.pdb" -}}
{{- if .Values.podDisruptionBudget.enabled -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "outpost.fullname" . }}
  labels:
    {{- include "outpost.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "outpost.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}

{{/*
A Service for the chart's HTTP port. Parameters: root, port, portName,
force (render even without .Values.service; agents get one only for the
ServiceMonitor).
*/}}
{{- define "outpost.service" -}}
{{- with .root -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "outpost.fullname" . }}
  labels:
    {{- include "outpost.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "outpost.selectorLabels" . | nindent 4 }}
  ports:
    - name: {{ $.portName }}
      port: {{ $.port }}
      targetPort: {{ $.portName }}
      protocol: TCP
{{- end -}}
{{- end -}}

{{/* Parameters: root, portName. */}}
{{- define "outpost.serviceMonitor" -}}
{{- with .root -}}
{{- if .Values.serviceMonitor.enabled -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "outpost.fullname" . }}
  labels:
    {{- include "outpost.labels" . | nindent 4 }}
    {{- with .Values.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "outpost.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: {{ $.portName }}
      path: /metrics
      interval: {{ .Values.serviceMonitor.interval }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The NetworkPolicy. Parameters: root, ports (ingress ports: the API, or for
agents only probes and metrics), brokerEgress (bool: egress to the broker).
Egress: DNS, the broker, the Kubernetes API when enabled, and the declared
extra destinations; nothing else.
*/}}
{{- define "outpost.networkPolicy" -}}
{{- with .root -}}
{{- if .Values.networkPolicy.enabled -}}
{{- $np := .Values.networkPolicy -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "outpost.fullname" . }}
  labels:
    {{- include "outpost.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "outpost.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - ports:
        {{- range $.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with $np.ingressFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  egress:
    - ports:
        - {port: 53, protocol: UDP}
        - {port: 53, protocol: TCP}
    {{- if $.brokerEgress }}
    - ports:
        {{- range $np.broker.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with $np.broker.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- $kubeAPI := $np.kubeAPI | default dict }}
    {{- if $kubeAPI.enabled }}
    - ports:
        {{- range $kubeAPI.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with $kubeAPI.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- $otel := include "outpost.otel" . | fromJson }}
    {{- if $otel.endpoint }}
    - ports:
        - port: {{ $otel.port }}
          protocol: TCP
      {{- with ($np.otel | default dict).to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- with $np.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The helm test hook: a pod that connects to host:port and exits 0 when it
answers. Parameters: root, host, port, path (HTTP path, or empty for a TCP
connect).
*/}}
{{- define "outpost.testConnection" -}}
{{- with .root -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ printf "%s-test-connection" (include "outpost.fullname" .) | trunc 63 | trimSuffix "-" }}
  labels:
    {{- include "outpost.labels" . | nindent 4 }}
    app.kubernetes.io/component: test
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext:
    {{- include "outpost.podSecurityContext" . | nindent 4 }}
  containers:
    - name: connect
      image: {{ .Values.tests.image | quote }}
      {{- if $.path }}
      command: ["wget", "-q", "-O", "/dev/null", "-T", "5", {{ printf "http://%s:%v%s" $.host $.port $.path | quote }}]
      {{- else }}
      command: ["nc", "-z", "-w", "5", {{ $.host | quote }}, {{ $.port | quote }}]
      {{- end }}
      resources:
        requests: {cpu: 10m, memory: 16Mi}
        limits: {cpu: 100m, memory: 32Mi}
      securityContext:
        {{- include "outpost.containerSecurityContext" . | nindent 8 }}
{{- end -}}
{{- end -}}
