{{/* The manager's image; also the default image of registry pods. */}}
{{- define "dockyard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
