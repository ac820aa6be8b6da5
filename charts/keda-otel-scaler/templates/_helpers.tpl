{{/* Names ---------------------------------------------------------------------------- */}}

{{- define "keda-otel-scaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or the release name alone when it already contains the chart name. */}}
{{- define "keda-otel-scaler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "keda-otel-scaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keda-otel-scaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace of the llm-d Deployments: collectors and ScaledObjects go there. */}}
{{- define "keda-otel-scaler.modelNamespace" -}}
{{- default .Release.Namespace .Values.model.namespace }}
{{- end }}

{{/* The scaler's Service as seen from the model namespace. */}}
{{- define "keda-otel-scaler.host" -}}
{{- printf "%s.%s.svc" (include "keda-otel-scaler.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "keda-otel-scaler.port.otlp" -}}{{ .Values.settings.otlpReceiverPort | default 4317 | int }}{{- end }}
{{- define "keda-otel-scaler.port.keda" -}}{{ .Values.settings.kedaExternalScalerPort | default 4318 | int }}{{- end }}
{{- define "keda-otel-scaler.port.http" -}}{{ .Values.settings.restApiPort | default 9090 | int }}{{- end }}

{{/* High availability: the headless Service, the peers' token Secret, the peer URL. */}}
{{- define "keda-otel-scaler.headless" -}}{{ include "keda-otel-scaler.fullname" . | trunc 54 | trimSuffix "-" }}-headless{{- end }}
{{- define "keda-otel-scaler.peerTokenSecret" -}}
{{- default (printf "%s-peer-token" (include "keda-otel-scaler.fullname" .)) .Values.highAvailability.peerTokenSecret }}
{{- end }}
{{- define "keda-otel-scaler.headlessHost" -}}
{{- printf "%s.%s.svc" (include "keda-otel-scaler.headless" .) .Release.Namespace }}
{{- end }}

{{/*
The collectors' OTLP exporters: one to the Service, or with highAvailability one per replica
(its own retry and queue) at <fullname>-<i>.<headless Service>.
*/}}
{{- define "keda-otel-scaler.exporters" -}}
{{- $port := include "keda-otel-scaler.port.otlp" . }}
{{- if .Values.highAvailability.enabled }}
{{- $fullname := include "keda-otel-scaler.fullname" . }}
{{- range $i := until (int .Values.highAvailability.replicas) }}
- name: otlp/keda-otel-scaler-{{ $i }}
  endpoint: {{ $fullname }}-{{ $i }}.{{ include "keda-otel-scaler.headlessHost" $ }}:{{ $port }}
{{- end }}
{{- else }}
- name: otlp/keda-otel-scaler
  endpoint: {{ include "keda-otel-scaler.host" . }}:{{ $port }}
{{- end }}
{{- end }}

{{- define "keda-otel-scaler.tlsSecret" -}}{{ include "keda-otel-scaler.fullname" . }}-tls{{- end }}
{{- define "keda-otel-scaler.kedaClientSecret" -}}{{ include "keda-otel-scaler.fullname" . }}-keda-client{{- end }}
{{- define "keda-otel-scaler.triggerAuthentication" -}}{{ include "keda-otel-scaler.fullname" . }}-tls{{- end }}

{{/* Labels ---------------------------------------------------------------------------- */}}

{{- define "keda-otel-scaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keda-otel-scaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "keda-otel-scaler.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keda-otel-scaler
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the scaler's own objects. */}}
{{- define "keda-otel-scaler.labels" -}}
{{ include "keda-otel-scaler.commonLabels" . }}
app.kubernetes.io/name: {{ include "keda-otel-scaler.name" . }}
app.kubernetes.io/component: external-scaler
{{- end }}

{{/* Environment ----------------------------------------------------------------------- */}}

{{/*
A value as an environment string. Helm reads every YAML number as a float64, which would
print 16777216 as 1.6777216e+07: whole numbers are printed as integers.
*/}}
{{- define "keda-otel-scaler.envValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* Mount point of the chart-made TLS Secret. */}}
{{- define "keda-otel-scaler.tlsDir" -}}/etc/keda-otel-scaler/tls{{- end }}

{{/*
The settings as a map ENV_NAME -> value: .Values.settings (null = unset), plus the TLS files
when tls.enabled. A TLS file set both ways is an error.
*/}}
{{- define "keda-otel-scaler.settingsEnv" -}}
{{- $env := dict }}
{{- range $key, $value := .Values.settings }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $env ($key | snakecase | upper) (include "keda-otel-scaler.envValue" $value) }}
{{- end }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $dir := include "keda-otel-scaler.tlsDir" . }}
{{- $files := dict "OTLP_TLS_CERT_FILE" (printf "%s/tls.crt" $dir) "OTLP_TLS_KEY_FILE" (printf "%s/tls.key" $dir) "KEDA_TLS_CERT_FILE" (printf "%s/tls.crt" $dir) "KEDA_TLS_KEY_FILE" (printf "%s/tls.key" $dir) "KEDA_TLS_CA_FILE" (printf "%s/ca.crt" $dir) "REST_TLS_CERT_FILE" (printf "%s/tls.crt" $dir) "REST_TLS_KEY_FILE" (printf "%s/tls.key" $dir) }}
{{- if .Values.tls.otlpClientAuth }}
{{- $_ := set $files "OTLP_TLS_CA_FILE" (printf "%s/ca.crt" $dir) }}
{{- end }}
{{- range $name, $path := $files }}
{{- if hasKey $env $name }}
{{- fail (printf "settings: %s is set by tls.enabled; leave it null" $name) }}
{{- end }}
{{- $_ := set $env $name $path }}
{{- end }}
{{- end }}
{{- if .Values.highAvailability.enabled }}
{{- range $name := list "PEERS" "PEER_TOKEN" "PEER_CA_FILE" }}
{{- if hasKey $env $name }}
{{- fail (printf "settings: %s is set by highAvailability.enabled; leave it null" $name) }}
{{- end }}
{{- end }}
{{- $scheme := ternary "https" "http" (hasKey $env "REST_TLS_CERT_FILE") }}
{{- $_ := set $env "PEERS" (printf "dns+%s://%s:%d" $scheme (include "keda-otel-scaler.headlessHost" .) (include "keda-otel-scaler.port.http" . | int)) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $env "PEER_CA_FILE" (printf "%s/ca.crt" (include "keda-otel-scaler.tlsDir" .)) }}
{{- end }}
{{- end }}
{{- if and .Values.adminTokenSecret (hasKey $env "ADMIN_TOKEN") }}
{{- fail "settings.adminToken and adminTokenSecret are exclusive" }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* Pod template ---------------------------------------------------------------------- */}}

{{/*
The scaler's pod template, shared by the workloads that run it: the Deployment, or the
StatefulSet of the HA layout (highAvailability.enabled).
*/}}
{{- define "keda-otel-scaler.podTemplate" -}}
{{- $env := include "keda-otel-scaler.settingsEnv" . | fromYaml }}
{{- $scheme := ternary "HTTPS" "HTTP" (hasKey $env "REST_TLS_CERT_FILE") }}
metadata:
  labels:
    {{- include "keda-otel-scaler.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "keda-otel-scaler.serviceAccountName" . }}
  # The scaler never talks to the Kubernetes API.
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: scaler
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["serve"]
      ports:
        - name: otlp-grpc
          containerPort: {{ include "keda-otel-scaler.port.otlp" . }}
          protocol: TCP
        - name: keda
          containerPort: {{ include "keda-otel-scaler.port.keda" . }}
          protocol: TCP
        - name: http
          containerPort: {{ include "keda-otel-scaler.port.http" . }}
          protocol: TCP
      env:
        {{- range $name, $value := $env }}
        - name: {{ $name }}
          value: {{ $value | toString | quote }}
        {{- end }}
        {{- if .Values.highAvailability.enabled }}
        - name: PEER_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ include "keda-otel-scaler.peerTokenSecret" . }}
              key: token
        {{- end }}
        {{- with .Values.adminTokenSecret }}
        - name: ADMIN_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ . }}
              key: token
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      startupProbe:
        httpGet: {path: /healthz, port: http{{ if eq $scheme "HTTPS" }}, scheme: HTTPS{{ end }}}
        {{- toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: {path: /healthz, port: http{{ if eq $scheme "HTTPS" }}, scheme: HTTPS{{ end }}}
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: {path: /readyz, port: http{{ if eq $scheme "HTTPS" }}, scheme: HTTPS{{ end }}}
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      {{- if .Values.preStopSleepSeconds }}
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .Values.preStopSleepSeconds }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- with .Values.settings.snapshotPath }}
        - name: state
          mountPath: {{ dir . }}
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: {{ include "keda-otel-scaler.tlsDir" . }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
    {{- if .Values.settings.snapshotPath }}
    - name: state
      {{- if .Values.snapshot.existingClaim }}
      persistentVolumeClaim:
        claimName: {{ .Values.snapshot.existingClaim }}
      {{- else }}
      emptyDir:
        sizeLimit: {{ .Values.snapshot.sizeLimit }}
      {{- end }}
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "keda-otel-scaler.tlsSecret" . }}
        # 0440: readable by the pod's fsGroup, not by others.
        defaultMode: 288
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if and .Values.highAvailability.enabled (ne .Values.highAvailability.antiAffinity "none") }}
  # Replicas on distinct nodes: a node failure or drain takes at most one.
  affinity:
    podAntiAffinity:
      {{- if eq .Values.highAvailability.antiAffinity "required" }}
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "keda-otel-scaler.selectorLabels" . | nindent 14 }}
      {{- else }}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "keda-otel-scaler.selectorLabels" . | nindent 16 }}
      {{- end }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
