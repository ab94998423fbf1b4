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

{{/* What the controller does with McpBackends, for a ClusterRole or a per-namespace Role: list and
watch them (kube's watcher: no get), server-side apply their status (a patch), and record Events
about them (events.k8s.io: create, then patch for a repeat). */}}
{{- define "mcp-gateway.backendRules" -}}
- apiGroups: ["mcpgateway.dev"]
  resources: ["mcpbackends"]
  verbs: ["list", "watch"]
- apiGroups: ["mcpgateway.dev"]
  resources: ["mcpbackends/status"]
  verbs: ["patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Secrets and ConfigMaps that McpBackends reference in env/headers: read one at a time by name
(get), never listed or watched, so resourceNames narrows them exactly. Only ever in a Role. */}}
{{- define "mcp-gateway.referenceRules" -}}
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

{{/* The namespaces whose Secrets and ConfigMaps may be read, as JSON: the watched ones, or with
every namespace watched, rbac.referenceNamespaces (default: the release namespace). */}}
{{- define "mcp-gateway.referenceNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toJson .Values.watchNamespaces }}
{{- else }}
{{- toJson (default (list .Release.Namespace) .Values.rbac.referenceNamespaces) }}
{{- end }}
{{- end }}
