# Admission checks over Kubernetes manifests (the rendered Helm chart, or anything bound for a cluster).
#
# Input: {"manifests": [<Kubernetes object>, ...]}, every object of one install; namespace-level rules
# (quotas, network policies) look across the whole set, so pass everything that is applied together.
# Output: `violations`, a set of {rule, subject, field, message}; empty means admitted.
package fairshare.admission

# Tunables, agreed with the Terraform node groups and the release pipeline.

# Image references must start with one of these: a registry host and the path under it we control or mirror.
allowed_image_prefixes := [
	"ghcr.io/fairshare/",
	"public.ecr.aws/docker/library/",
	"docker.io/envoyproxy/",
	"docker.io/openpolicyagent/",
]

# Or come from the platform's private ECR in any account and region.
allowed_image_pattern := `^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/`

gpu_resource := "nvidia.com/gpu"

gpu_taint := {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}

pool_label := "fairshare.io/pool"

tenant_label := "fairshare.io/tenant"

workload_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

# Where each manifest keeps its pod spec.

pods contains p if {
	some m in input.manifests
	workload_kinds[m.kind]
	p := {"manifest": m, "spec": m.spec.template.spec, "path": "spec.template.spec"}
}

pods contains p if {
	some m in input.manifests
	m.kind == "CronJob"
	p := {"manifest": m, "spec": m.spec.jobTemplate.spec.template.spec, "path": "spec.jobTemplate.spec.template.spec"}
}

pods contains p if {
	some m in input.manifests
	m.kind == "Pod"
	p := {"manifest": m, "spec": m.spec, "path": "spec"}
}

namespace_of(m) := object.get(m, ["metadata", "namespace"], "default")

subject(m) := sprintf("%s/%s/%s", [m.kind, namespace_of(m), m.metadata.name])

containers(spec) := array.concat(object.get(spec, "initContainers", []), object.get(spec, "containers", []))

container_kind(spec, c) := "initContainers" if {
	some i in object.get(spec, "initContainers", [])
	i.name == c.name
} else := "containers"

# Quantities arrive as numbers or strings ("1"); a zero request is no GPU request.
requests_gpus(c) if to_number(object.get(c, ["resources", "limits", gpu_resource], 0)) > 0

requests_gpus(c) if to_number(object.get(c, ["resources", "requests", gpu_resource], 0)) > 0

gpu_pod(spec) if {
	some c in containers(spec)
	requests_gpus(c)
}

tolerates_gpu_taint(spec) if {
	some t in object.get(spec, "tolerations", [])
	t.key == gpu_taint.key
	object.get(t, "operator", "Equal") == "Exists"
	object.get(t, "effect", gpu_taint.effect) == gpu_taint.effect
}

tolerates_gpu_taint(spec) if {
	some t in object.get(spec, "tolerations", [])
	t.key == gpu_taint.key
	object.get(t, "operator", "Equal") == "Equal"
	object.get(t, "value", "") == gpu_taint.value
	object.get(t, "effect", gpu_taint.effect) == gpu_taint.effect
}

quota_namespaces contains namespace_of(m) if {
	some m in input.manifests
	m.kind == "ResourceQuota"
}

gpu_quota_namespaces contains namespace_of(m) if {
	some m in input.manifests
	m.kind == "ResourceQuota"
	object.get(m, ["spec", "hard", sprintf("requests.%s", [gpu_resource])], null) != null
}

limit_range_namespaces contains namespace_of(m) if {
	some m in input.manifests
	m.kind == "LimitRange"
}

# A default deny selects every pod and denies both directions, with no rule letting anything through.
default_deny_namespaces contains namespace_of(m) if {
	some m in input.manifests
	m.kind == "NetworkPolicy"
	object.get(m.spec, "podSelector", {}) == {}
	types := {t | some t in object.get(m.spec, "policyTypes", [])}
	types == {"Ingress", "Egress"}
	count(object.get(m.spec, "ingress", [])) == 0
	count(object.get(m.spec, "egress", [])) == 0
}

tenant_namespaces contains m if {
	some m in input.manifests
	m.kind == "Namespace"
	object.get(m, ["metadata", "labels", tenant_label], "") != ""
}

image_allowed(image) if {
	some prefix in allowed_image_prefixes
	startswith(image, prefix)
}

image_allowed(image) if regex.match(allowed_image_pattern, image)

# METADATA
# title: GPU pods tolerate the GPU taint
# description: GPU nodes are tainted so that nothing else lands on them; a GPU pod without the toleration never schedules.
violations contains v if {
	some p in pods
	gpu_pod(p.spec)
	not tolerates_gpu_taint(p.spec)
	v := {
		"rule": "gpu-pod-tolerates-gpu-taint",
		"subject": subject(p.manifest),
		"field": sprintf("%s.tolerations", [p.path]),
		"message": sprintf(
			"the pod requests %s but does not tolerate the GPU nodes' taint %s=%s:%s, so it can never be scheduled",
			[gpu_resource, gpu_taint.key, gpu_taint.value, gpu_taint.effect],
		),
	}
}

# METADATA
# title: GPU pods select a GPU pool
# description: A GPU pod must name its node pool, so it lands on the accelerator its model was sized for.
violations contains v if {
	some p in pods
	gpu_pod(p.spec)
	object.get(p.spec, ["nodeSelector", pool_label], "") == ""
	v := {
		"rule": "gpu-pod-selects-gpu-pool",
		"subject": subject(p.manifest),
		"field": sprintf("%s.nodeSelector", [p.path]),
		"message": sprintf(
			"the pod requests %s but its nodeSelector has no %s label, so it may land on any GPU node pool",
			[gpu_resource, pool_label],
		),
	}
}

# METADATA
# title: GPU pods sit in a namespace with a GPU quota
# description: Without a quota on requests.nvidia.com/gpu, one namespace can take every GPU of the cluster.
violations contains v if {
	some p in pods
	gpu_pod(p.spec)
	ns := namespace_of(p.manifest)
	not gpu_quota_namespaces[ns]
	v := {
		"rule": "gpu-pod-namespace-has-quota",
		"subject": subject(p.manifest),
		"field": "metadata.namespace",
		"message": sprintf(
			"the pod requests %s in namespace %q, which has no ResourceQuota limiting requests.%s",
			[gpu_resource, ns, gpu_resource],
		),
	}
}

# METADATA
# title: No privileged containers
# description: A privileged container owns its node, and with it every tenant's data on that node.
violations contains v if {
	some p in pods
	some c in containers(p.spec)
	object.get(c, ["securityContext", "privileged"], false) == true
	v := {
		"rule": "no-privileged-containers",
		"subject": subject(p.manifest),
		"field": sprintf("%s.%s[%s].securityContext.privileged", [p.path, container_kind(p.spec, c), c.name]),
		"message": sprintf("container %q is privileged; no platform workload needs host access", [c.name]),
	}
}

# METADATA
# title: Images come from allowed registries
# description: Only images the release pipeline built or mirrored run in the cluster.
violations contains v if {
	some p in pods
	some c in containers(p.spec)
	not image_allowed(c.image)
	v := {
		"rule": "image-from-allowed-registry",
		"subject": subject(p.manifest),
		"field": sprintf("%s.%s[%s].image", [p.path, container_kind(p.spec, c), c.name]),
		"message": sprintf(
			"container %q uses image %q, which is not from an allowed registry (allowed: %s, or the platform's private ECR)",
			[c.name, c.image, concat(", ", allowed_image_prefixes)],
		),
	}
}

# METADATA
# title: Tenant namespaces have a ResourceQuota
# description: A tenant's dedicated capacity is bounded by its quota; without one it can grow into others'.
violations contains v if {
	some ns in tenant_namespaces
	not quota_namespaces[ns.metadata.name]
	v := {
		"rule": "tenant-namespace-has-resource-quota",
		"subject": sprintf("Namespace/%s", [ns.metadata.name]),
		"field": "ResourceQuota",
		"message": sprintf("tenant namespace %q has no ResourceQuota, so its GPU, CPU and memory use is unbounded", [ns.metadata.name]),
	}
}

# METADATA
# title: Tenant namespaces have a LimitRange
# description: Without defaults, a container with no requests escapes the quota's accounting.
violations contains v if {
	some ns in tenant_namespaces
	not limit_range_namespaces[ns.metadata.name]
	v := {
		"rule": "tenant-namespace-has-limit-range",
		"subject": sprintf("Namespace/%s", [ns.metadata.name]),
		"field": "LimitRange",
		"message": sprintf("tenant namespace %q has no LimitRange, so containers without requests run unbounded", [ns.metadata.name]),
	}
}

# METADATA
# title: Tenant namespaces deny traffic by default
# description: A tenant's pods are reachable only through rules that say so, never by default.
violations contains v if {
	some ns in tenant_namespaces
	not default_deny_namespaces[ns.metadata.name]
	v := {
		"rule": "tenant-namespace-has-default-deny",
		"subject": sprintf("Namespace/%s", [ns.metadata.name]),
		"field": "NetworkPolicy",
		"message": sprintf(
			"tenant namespace %q has no default-deny NetworkPolicy (podSelector {} with policyTypes Ingress and Egress and no rules), so any pod can reach it",
			[ns.metadata.name],
		),
	}
}

# Platform roles, by the chart's labels (app.kubernetes.io/name: fairshare plus the component).

pod_labels(p) := object.get(p.manifest, ["spec", "template", "metadata", "labels"], object.get(p.manifest, ["metadata", "labels"], {}))

fairshare_component(p) := c if {
	labels := pod_labels(p)
	labels["app.kubernetes.io/name"] == "fairshare"
	c := labels["app.kubernetes.io/component"]
}

args_of(c) := array.concat(object.get(c, "command", []), object.get(c, "args", []))

# A flag given as `--flag value` or `--flag=value`.
flag_value(c, flag) := v if {
	args := args_of(c)
	some i, a in args
	a == flag
	v := args[i + 1]
} else := v if {
	some a in args_of(c)
	startswith(a, sprintf("%s=", [flag]))
	v := substring(a, count(flag) + 1, -1)
}

has_flag(c, flag) if flag_value(c, flag)

runtime_mtls_flags := ["--tls-cert", "--tls-key", "--tls-client-ca"]

serves_mutual_tls(c) if has_flag(c, "--tls-dir")

serves_mutual_tls(c) if {
	every f in runtime_mtls_flags {
		has_flag(c, f)
	}
}

# The image's repository name (the last path segment, without tag or digest).
image_name(image) := name if {
	no_digest := split(image, "@")[0]
	parts := split(no_digest, "/")
	last := parts[count(parts) - 1]
	name := split(last, ":")[0]
}

# METADATA
# title: Runtimes serve only over mutual TLS
# description: A runtime acts on the gateway's x-fairshare-* headers (tenant, PII rules); without mutual TLS any pod that reaches it can claim to be any tenant.
violations contains v if {
	some p in pods
	fairshare_component(p) == "inference"
	some c in p.spec.containers
	not serves_mutual_tls(c)
	v := {
		"rule": "runtime-requires-mutual-tls",
		"subject": subject(p.manifest),
		"field": sprintf("%s.containers[%s].args", [p.path, c.name]),
		"message": sprintf(
			"runtime container %q accepts traffic without mutual TLS: give it --tls-dir (or --tls-cert, --tls-key and --tls-client-ca) so only the gateway's client certificate is served",
			[c.name],
		),
	}
}

# The control plane's gRPC server container (not its OPA or git-sync sidecars).
serves_control_plane(c) if "serve" in object.get(c, "args", [])

# METADATA
# title: The control plane serves xDS and rate limits only over mutual TLS
# description: An xDS stream carries every tenant's routes and the token keys, and the rate-limit service spends any tenant's quota; in plaintext any pod can read the one and drain the other.
violations contains v if {
	some p in pods
	fairshare_component(p) == "control-plane"
	some c in p.spec.containers
	serves_control_plane(c)
	not has_flag(c, "--tls-dir")
	v := {
		"rule": "control-plane-requires-mutual-tls",
		"subject": subject(p.manifest),
		"field": sprintf("%s.containers[%s].args", [p.path, c.name]),
		"message": sprintf(
			"control-plane container %q serves xDS and the rate-limit service without mutual TLS: give it --tls-dir with its certificate (platform.yaml gateway.upstream_tls.control_plane)",
			[c.name],
		),
	}
}

# METADATA
# title: No passwords in container arguments
# description: Arguments show in the process list and in every read of the pod spec; a URL with user:password@ belongs in an environment variable from a Secret.
violations contains v if {
	some p in pods
	some c in containers(p.spec)
	some a in args_of(c)
	regex.match(`[a-z][a-z0-9+.-]*://[^/@:\s]*:[^/@\s]+@`, a)
	v := {
		"rule": "no-password-in-arguments",
		"subject": subject(p.manifest),
		"field": sprintf("%s.%s[%s].args", [p.path, container_kind(p.spec, c), c.name]),
		"message": sprintf("container %q has a URL with a password in its arguments: pass the password in an environment variable from a Secret (e.g. FAIRSHARE_REDIS_PASSWORD)", [c.name]),
	}
}

redis_authenticated(c) if has_flag(c, "--aclfile")

redis_authenticated(c) if has_flag(c, "--requirepass")

# METADATA
# title: Redis requires authentication
# description: The rate-limit counters decide who is refused; an open Redis lets any pod reset or inflate them.
violations contains v if {
	some p in pods
	some c in containers(p.spec)
	image_name(c.image) == "redis"
	not redis_authenticated(c)
	v := {
		"rule": "redis-requires-auth",
		"subject": subject(p.manifest),
		"field": sprintf("%s.%s[%s].args", [p.path, container_kind(p.spec, c), c.name]),
		"message": sprintf("redis container %q runs without authentication: give it --aclfile (users with passwords) or --requirepass", [c.name]),
	}
}

violations contains v if {
	some p in pods
	some c in containers(p.spec)
	image_name(c.image) == "redis"
	flag_value(c, "--protected-mode") == "no"
	v := {
		"rule": "redis-requires-auth",
		"subject": subject(p.manifest),
		"field": sprintf("%s.%s[%s].args", [p.path, container_kind(p.spec, c), c.name]),
		"message": sprintf("redis container %q turns protected mode off", [c.name]),
	}
}

opa_server(c) if {
	image_name(c.image) == "opa"
	some a in args_of(c)
	a in {"--server", "-s"}
}

loopback_only(addr) if startswith(addr, "localhost:")

loopback_only(addr) if startswith(addr, "127.0.0.1:")

opa_authenticated(c) if {
	flag_value(c, "--authentication") == "token"
	flag_value(c, "--authorization") == "basic"
}

opa_authenticated(c) if {
	# Only its own pod can reach it (a sidecar): every --addr is on loopback.
	addrs := [a | some i, x in args_of(c); x in {"--addr", "-a"}; a := args_of(c)[i + 1]]
	count(addrs) > 0
	every a in addrs {
		loopback_only(a)
	}
}

# METADATA
# title: OPA requires authentication
# description: Whoever can write to OPA's REST API rewrites the policies every tenant is held to.
violations contains v if {
	some p in pods
	some c in containers(p.spec)
	opa_server(c)
	not opa_authenticated(c)
	v := {
		"rule": "opa-requires-auth",
		"subject": subject(p.manifest),
		"field": sprintf("%s.%s[%s].args", [p.path, container_kind(p.spec, c), c.name]),
		"message": sprintf(
			"OPA server %q is reachable without authentication: run it with --authentication=token --authorization=basic, or listen on loopback only (--addr 127.0.0.1:PORT, a sidecar)",
			[c.name],
		),
	}
}

tls_cert_annotation := "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"

tls_ports_annotation := "service.beta.kubernetes.io/aws-load-balancer-ssl-ports"

# The AWS Load Balancer Controller terminates TLS on the ports listed (every port when none are).
terminates_tls(svc, port) if {
	annotations := object.get(svc, ["metadata", "annotations"], {})
	object.get(annotations, tls_cert_annotation, "") != ""
	listed := {trim_space(s) | some s in split(object.get(annotations, tls_ports_annotation, "*"), ",")}
	tls_port_listed(listed, port)
}

tls_port_listed(listed, _) if "*" in listed

tls_port_listed(listed, port) if sprintf("%d", [port.port]) in listed

tls_port_listed(listed, port) if object.get(port, "name", "") in listed

# What reaches outside the cluster. A ClusterIP Service's 443 (an admission webhook's, called by the API
# server over the TLS its pod serves) never has a load balancer to terminate TLS at.
exposed_outside(svc) if object.get(svc, ["spec", "type"], "ClusterIP") in {"LoadBalancer", "NodePort"}

# METADATA
# title: Port 443 terminates TLS
# description: Clients send bearer tokens to port 443 of a LoadBalancer or NodePort Service expecting TLS; a plaintext listener there sends them across the internet in clear.
violations contains v if {
	some svc in input.manifests
	svc.kind == "Service"
	exposed_outside(svc)
	some port in object.get(svc, ["spec", "ports"], [])
	port.port == 443
	not terminates_tls(svc, port)
	v := {
		"rule": "https-port-terminates-tls",
		"subject": subject(svc),
		"field": "metadata.annotations",
		"message": sprintf(
			"port 443 of service %q is plaintext: set %s to an ACM certificate ARN (and %s to include 443), so TLS terminates at the load balancer",
			[svc.metadata.name, tls_cert_annotation, tls_ports_annotation],
		),
	}
}

load_balancer_selectors contains {"namespace": namespace_of(svc), "selector": svc.spec.selector} if {
	some svc in input.manifests
	svc.kind == "Service"
	object.get(svc, ["spec", "type"], "ClusterIP") == "LoadBalancer"
	count(object.get(svc, ["spec", "selector"], {})) > 0
}

fronts_load_balancer(p) if {
	some s in load_balancer_selectors
	s.namespace == namespace_of(p.manifest)
	labels := pod_labels(p)
	every k, val in s.selector {
		labels[k] == val
	}
}

drains_on_stop(spec) if {
	some c in spec.containers
	object.get(c, ["lifecycle", "preStop"], null) != null
}

# METADATA
# title: Pods behind a load balancer drain before they stop
# description: Without a preStop drain, every scale-down or rollout resets the connections the pod holds, and the load balancer keeps sending it new ones until it deregisters the target.
violations contains v if {
	some p in pods
	fronts_load_balancer(p)
	not drains_on_stop(p.spec)
	v := {
		"rule": "load-balanced-pod-drains-on-stop",
		"subject": subject(p.manifest),
		"field": sprintf("%s.containers[].lifecycle.preStop", [p.path]),
		"message": "the pod fronts a LoadBalancer Service but no container has a preStop hook: it would reset its connections on every scale-down instead of draining them",
	}
}

image_digest(image) := d if {
	parts := split(image, "@")
	count(parts) == 2
	d := parts[1]
}

real_digest(d) if {
	regex.match(`^sha256:[0-9a-f]{64}$`, d)
	# A digest of one repeated character (all zeros) is a placeholder, not an image.
	count({ch | some ch in split(substring(d, 7, -1), "")}) > 1
}

# METADATA
# title: Images pinned by digest name a real digest
# description: A placeholder digest (all zeros) either never pulls or pins nothing the release pipeline recorded.
violations contains v if {
	some p in pods
	some c in containers(p.spec)
	d := image_digest(c.image)
	not real_digest(d)
	v := {
		"rule": "image-digest-is-real",
		"subject": subject(p.manifest),
		"field": sprintf("%s.%s[%s].image", [p.path, container_kind(p.spec, c), c.name]),
		"message": sprintf("container %q pins image %q to %q, which is a placeholder or not a sha256 digest: record the real digest or leave it out", [c.name, c.image, d]),
	}
}
