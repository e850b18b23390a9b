{{/* The chart's name, overridable like any chart's. */}}
{{- define "shadowroute.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-shadowroute, or the release name when it already says shadowroute. */}}
{{- define "shadowroute.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "shadowroute.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shadowroute.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "shadowroute.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "shadowroute.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: shadowroute
{{- end -}}

{{- define "shadowroute.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "shadowroute.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "shadowroute.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does in a watched namespace, read from its code (docs/operations.md
has the table with the reason for each line). A verb not listed here is never used.
*/}}
{{- define "shadowroute.namespacedRules" -}}
# The ShadowRoutes: read and watched (kopf); the spec is never written.
- apiGroups: ["shadowroute.io"]
  resources: ["shadowroutes"]
  verbs: ["get", "list", "watch"]
# Status: server-side apply on the status subresource.
- apiGroups: ["shadowroute.io"]
  resources: ["shadowroutes/status"]
  verbs: ["patch"]
# The children's ownerReferences set blockOwnerDeletion; clusters that enable the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift, hardened clusters)
# require update on the owner's finalizers for that. No finalizer is ever written.
- apiGroups: ["shadowroute.io"]
  resources: ["shadowroutes/finalizers"]
  verbs: ["update"]
# Children: listed by label and watched; written by server-side apply, which needs
# create (the first apply makes the object) and patch. Never deleted: owner
# references let the garbage collector do that.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "patch"]
# Routes of the traffic providers: listed by label (every provider's kind, each
# reconcile, to find routes left behind) and watched (a hand edit is put back at
# once), applied, and deleted when a ShadowRoute switches provider (the old
# provider's route must stop routing at once).
# HTTPRoutes also get: with gatewayAPI.httpRoute the operator edits one rule of an
# HTTPRoute you own, reading it first.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Events on the ShadowRoutes (events.k8s.io/v1, created and never updated).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.rbac.secrets }}
# Prometheus credentials of the analysis (analysis.prometheus.secretRef).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- end -}}

{{/* Leader election: asked for, or needed because more than one replica runs. */}}
{{- define "shadowroute.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) -}}
true
{{- end -}}
{{- end -}}
