{{/* Names, labels and shared snippets of the pmx-connector chart. */}}

{{- define "pmx-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pmx-connector.fullname" -}}
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

{{- define "pmx-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pmx-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pmx-connector.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pmx-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: connector
{{- end }}

{{- define "pmx-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pmx-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the private key: an existing one, or the chart's own. */}}
{{- define "pmx-connector.keySecretName" -}}
{{- default (printf "%s-key" (include "pmx-connector.fullname" .)) .Values.privateKey.existingSecret }}
{{- end }}

{{/* Where the config file and the private key are mounted. */}}
{{- define "pmx-connector.configDir" -}}/etc/pmx-connector{{- end }}
{{- define "pmx-connector.keyDir" -}}/var/run/secrets/pmx{{- end }}

{{/* The connector's settings file: the user's `config` plus what the chart decides. */}}
{{- define "pmx-connector.configFile" -}}
{{- $config := deepCopy .Values.config }}
{{- $auth := get $config "auth" | default dict }}
{{- $_ := set $auth "private_key_file" (printf "%s/%s" (include "pmx-connector.keyDir" .) .Values.privateKey.secretKey) }}
{{- $_ := set $config "auth" $auth }}
{{- $_ := set $config "http" (dict "listen" (printf "0.0.0.0:%d" (int .Values.service.port))) }}
{{- if gt (int .Values.replicas) 1 }}
{{- $connector := get $config "connector" | default dict }}
{{- if and (hasKey $connector "leader_election") (not $connector.leader_election) }}
{{- fail (printf "replicas: %d needs config.connector.leader_election (every replica would open the venue stream); leave it unset or true, or set replicas: 1" (int .Values.replicas)) }}
{{- end }}
{{- $_ := set $connector "leader_election" true }}
{{- $_ := set $config "connector" $connector }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The job label of the scrape target, as alert selectors use it. */}}
{{- define "pmx-connector.alertJob" -}}
{{- default (include "pmx-connector.fullname" .) .Values.alerts.job }}
{{- end }}
