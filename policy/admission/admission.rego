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
