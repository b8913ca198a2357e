{{/* The pod template both Deployments run (the bot's and, with intake.enabled, the
intake's): one image, configuration, Secret, policy, security contexts, probes and
mounts. Arguments (a dict): root (the chart's context), labels (the pod's labels, a
string), resources, env (entries put after extraEnv, so that they win), configMap (the
ConfigMap of its environment), kubernetes (whether it calls the Kubernetes API: the
bot's pods do, with the service accounts and tokens below; the intake's get none). */}}
{{- define "incident-bot.podTemplate" -}}
{{- $root := .root }}
{{- $fullname := include "incident-bot.fullname" $root }}
{{- $redisEnv := include "incident-bot.redisEnv" $root -}}
metadata:
  labels:
    {{- .labels | nindent 4 }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Roll the pods when their configuration changes.
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    checksum/policy: {{ include (print $root.Template.BasePath "/policy-configmap.yaml") $root | sha256sum }}
    checksum/redis: {{ include (print $root.Template.BasePath "/redis-secret.yaml") $root | sha256sum }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- if not .kubernetes }}
  # No tools and no actions run here, so no Kubernetes credentials at all: the read-only
  # account, no token mounted.
  serviceAccountName: {{ include "incident-bot.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- else if include "incident-bot.actionsCredentials" $root }}
  # The actions' account, so that the projected token below (theirs) expires; nothing is
  # mounted automatically: the read-only token is mounted from its Secret instead.
  serviceAccountName: {{ include "incident-bot.podServiceAccountName" $root }}
  automountServiceAccountToken: false
  {{- else }}
  # The read-only account; its automatically projected token is the investigation's.
  serviceAccountName: {{ include "incident-bot.podServiceAccountName" $root }}
  automountServiceAccountToken: true
  {{- end }}
  terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: incident-bot
      image: {{ include "incident-bot.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: [serve]
      ports:
        - name: http
          containerPort: 8080
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ .configMap }}
        - secretRef:
            name: {{ include "incident-bot.secretName" $root }}
      {{- if or $redisEnv $root.Values.extraEnv .env }}
      env:
        {{- with $redisEnv }}
        {{- . | trim | nindent 8 }}
        {{- end }}
        {{- with $root.Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with .env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml $root.Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        {{- toYaml $root.Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: data
          mountPath: /var/lib/incident-bot
        {{- if $root.Values.policy.enabled }}
        - name: policy
          mountPath: /etc/incident-bot/policies
          readOnly: true
        {{- end }}
        {{- if and .kubernetes $root.Values.actions.enabled }}
        - name: actions-kubeconfig
          mountPath: /etc/incident-bot/actions
          readOnly: true
        {{- if include "incident-bot.actionsCredentials" $root }}
        - name: actions-token
          mountPath: /var/run/secrets/incident-bot/actions
          readOnly: true
        # The investigation's in-cluster config reads token and ca.crt from here.
        - name: read-token
          mountPath: /var/run/secrets/kubernetes.io/serviceaccount
          readOnly: true
        {{- end }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $root.Values.tmpSizeLimit }}
    - name: data
      emptyDir:
        sizeLimit: {{ $root.Values.dataSizeLimit }}
    {{- if $root.Values.policy.enabled }}
    - name: policy
      configMap:
        name: {{ $fullname }}-policy
        items:
          {{- range $name, $content := $root.Values.policy.files }}
          - key: {{ $name }}
            path: {{ $name }}
          {{- end }}
          {{- range $name, $content := $root.Values.policy.runbooks }}
          - key: runbook-{{ $name }}
            path: runbooks/{{ $name }}
          {{- end }}
    {{- end }}
    {{- if and .kubernetes $root.Values.actions.enabled }}
    {{- if $root.Values.actions.existingKubeconfigSecret }}
    - name: actions-kubeconfig
      secret:
        secretName: {{ $root.Values.actions.existingKubeconfigSecret }}
        items:
          - key: kubeconfig
            path: kubeconfig
    {{- else }}
    - name: actions-kubeconfig
      configMap:
        name: {{ $fullname }}-actions-kubeconfig
    # The actions' credentials: a token of the pod's (the actions') account that expires
    # after actions.token.expirationSeconds and that the kubelet renews before then, the
    # cluster's CA and the namespace - what the actions' kubeconfig reads.
    - name: actions-token
      projected:
        sources:
          - serviceAccountToken:
              path: token
              expirationSeconds: {{ include "incident-bot.actionsTokenExpirationSeconds" $root }}
              {{- with $root.Values.actions.token.audience }}
              audience: {{ . | quote }}
              {{- end }}
          - configMap:
              name: kube-root-ca.crt
              items:
                - key: ca.crt
                  path: ca.crt
          - downwardAPI:
              items:
                - path: namespace
                  fieldRef:
                    apiVersion: v1
                    fieldPath: metadata.namespace
    # The investigation's credentials: the read-only account's token (long-lived: a pod
    # has one account, and it is the actions'), laid out as the kubelet would.
    - name: read-token
      secret:
        secretName: {{ include "incident-bot.readTokenSecretName" $root }}
        items:
          - key: token
            path: token
          - key: ca.crt
            path: ca.crt
          - key: namespace
            path: namespace
    {{- end }}
    {{- end }}
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
