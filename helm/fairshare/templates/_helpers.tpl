{{/* Names are fixed (no release prefix): one platform per namespace, and the gateway bootstrap, generated
     from the tenant spec, names the control plane's Service. */}}
{{- define "fairshare.labels" -}}
app.kubernetes.io/name: fairshare
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: fairshare
app.kubernetes.io/component: {{ .component }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "fairshare.selector" -}}
app.kubernetes.io/name: fairshare
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* registry/repository:tag[@digest] */}}
{{- define "fairshare.image" -}}
{{- $ref := printf "%s/%s:%s" .registry .repository .tag -}}
{{- if .digest }}{{ $ref = printf "%s@%s" $ref .digest }}{{ end -}}
{{- $ref -}}
{{- end -}}

{{/* Every container: not root, nothing to escalate to, no writes outside its volumes. */}}
{{- define "fairshare.containerSecurity" -}}
securityContext:
  privileged: false
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{- define "fairshare.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ . }}
  runAsGroup: {{ . }}
  fsGroup: {{ . }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "fairshare.pullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "fairshare.tenantNamespace" -}}
{{- printf "%s%s" .root.Values.tenantNamespaces.prefix .id | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* platform.yaml as the cluster needs it: the spec's file, verbatim unless the OPA server is on, which
     only the chart knows of; then the policy backend is that server (the control plane's own sidecar). */}}
{{- define "fairshare.platformYaml" -}}
{{- $v := .root.Values -}}
{{- if $v.opa.enabled -}}
{{- $platform := fromYaml .content | default dict -}}
{{- if hasKey $platform "Error" }}{{ fail (printf "spec.configFiles platform.yaml is not YAML: %s" $platform.Error) }}{{ end -}}
{{- $opa := dict "backend" "opa" "opa_url" (printf "http://127.0.0.1:%d" (int $v.opa.port)) -}}
{{- $_ := set $platform "policy" (mergeOverwrite (get $platform "policy" | default dict) $opa) -}}
{{- toYaml $platform -}}
{{- else -}}
{{- .content -}}
{{- end -}}
{{- end -}}

{{/* The Secrets holding the gateway's client certificate and the runtimes' server certificate. */}}
{{- define "fairshare.gatewayTlsSecret" -}}
{{- .Values.tls.upstream.existingSecrets.gateway | default "fairshare-gateway-client-tls" -}}
{{- end -}}

{{- define "fairshare.runtimeTlsSecret" -}}
{{- .Values.tls.upstream.existingSecrets.runtime | default "fairshare-runtime-tls" -}}
{{- end -}}

{{- define "fairshare.controlPlaneTlsSecret" -}}
{{- .Values.tls.upstream.existingSecrets.controlPlane | default "fairshare-control-plane-tls" -}}
{{- end -}}

{{/* Redis's password: the Secret's (lookup, on upgrades), else a new one; made once per render and kept in
     .Values.redis, so the Secret, Redis's ACL checksum and the control plane's checksum all hash the same one. */}}
{{- define "fairshare.redisPassword" -}}
{{- $r := .Values.redis -}}
{{- if not (hasKey $r "__password") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace "fairshare-redis-auth" -}}
{{- $password := randAlphaNum 40 -}}
{{- with (dig "data" "password" "" ($existing | default dict)) }}{{ $password = b64dec . }}{{ end -}}
{{- $_ := set $r "__password" $password -}}
{{- end -}}
{{- get $r "__password" -}}
{{- end -}}

{{/* What a pod that uses Redis's password restarts on: a new password (the Secret deleted and upgraded). */}}
{{- define "fairshare.redisAuthChecksum" -}}
{{- include "fairshare.redisPassword" . | sha256sum | sha256sum -}}
{{- end -}}

{{/* Spread a Deployment's replicas across nodes and zones, so that draining a node (an upgrade, the autoscaler's
     scale-down) or losing a zone leaves the others serving. ScheduleAnyway: a small cluster still schedules.
     pod-template-hash: a rollout's new pods spread among themselves, not against the old ones going away.
     Argument: the pods' selector labels (a dict). */}}
{{- define "fairshare.spread" -}}
topologySpreadConstraints:
{{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- toYaml $ | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
{{- end }}
{{- end -}}

{{/* What would answer 503 in the cluster for want of an AWS identity: refused here, naming what needs it. The
     runtimes read S3 artifacts and the tenants' pseudonymisation keys with their IRSA role (the node's metadata
     service is out of a pod's reach), the keys under the prefix Terraform wrote them at; the control plane
     reads an S3 config bundle with its own role. `make chart-install` carries them from Terraform's chart_inputs. */}}
{{- define "fairshare.checkAwsIdentity" -}}
{{- $v := .Values -}}
{{- $aws := $v.spec.runtimeAws | default dict -}}
{{- $from := "(terraform output -json chart_inputs; make chart-install passes them)" -}}
{{- $s3 := $aws.s3Artifacts | default list -}}
{{- $pseudo := $aws.pseudonymisingTenants | default list -}}
{{- $problems := list -}}
{{- if and (not $v.inference.roleArn) (or $s3 $pseudo) -}}
{{- $needs := list -}}
{{- with $s3 }}{{ $needs = append $needs (printf "S3 artifacts (%s)" (join ", " .)) }}{{ end -}}
{{- with $pseudo }}{{ $needs = append $needs (printf "the pseudonymisation keys of tenants %s" (join ", " .)) }}{{ end -}}
{{- $problems = append $problems (printf "inference.roleArn is empty, but the runtimes read %s with it: set it to chart_inputs' runtime_role_arn" (join " and " $needs)) -}}
{{- end -}}
{{- if and $pseudo (not $v.inference.pseudonymisationKeys.secretPrefix) -}}
{{- $problems = append $problems (printf "inference.pseudonymisationKeys.secretPrefix is empty, but tenants %s pseudonymise (every request of theirs would get 503): set it to chart_inputs' tenant_secret_name_prefix" (join ", " $pseudo)) -}}
{{- end -}}
{{- if and (hasPrefix "s3://" $v.config.source) (not $v.controlPlane.roleArn) -}}
{{- $problems = append $problems (printf "controlPlane.roleArn is empty, but the control plane reads its config from %s with it: set it to chart_inputs' control_plane_role_arn" $v.config.source) -}}
{{- end -}}
{{- /* An IRSA role means an AWS region Terraform built, and each has an audit bucket: without it here every
     restart would take the audit trail with the pod's emptyDir (an auditor's evidence), so refuse. Without a
     role (kind, a laptop, an example rendered alone) there is nowhere to ship: NOTES warns instead. */ -}}
{{- if and $v.controlPlane.roleArn (not $v.controlPlane.audit.bucket) -}}
{{- $problems = append $problems "controlPlane.audit.bucket is empty, but the control plane runs in AWS (controlPlane.roleArn is set): every restart would lose the audit trail; set it to chart_inputs' audit_bucket and controlPlane.audit.prefix to its audit_prefix (apply the region's Terraform again if its output has none)" -}}
{{- end -}}
{{- with $problems }}{{ fail (printf "%s %s" (join "; " .) $from) }}{{ end -}}
{{- end -}}

{{/* Where a platform pod runs (control plane, gateways, Redis): the operator's nodeSelector, tolerations and
     affinity of that component; by default the Terraform `system` pool, so they take no room on the serving
     pools' nodes nor keep those from scaling down. Argument: the component's values. */}}
{{- define "fairshare.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
