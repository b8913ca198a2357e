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

{{/* Whether the chart itself creates the actions' service account and kubeconfig (and the
pod then runs as that account, with a projected token). */}}
{{- define "incident-bot.actionsCredentials" -}}
{{- if and .Values.actions.enabled (not .Values.actions.existingKubeconfigSecret) }}true{{ end }}
{{- end }}

{{/* The account the pod runs as: the actions' one when the chart makes the actions'
credentials (its projected token is theirs, the read-only token comes from a Secret),
else the read-only one (its projected token is then the investigation's). */}}
{{- define "incident-bot.podServiceAccountName" -}}
{{- if include "incident-bot.actionsCredentials" . }}
{{- if eq (include "incident-bot.actionsServiceAccountName" .) (include "incident-bot.serviceAccountName" .) }}
{{- fail "actions.serviceAccount.name must differ from the read-only serviceAccount.name: the actions' write credentials and the investigation's read-only ones are two accounts" }}
{{- end }}
{{- include "incident-bot.actionsServiceAccountName" . }}
{{- else }}
{{- include "incident-bot.serviceAccountName" . }}
{{- end }}
{{- end }}

{{/* The Secret holding the read-only account's token when the pod runs as the actions' one. */}}
{{- define "incident-bot.readTokenSecretName" -}}
{{- printf "%s-read-token" (include "incident-bot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* actions.token.expirationSeconds, checked: the API server takes no less than 600. */}}
{{- define "incident-bot.actionsTokenExpirationSeconds" -}}
{{- $seconds := .Values.actions.token.expirationSeconds }}
{{- if not (and (or (kindIs "int" $seconds) (kindIs "int64" $seconds) (kindIs "float64" $seconds)) (eq (float64 $seconds) (float64 (int64 $seconds))) (ge (int64 $seconds) 600)) }}
{{- fail (printf "actions.token.expirationSeconds must be a whole number of seconds, at least 600 (the API server's minimum), not %v" $seconds) }}
{{- end }}
{{- int64 $seconds }}
{{- end }}

{{- define "incident-bot.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* actions.namespaces, checked and without repeats, as a JSON list: the only namespaces
the actions' Role is bound in. */}}
{{- define "incident-bot.actionsNamespaces" -}}
{{- $namespaces := .Values.actions.namespaces | default list }}
{{- if not (kindIs "slice" $namespaces) }}
{{- fail (printf "actions.namespaces must be a list of namespaces, e.g. [shop, payments] (--set 'actions.namespaces={shop,payments}'), not %v" $namespaces) }}
{{- end }}
{{- range $namespaces }}
{{- if not (and (kindIs "string" .) (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" .)) }}
{{- fail (printf "actions.namespaces: %v is not a namespace name" .) }}
{{- end }}
{{- end }}
{{- $namespaces | uniq | toJson }}
{{- end }}

{{/* redis.mode, checked: statefulset, external or embedded; embedded only with one
replica, external only with a URL to use. */}}
{{- define "incident-bot.redisMode" -}}
{{- $mode := .Values.redis.mode }}
{{- if not (has $mode (list "statefulset" "external" "embedded")) }}
{{- fail (printf "redis.mode must be statefulset, external or embedded, not %v" $mode) }}
{{- end }}
{{- if and (eq $mode "embedded") (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "redis.mode embedded runs a separate Valkey in each pod, so %d replicas would not share runs (alerts accepted by one are lost when its pod goes, clicks reach the wrong pod). Set replicaCount: 1 for a trial, or redis.mode: statefulset (the chart runs Valkey with a volume) or redis.mode: external with redis.url (or redis.existingSecret)" (int .Values.replicaCount)) }}
{{- end }}
{{- if and (eq $mode "external") (not .Values.redis.url) (not .Values.redis.existingSecret) }}
{{- fail "redis.mode external needs redis.url (redis://[:password@]host:6379/0) or redis.existingSecret (a Secret holding the URL under redis.existingSecretKey)" }}
{{- end }}
{{- $mode }}
{{- end }}

{{/* The chart's Redis: StatefulSet, Service and Secret name. */}}
{{- define "incident-bot.redisFullname" -}}
{{- printf "%s-redis" (include "incident-bot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The chart's Redis pods' labels: a name of their own, so that nothing of the bot's
(Service, PodDisruptionBudget, NetworkPolicy) selects them. */}}
{{- define "incident-bot.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "incident-bot.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "incident-bot.redisLabels" -}}
helm.sh/chart: {{ include "incident-bot.chart" . }}
{{ include "incident-bot.redisSelectorLabels" . }}
app.kubernetes.io/component: redis
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret (name and key) with the chart's Redis password. */}}
{{- define "incident-bot.redisPasswordSecret" -}}
{{- default (include "incident-bot.redisFullname" .) .Values.redis.auth.existingSecret }}
{{- end }}

{{- define "incident-bot.redisImage" -}}
{{- if .Values.redis.image.digest }}
{{- printf "%s@%s" .Values.redis.image.repository .Values.redis.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.redis.image.repository .Values.redis.image.tag }}
{{- end }}
{{- end }}

{{/* The container's `env` entries for REDIS_URL: from the external URL's Secret, or
built from the chart's Redis password; none in embedded mode. */}}
{{- define "incident-bot.redisEnv" -}}
{{- $mode := include "incident-bot.redisMode" . }}
{{- if eq $mode "external" }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (printf "%s-redis-url" (include "incident-bot.fullname" .)) .Values.redis.existingSecret }}
      key: {{ ternary .Values.redis.existingSecretKey "REDIS_URL" (not (empty .Values.redis.existingSecret)) }}
{{- else if eq $mode "statefulset" }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "incident-bot.redisPasswordSecret" . }}
      key: {{ ternary .Values.redis.auth.existingSecretKey "password" (not (empty .Values.redis.auth.existingSecret)) }}
- name: REDIS_URL
  value: redis://:$(REDIS_PASSWORD)@{{ include "incident-bot.redisFullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.redis.port }}/0
{{- end }}
{{- end }}

{{/* The intake Deployment and Service (intake.enabled): intake only, no drives. */}}
{{- define "incident-bot.intakeFullname" -}}
{{- printf "%s-intake" (include "incident-bot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The intake pods' labels: a name of their own, so that the bot's Deployment, Service
and PodDisruptionBudget (whose selectors cannot change on upgrade) do not select them. */}}
{{- define "incident-bot.intakeSelectorLabels" -}}
app.kubernetes.io/name: {{ include "incident-bot.name" . }}-intake
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "incident-bot.intakeLabels" -}}
helm.sh/chart: {{ include "incident-bot.chart" . }}
{{ include "incident-bot.intakeSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: intake
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* intake.enabled, checked: it needs a Redis shared with the bot's pods and a name of
its own. Renders nothing. */}}
{{- define "incident-bot.checkIntake" -}}
{{- if eq (include "incident-bot.redisMode" .) "embedded" }}
{{- fail "intake.enabled needs a Redis the intake and the bot's pods share: redis.mode embedded gives each pod its own, so the alerts the intake accepts would never reach the pods that drive runs. Set redis.mode: statefulset or external" }}
{{- end }}
{{- if gt (len (include "incident-bot.fullname" .)) 56 }}
{{- fail (printf "intake.enabled needs a full name of at most 56 characters, so that %s-intake fits the 63 a name may have: shorten the release name or set fullnameOverride" (include "incident-bot.fullname" .)) }}
{{- end }}
{{- end }}

{{/* The Service the webhooks go to: the intake's when intake.enabled, else the bot's. */}}
{{- define "incident-bot.webhookService" -}}
{{- if .Values.intake.enabled }}
{{- include "incident-bot.checkIntake" . }}
{{- include "incident-bot.intakeFullname" . }}
{{- else }}
{{- include "incident-bot.fullname" . }}
{{- end }}
{{- end }}

{{/* The pods' non-secret environment: the data of the bot's ConfigMap and, less the
actions' kubeconfig (they call no Kubernetes API), of the intake's. Arguments (a dict):
root (the chart's context), actions (whether to point INCIDENT_BOT_ACTIONS_KUBECONFIG at
the actions' kubeconfig, when actions.enabled). */}}
{{- define "incident-bot.configData" -}}
{{- $root := .root -}}
INCIDENT_BOT_DATA_DIR: /var/lib/incident-bot
# The root filesystem is read-only: whatever writes under HOME (matplotlib's cache for
# the charts) writes to the /tmp emptyDir.
HOME: /tmp
MPLCONFIGDIR: /tmp/matplotlib
INCIDENT_BOT_SHUTDOWN_GRACE: {{ $root.Values.shutdownGrace | quote }}
{{- if $root.Values.policy.enabled }}
INCIDENT_BOT_POLICY_DIR: /etc/incident-bot/policies
{{- end }}
{{- if and .actions $root.Values.actions.enabled }}
INCIDENT_BOT_ACTIONS_KUBECONFIG: /etc/incident-bot/actions/kubeconfig
{{- end }}
{{- if $root.Values.slack.socketMode }}
INCIDENT_BOT_SLACK_SOCKET_MODE: "true"
{{- end }}
{{- with $root.Values.slack.channel }}
INCIDENT_BOT_SLACK_CHANNEL: {{ . | quote }}
{{- end }}
{{- range $key, $value := $root.Values.config }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
