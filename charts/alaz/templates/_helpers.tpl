{{/* Chart name, possibly overridden. */}}
{{- define "alaz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-name + chart name, unless the release name already holds it. */}}
{{- define "alaz.fullname" -}}
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

{{/* The namespace: .Values.namespace (Anteon chart compatibility) or the release's. */}}
{{- define "alaz.namespace" -}}
{{- default .Release.Namespace .Values.namespace }}
{{- end }}

{{- define "alaz.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "alaz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alaz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "alaz.labels" -}}
helm.sh/chart: {{ include "alaz.chart" . }}
{{ include "alaz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "alaz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "alaz.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: a plain string (Anteon's `image: ddosify/alaz:v0.11.4`) or repository/tag. */}}
{{- define "alaz.image" -}}
{{- if kindIs "string" .Values.image }}
{{- .Values.image }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "alaz.imagePullPolicy" -}}
{{- if .Values.imagePullPolicy }}
{{- .Values.imagePullPolicy }}
{{- else if kindIs "map" .Values.image }}
{{- default "IfNotPresent" .Values.image.pullPolicy }}
{{- else }}
{{- "IfNotPresent" }}
{{- end }}
{{- end }}

{{/* Capabilities to add: `capabilities` + `extraCapabilities`, upper case, no CAP_ prefix. */}}
{{- define "alaz.capabilities" -}}
{{- $caps := list }}
{{- range concat .Values.capabilities .Values.extraCapabilities }}
{{- $caps = append $caps (upper . | trimPrefix "CAP_") }}
{{- end }}
{{- toJson ($caps | uniq) }}
{{- end }}

{{/*
The container security context shared by the agent and its doctor. Not privileged by default:
root with every capability dropped but `capabilities` + `extraCapabilities`.
*/}}
{{- define "alaz.securityContext" -}}
{{- if .Values.privileged }}
privileged: true
{{- else }}
{{- $caps := include "alaz.capabilities" . | fromJsonArray }}
privileged: false
{{- if not (has "SYS_ADMIN" $caps) }}
allowPrivilegeEscalation: false
{{- end }}
readOnlyRootFilesystem: true
runAsUser: 0
runAsNonRoot: false
capabilities:
  drop:
    - ALL
  add:
    {{- toYaml $caps | nindent 4 }}
{{- with .Values.seccompProfile }}
seccompProfile:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{/* The agent's environment: the Go agent's variable names, then alaz's own. */}}
{{- define "alaz.env" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      apiVersion: v1
      fieldPath: spec.nodeName
- name: TRACING_ENABLED
  value: {{ .Values.tracingEnabled | quote }}
- name: METRICS_ENABLED
  value: {{ .Values.metricsEnabled | quote }}
- name: LOGS_ENABLED
  value: {{ .Values.logsEnabled | quote }}
- name: SEND_ALIVE_TCP_CONNECTIONS
  value: {{ .Values.sendAliveTcpConnections | quote }}
- name: BACKEND_HOST
  value: {{ .Values.backendHost | quote }}
- name: MONITORING_ID
  value: {{ .Values.monitoringID | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: BATCH_SIZE
  value: {{ .Values.batchSize | quote }}
{{- with .Values.excludedNamespaces }}
- name: EXCLUDE_NAMESPACES
  value: {{ . | quote }}
{{- end }}
{{- with .Values.criRuntimeEndpoint }}
- name: CRI_RUNTIME_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: ALAZ_CAPTURE_BYTES
  value: {{ .Values.captureBytes | int | quote }}
- name: ALAZ_RING_BYTES
  value: {{ .Values.ringBytes | int64 | quote }}
- name: ALAZ_HEALTH_PORT
  value: {{ .Values.containerPort | int | quote }}
{{- with .Values.output }}
- name: ALAZ_OUTPUT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Read-only host mounts (see values.yaml `hostMounts`). */}}
{{- define "alaz.volumeMounts" -}}
{{- if .Values.hostMounts.tracefs }}
- name: tracefs
  mountPath: /sys/kernel/tracing
  readOnly: true
  mountPropagation: HostToContainer
{{- end }}
{{- if .Values.hostMounts.debugfs }}
- name: debugfs
  mountPath: /sys/kernel/debug
  readOnly: true
  mountPropagation: HostToContainer
{{- end }}
{{- if .Values.hostMounts.cgroup }}
- name: cgroup
  mountPath: /sys/fs/cgroup
  readOnly: true
  mountPropagation: HostToContainer
{{- end }}
{{- if .Values.hostMounts.btf }}
- name: btf
  mountPath: /sys/kernel/btf
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}
