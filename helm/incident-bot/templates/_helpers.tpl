{{/* The chart's name. */}}
{{- define "incident-bot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, used for every object. */}}
{{- define "incident-bot.fullname" -}}
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

{{- define "incident-bot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "incident-bot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "incident-bot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "incident-bot.labels" -}}
helm.sh/chart: {{ include "incident-bot.chart" . }}
{{ include "incident-bot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The pod's service account: the investigation's read-only credentials. */}}
{{- define "incident-bot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "incident-bot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The actions' service account: the write credentials, never the pod's. */}}
{{- define "incident-bot.actionsServiceAccountName" -}}
{{- default (printf "%s-actions" (include "incident-bot.fullname" .) | trunc 63 | trimSuffix "-") .Values.actions.serviceAccount.name }}
{{- end }}

{{/* The Secret the environment's credentials come from. */}}
{{- define "incident-bot.secretName" -}}
{{- default (include "incident-bot.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Whether the chart itself creates the actions' service account, token and kubeconfig. */}}
{{- define "incident-bot.actionsCredentials" -}}
{{- if and .Values.actions.enabled (not .Values.actions.existingKubeconfigSecret) }}true{{ end }}
{{- end }}

{{- define "incident-bot.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}
