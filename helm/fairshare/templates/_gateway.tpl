{{/* One fleet of gateway Envoys: Deployment, HPA (when on), PodDisruptionBudget. The region's gateway (one cell:
     today's layout), its front tier, and each cell's gateways are all this, so every Envoy gets the same
     security context, probes, drain and preStop. Arguments (a dict):
       root       the chart's root context
       name       the objects' name
       ctx        dict root/component for fairshare.labels and fairshare.selector
       extra      labels added to the pods' labels and selector (a cell's), may be empty
       bootstrap  the Envoy bootstrap JSON (its checksum restarts the pods when it changes)
       size       replicas, workers, resources, autoscaling, podDisruptionBudget
       stopWait   seconds preStop waits (the drain, and a load balancer's deregistration where there is one)
       minPath, maxPath  the values that set size.autoscaling.minReplicas and maxReplicas, for errors */}}
{{- define "fairshare.gatewayFleet" -}}
{{- $root := .root }}
{{- $ctx := .ctx }}
{{- $extra := .extra | default dict }}
{{- $size := .size }}
{{- $stopWait := int .stopWait }}
{{- $port := int $root.Values.spec.gatewayPort }}
{{- $drain := $root.Values.gateway.drain }}
{{- $tlsUp := $root.Values.spec.upstreamTls | default dict -}}
{{- /* The API server refuses such an HPA, after the rest of the release is applied; the schema cannot compare
     two values. */}}
{{- if and $size.autoscaling.enabled (gt (int $size.autoscaling.minReplicas) (int $size.autoscaling.maxReplicas)) }}
{{- fail (printf "%s %d is above %s %d: the HorizontalPodAutoscaler %s needs minReplicas <= maxReplicas" .minPath (int $size.autoscaling.minReplicas) .maxPath (int $size.autoscaling.maxReplicas) .name) }}
{{- end -}}
{{- /* A budget of as many pods as the fleet may have allows no eviction: every node drain (an upgrade, the
     autoscaler's scale-down) then waits on it for ever. The API server accepts it. */}}
{{- $least := ternary (int $size.autoscaling.minReplicas) (int $size.replicas) (and $size.autoscaling.enabled true) }}
{{- $minAvailable := $size.podDisruptionBudget.minAvailable }}
{{- if ge (int $minAvailable) $least }}
{{- $prefix := trimSuffix ".autoscaling.minReplicas" .minPath }}
{{- fail (printf "%s.podDisruptionBudget.minAvailable %d is not below the %d %s the fleet %s may run: the PodDisruptionBudget would allow no eviction, and every node drain would wait on it" $prefix (int $minAvailable) $least (ternary (printf "pods of %s.autoscaling.minReplicas" $prefix) (printf "pods of %s.replicas" $prefix) (and $size.autoscaling.enabled true)) .name) }}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "fairshare.labels" $ctx | nindent 4 }}
    {{- with $extra }}{{ toYaml . | nindent 4 }}{{ end }}
spec:
  {{- if not $size.autoscaling.enabled }}
  replicas: {{ $size.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "fairshare.selector" $ctx | nindent 6 }}
      {{- with $extra }}{{ toYaml . | nindent 6 }}{{ end }}
  template:
    metadata:
      labels:
        {{- include "fairshare.labels" $ctx | nindent 8 }}
        {{- with $extra }}{{ toYaml . | nindent 8 }}{{ end }}
      annotations:
        # A new bootstrap needs a new Envoy; everything else reaches running Envoys over xDS.
        checksum/bootstrap: {{ .bootstrap | sha256sum }}
        {{- if $tlsUp.enabled }}
        checksum/sds: {{ toJson $tlsUp.sdsFiles | sha256sum }}
        {{- end }}
    spec:
      automountServiceAccountToken: false
      {{- include "fairshare.podSecurity" 101 | nindent 6 }}
      {{- include "fairshare.pullSecrets" $root | nindent 6 }}
      # Longer than the preStop drain (itself at least the load balancer's deregistration delay), so the
      # kubelet never kills an Envoy that still holds connections.
      terminationGracePeriodSeconds: {{ add $stopWait 15 }}
      {{- include "fairshare.spread" (merge (include "fairshare.selector" $ctx | fromYaml) $extra) | nindent 6 }}
      {{- include "fairshare.placement" $root.Values.gateway | nindent 6 }}
      containers:
        - name: envoy
          image: {{ include "fairshare.image" $root.Values.gateway.image }}
          imagePullPolicy: {{ $root.Values.global.imagePullPolicy }}
          command: ["envoy"]
          args: ["-c", "/etc/envoy/bootstrap.json", "--service-node", "$(POD_NAME)",
                 "--drain-time-s", "{{ $drain.drainSeconds }}", "--concurrency", "{{ $size.workers }}",
                 "--log-level", "info"]
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
          ports:
            # The listener's port comes over xDS from regions.yaml (gateway_port), so it is the spec's too.
            - {name: http, containerPort: {{ $port }}}
          # The listener exists only once the control plane's config arrived, and its health answer is 503 once
          # the preStop hook below failed the health check: ready means "can route, and is not draining".
          readinessProbe:
            httpGet: {path: /v2/health/ready, port: http}
            periodSeconds: 5
          # Drain before SIGTERM (Envoy itself exits at once on it): fail the health check, drain the listeners
          # (each response closes its connection, so clients reconnect to the other replicas), then wait out
          # the drain and the deregistration. The image has bash but no curl: the admin API (9901, loopback,
          # xds_server/deploy/helm_values.ENVOY_ADMIN_PORT) takes these POSTs over /dev/tcp.
          lifecycle:
            preStop:
              exec:
                command:
                  - /bin/bash
                  - -c
                  - >-
                    post() { exec 3<>/dev/tcp/127.0.0.1/9901 &&
                    printf 'POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' "$1" >&3 &&
                    cat <&3 >/dev/null; exec 3>&-; };
                    post /healthcheck/fail; post '/drain_listeners?graceful'; sleep {{ $stopWait }}
          resources:
            {{- toYaml $size.resources | nindent 12 }}
          {{- include "fairshare.containerSecurity" $root | nindent 10 }}
          volumeMounts:
            - {name: bootstrap, mountPath: /etc/envoy, readOnly: true}
            - {name: tmp, mountPath: /tmp}
            {{- if $tlsUp.enabled }}
            - {name: upstream-sds, mountPath: {{ $tlsUp.sdsDir }}, readOnly: true}
            - {name: upstream-certs, mountPath: {{ $tlsUp.certsDir }}, readOnly: true}
            {{- end }}
      volumes:
        - name: bootstrap
          configMap:
            name: {{ .name }}-bootstrap
        {{- if $tlsUp.enabled }}
        - name: upstream-sds
          configMap:
            name: fairshare-gateway-sds
        - name: upstream-certs
          secret:
            secretName: {{ include "fairshare.gatewayTlsSecret" $root }}
        {{- end }}
        - name: tmp
          emptyDir: {}
{{- if $size.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "fairshare.labels" $ctx | nindent 4 }}
    {{- with $extra }}{{ toYaml . | nindent 4 }}{{ end }}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: {{ .name }}}
  minReplicas: {{ $size.autoscaling.minReplicas }}
  maxReplicas: {{ $size.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: {{ $size.autoscaling.targetCPUUtilizationPercentage }}}
{{- end }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "fairshare.labels" $ctx | nindent 4 }}
    {{- with $extra }}{{ toYaml . | nindent 4 }}{{ end }}
spec:
  minAvailable: {{ $size.podDisruptionBudget.minAvailable }}
  selector:
    matchLabels:
      {{- include "fairshare.selector" $ctx | nindent 6 }}
      {{- with $extra }}{{ toYaml . | nindent 6 }}{{ end }}
{{- end -}}

{{/* The labels that set a cell's gateways apart: on its pods (and selectors), and with its pool on its Service. */}}
{{- define "fairshare.cellLabels" -}}
fairshare.io/cell: {{ . | quote }}
{{- end -}}
