{{/*
Labels every object of the release carries; the argument is (list $ "hub"), (list $ "pilot") or, for objects of
no one component, (list $ "").
*/}}
{{- define "sextant.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | quote }}
app.kubernetes.io/part-of: sextant
app.kubernetes.io/managed-by: {{ $root.Release.Service | quote }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
{{- if index . 1 }}
{{ include "sextant.selector" . }}
{{- else }}
app.kubernetes.io/instance: {{ $root.Release.Name | quote }}
{{- end }}
{{- end }}

{{/*
A component's selector labels; the argument is (list $ "hub") or (list $ "pilot").
*/}}
{{- define "sextant.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ printf "sextant-%s" (index . 1) }}
app.kubernetes.io/instance: {{ $root.Release.Name | quote }}
{{- end }}

{{/*
The image both components run.
*/}}
{{- define "sextant.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The pod's security context: a fixed non-root user, its group owning the mounted Secret and emptyDirs.
*/}}
{{- define "sextant.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The container's security context: nothing but the process itself (no capability, no writable image).
*/}}
{{- define "sextant.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/*
The environment both containers get: where they run (the downward API) and their log filter.
*/}}
{{- define "sextant.env" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- with .Values.otel }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .protocol | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerRatio | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)"
{{- if not .metrics }}
- name: OTEL_METRICS_EXPORTER
  value: none
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The hub's gRPC service port sidecars call, HOST:PORT.
*/}}
{{- define "sextant.hubService" -}}
{{- .Values.pilot.hubService | default (printf "sextant-hub.%s.svc.%s:9091" .Release.Namespace .Values.pilot.clusterDomain) -}}
{{- end }}

{{/*
webhooks.caBundle as the API server wants it: base64 of PEM. PEM text is encoded here (one newline at its end, as in the file); anything that is not
(base64 of) a PEM certificate stops the install with what to give.
*/}}
{{- define "sextant.caBundle" -}}
{{- $given := required "webhooks.caBundle: give pilot's CA root (root-cert.pem of pilot.caSecret) as --set webhooks.caBundle=$(base64 -w0 root-cert.pem), or --set webhooks.enabled=false" .Values.webhooks.caBundle | trim -}}
{{- $pem := ternary $given (b64dec $given) (hasPrefix "-----BEGIN" $given) -}}
{{- if not (contains "-----BEGIN CERTIFICATE-----" $pem) -}}
{{- fail "webhooks.caBundle: not a PEM certificate, nor one in base64: give root-cert.pem of pilot.caSecret base64-encoded (base64 -w0 root-cert.pem)" -}}
{{- end -}}
{{- printf "%s\n" (trim $pem) | b64enc -}}
{{- end }}
