{{- /*
The chart's only hand-written template logic (hack/helm/chart/_helpers.tpl, copied by
hack/helm/generate.py); every object comes from deploy/.
*/}}

{{- /* The project's image: image.repository:image.tag, the tag defaulting to appVersion. */}}
{{- define "agentkube.image" -}}
{{- if not .Values.image.repository }}{{ fail "image.repository: set the project's image repository (e.g. ghcr.io/openvn/agentkube)" }}{{ end -}}
{{- printf "%s:%s" .Values.image.repository (toString (.Values.image.tag | default .Chart.AppVersion)) -}}
{{- end -}}

{{- /* The operator's config.yaml: .Values.config, agentImage defaulting to the project's
image, and `memory: {}` when memory.enabled and config.memory is unset. */}}
{{- define "agentkube.operatorConfig" -}}
{{- /* Checked here: every install renders this ConfigMap. */}}
{{- if and .Values.namespaced.enabled (not .Values.namespaced.namespaces) -}}
{{- fail "namespaced.namespaces: the namespaced mode needs at least one namespace to watch (e.g. --set 'namespaced.namespaces={agents}')" -}}
{{- end -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- if not (hasKey $config "agentImage") -}}
{{- $_ := set $config "agentImage" (include "agentkube.image" .) -}}
{{- end -}}
{{- if and .Values.memory.enabled (not (hasKey $config "memory")) -}}
{{- $_ := set $config "memory" (dict) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
