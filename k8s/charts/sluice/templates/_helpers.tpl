{{- define "sluice.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sluice.headless" -}}
{{- printf "%s-headless" (include "sluice.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The stable DNS name of pod `ordinal`: <sts>-<ordinal>.<headless>.<namespace>.svc.<domain>. */}}
{{- define "sluice.podHost" -}}
{{- $ctx := index . 0 -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "sluice.fullname" $ctx) (index . 1) (include "sluice.headless" $ctx) $ctx.Release.Namespace $ctx.Values.cluster.domain -}}
{{- end -}}

{{/* Seeds: the controller voters' gRPC addresses. Stable under scaling, so scaling does not roll the pods. */}}
{{- define "sluice.seeds" -}}
{{- $ctx := . -}}
{{- $out := list -}}
{{- range $i := until (int .Values.cluster.controllerVoters) -}}
{{- $out = append $out (printf "%s:%d" (include "sluice.podHost" (list $ctx $i)) (int $ctx.Values.ports.grpc)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* Controller voters, KRaft style: <node id>@<host>:<port>, node id = ordinal + 1. */}}
{{- define "sluice.controllerVoters" -}}
{{- $ctx := . -}}
{{- $out := list -}}
{{- range $i := until (int .Values.cluster.controllerVoters) -}}
{{- $out = append $out (printf "%d@%s:%d" (add1 $i) (include "sluice.podHost" (list $ctx $i)) (int $ctx.Values.ports.grpc)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/*
Values that cannot work fail the render with a message naming the value. Called by every template
that a release always renders (statefulset.yaml), so `helm install`, `upgrade` and `template` all stop.
*/}}
{{- define "sluice.validate" -}}
{{- $r := int .Values.replicaCount -}}
{{- $voters := int .Values.cluster.controllerVoters -}}
{{- $rf := int .Values.cluster.defaultReplicationFactor -}}
{{- if lt $r 1 -}}
{{- fail (printf "replicaCount must be at least 1, got %d" $r) -}}
{{- end -}}
{{- if or (lt $voters 1) (eq (mod $voters 2) 0) -}}
{{- fail (printf "cluster.controllerVoters must be odd (1, 3, 5...): %d voters tolerate no more failures than %d, and can split evenly; got %d" $voters (sub $voters 1) $voters) -}}
{{- end -}}
{{- if lt $r $voters -}}
{{- fail (printf "replicaCount (%d) must be at least cluster.controllerVoters (%d): the voters are the first %d pods" $r $voters $voters) -}}
{{- end -}}
{{- if lt $rf 1 -}}
{{- fail (printf "cluster.defaultReplicationFactor must be at least 1, got %d" $rf) -}}
{{- end -}}
{{- if lt $r $rf -}}
{{- fail (printf "replicaCount (%d) is below cluster.defaultReplicationFactor (%d): topics created with the default could not place their replicas" $r $rf) -}}
{{- end -}}
{{- if not (has .Values.podAntiAffinity (list "soft" "hard" "none")) -}}
{{- fail (printf "podAntiAffinity must be soft, hard or none, got %v" .Values.podAntiAffinity) -}}
{{- end -}}
{{- if lt (int .Values.podDisruptionBudget.maxUnavailable) 1 -}}
{{- fail "podDisruptionBudget.maxUnavailable must be at least 1, or no pod could ever be evicted (node drains would hang)" -}}
{{- end -}}
{{- if lt (int .Values.shards) 0 -}}
{{- fail (printf "shards must be 0 (from the CPU limit) or more, got %d" (int .Values.shards)) -}}
{{- end -}}
{{- $sc := .Values.securityContext -}}
{{- if or (ne $sc.allowPrivilegeEscalation false) (ne $sc.readOnlyRootFilesystem true) (ne $sc.runAsNonRoot true) -}}
{{- fail "securityContext must keep allowPrivilegeEscalation=false, readOnlyRootFilesystem=true and runAsNonRoot=true (Pod Security \"restricted\")" -}}
{{- end -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds (%d), or SIGTERM's drain gets no time" (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds)) -}}
{{- end -}}
{{- end -}}
