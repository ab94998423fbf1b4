{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "mcp-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: also the Service name agents connect to. */}}
{{- define "mcp-gateway.fullname" -}}
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

{{- define "mcp-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcp-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mcp-gateway.labels" -}}
helm.sh/chart: {{ include "mcp-gateway.chart" . }}
{{ include "mcp-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: mcp-gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mcp-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mcp-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag[-variant], or repository@digest. */}}
{{- define "mcp-gateway.image" -}}
{{- $img := .Values.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- $tag := default .Chart.AppVersion $img.tag }}
{{- if $img.variant }}
{{- $tag = printf "%s-%s" $tag $img.variant }}
{{- end }}
{{- printf "%s:%s" $img.repository $tag }}
{{- end }}
{{- end }}

{{/* Host header values accepted on /mcp and /sse: the Service's DNS names, then extras. */}}
{{- define "mcp-gateway.allowedHosts" -}}
{{- $name := include "mcp-gateway.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.%s" $name $ns .Values.clusterDomain) }}
{{- range .Values.allowedHosts }}
{{- $hosts = append $hosts . }}
{{- end }}
{{- $hosts | uniq | join "," }}
{{- end }}

{{- define "mcp-gateway.leaseName" -}}
{{- default (include "mcp-gateway.fullname" .) .Values.leaseName }}
{{- end }}

{{/* "true" when a PodDisruptionBudget is wanted. */}}
{{- define "mcp-gateway.pdbEnabled" -}}
{{- $e := .Values.podDisruptionBudget.enabled }}
{{- if eq (toString $e) "auto" }}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- else if eq (toString $e) "true" }}true
{{- end }}
{{- end }}

{{/* The McpBackend, Secret, ConfigMap and Event rules, for a ClusterRole or a per-namespace Role. */}}
{{- define "mcp-gateway.watchRules" -}}
- apiGroups: ["mcpgateway.dev"]
  resources: ["mcpbackends"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["mcpgateway.dev"]
  resources: ["mcpbackends/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# Secrets and ConfigMaps referenced by McpBackend env/headers: read by name only, never listed.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
  {{- with .Values.rbac.secretNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
  {{- with .Values.rbac.configMapNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
{{- end }}
