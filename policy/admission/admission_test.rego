package fairshare.admission_test

import data.fairshare.admission

# Fixtures: a GPU Deployment that passes every rule, in a namespace with a GPU quota, and a tenant
# namespace with its quota, limits and default deny.

gpu_container := {
	"name": "runtime",
	"image": "ghcr.io/fairshare/runtime:0.1.0-cuda",
	"resources": {"limits": {"nvidia.com/gpu": 1}, "requests": {"nvidia.com/gpu": 1}},
	"securityContext": {"privileged": false},
}

gpu_pod_spec := {
	"nodeSelector": {"fairshare.io/pool": "gpu-small"},
	"tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
	"containers": [gpu_container],
}

deployment(spec) := {
	"kind": "Deployment",
	"metadata": {"name": "embedder-v1", "namespace": "fairshare"},
	"spec": {"template": {"spec": spec}},
}

platform_quota := {
	"kind": "ResourceQuota",
	"metadata": {"name": "fairshare-platform", "namespace": "fairshare"},
	"spec": {"hard": {"requests.nvidia.com/gpu": "2"}},
}

tenant_ns := {"kind": "Namespace", "metadata": {"name": "tenant-acme", "labels": {"fairshare.io/tenant": "acme"}}}

tenant_quota := {
	"kind": "ResourceQuota",
	"metadata": {"name": "tenant-quota", "namespace": "tenant-acme"},
	"spec": {"hard": {"requests.nvidia.com/gpu": "4"}},
}

tenant_limits := {"kind": "LimitRange", "metadata": {"name": "tenant-limits", "namespace": "tenant-acme"}, "spec": {}}

default_deny := {
	"kind": "NetworkPolicy",
	"metadata": {"name": "default-deny", "namespace": "tenant-acme"},
	"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
}

good := [deployment(gpu_pod_spec), platform_quota, tenant_ns, tenant_quota, tenant_limits, default_deny]

rules(manifests) := {v.rule | some v in admission.violations with input as {"manifests": manifests}}

test_compliant_set_passes if {
	count(admission.violations) == 0 with input as {"manifests": good}
}

test_cpu_pod_needs_no_toleration_pool_or_quota if {
	cpu := {"name": "c", "image": "ghcr.io/fairshare/runtime:0.1.0-cpu", "resources": {"limits": {"cpu": "1"}}}
	pod := {"kind": "Pod", "metadata": {"name": "p", "namespace": "elsewhere"}, "spec": {"containers": [cpu]}}
	rules([pod]) == set()
}

test_zero_gpu_request_is_no_gpu_pod if {
	c := object.union(object.remove(gpu_container, ["resources"]), {"resources": {"limits": {"nvidia.com/gpu": "0"}}})
	rules([deployment({"containers": [c]})]) == set()
}

test_gpu_pod_without_toleration_is_denied if {
	spec := object.remove(gpu_pod_spec, ["tolerations"])
	rules([deployment(spec), platform_quota]) == {"gpu-pod-tolerates-gpu-taint"}
}

test_gpu_pod_with_other_taint_value_is_denied if {
	spec := object.union(gpu_pod_spec, {"tolerations": [{"key": "nvidia.com/gpu", "value": "absent", "effect": "NoSchedule"}]})
	rules([deployment(spec), platform_quota]) == {"gpu-pod-tolerates-gpu-taint"}
}

test_gpu_toleration_with_exists_operator_is_allowed if {
	spec := object.union(gpu_pod_spec, {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]})
	rules([deployment(spec), platform_quota]) == set()
}

test_gpu_pod_without_pool_is_denied if {
	spec := object.remove(gpu_pod_spec, ["nodeSelector"])
	rules([deployment(spec), platform_quota]) == {"gpu-pod-selects-gpu-pool"}
}

test_gpu_pod_without_quota_is_denied if {
	rules([deployment(gpu_pod_spec)]) == {"gpu-pod-namespace-has-quota"}
}

test_gpu_pod_with_quota_without_gpu_line_is_denied if {
	cpu_quota := object.union(object.remove(platform_quota, ["spec"]), {"spec": {"hard": {"requests.cpu": "8"}}})
	rules([deployment(gpu_pod_spec), cpu_quota]) == {"gpu-pod-namespace-has-quota"}
}

test_gpu_request_without_limit_counts if {
	c := object.union(object.remove(gpu_container, ["resources"]), {"resources": {"requests": {"nvidia.com/gpu": 1}}})
	spec := object.remove(object.union(gpu_pod_spec, {"containers": [c]}), ["tolerations"])
	rules([deployment(spec), platform_quota]) == {"gpu-pod-tolerates-gpu-taint"}
}

test_gpu_cronjob_is_checked if {
	job := {
		"kind": "CronJob",
		"metadata": {"name": "nightly", "namespace": "batch"},
		"spec": {"jobTemplate": {"spec": {"template": {"spec": object.remove(gpu_pod_spec, ["nodeSelector"])}}}},
	}
	violations := admission.violations with input as {"manifests": [job]}
	{v.rule | some v in violations} == {"gpu-pod-selects-gpu-pool", "gpu-pod-namespace-has-quota"}
	some v in violations
	v.subject == "CronJob/batch/nightly"
	v.field == "spec.jobTemplate.spec.template.spec.nodeSelector"
}

test_privileged_container_is_denied if {
	c := object.union(gpu_container, {"securityContext": {"privileged": true}})
	violations := admission.violations with input as {"manifests": [deployment(object.union(gpu_pod_spec, {"containers": [c]})), platform_quota]}
	[v] := [x | some x in violations]
	v.rule == "no-privileged-containers"
	v.subject == "Deployment/fairshare/embedder-v1"
	v.field == "spec.template.spec.containers[runtime].securityContext.privileged"
}

test_privileged_init_container_is_denied if {
	init := {"name": "setup", "image": "ghcr.io/fairshare/tools:1", "securityContext": {"privileged": true}}
	spec := object.union(gpu_pod_spec, {"initContainers": [init]})
	violations := admission.violations with input as {"manifests": [deployment(spec), platform_quota]}
	[v] := [x | some x in violations]
	v.field == "spec.template.spec.initContainers[setup].securityContext.privileged"
}

test_foreign_registry_is_denied if {
	c := object.union(gpu_container, {"image": "quay.io/someone/runtime:latest"})
	violations := admission.violations with input as {"manifests": [deployment(object.union(gpu_pod_spec, {"containers": [c]})), platform_quota]}
	[v] := [x | some x in violations]
	v.rule == "image-from-allowed-registry"
	contains(v.message, "quay.io/someone/runtime:latest")
}

test_unqualified_image_is_denied if {
	# "envoyproxy/envoy" means docker.io to a kubelet, but only fully named images are allowed.
	c := object.union(gpu_container, {"image": "envoyproxy/envoy:v1.40.0"})
	rules([deployment(object.union(gpu_pod_spec, {"containers": [c]})), platform_quota]) == {"image-from-allowed-registry"}
}

test_private_ecr_and_mirrors_are_allowed if {
	images := [
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com/fairshare/runtime:0.1.0",
		"docker.io/envoyproxy/envoy:v1.40.0",
		"public.ecr.aws/docker/library/redis:7.4.2-alpine",
	]
	every image in images {
		c := object.union(gpu_container, {"image": image})
		# Registries only: a Redis image brings the Redis rules with it (redis-requires-auth).
		not "image-from-allowed-registry" in rules([deployment(object.union(gpu_pod_spec, {"containers": [c]})), platform_quota])
	}
}

test_tenant_namespace_without_quota_is_denied if {
	rules([tenant_ns, tenant_limits, default_deny]) == {"tenant-namespace-has-resource-quota"}
}

test_tenant_namespace_without_limit_range_is_denied if {
	rules([tenant_ns, tenant_quota, default_deny]) == {"tenant-namespace-has-limit-range"}
}

test_tenant_namespace_without_network_policy_is_denied if {
	violations := admission.violations with input as {"manifests": [tenant_ns, tenant_quota, tenant_limits]}
	[v] := [x | some x in violations]
	v.rule == "tenant-namespace-has-default-deny"
	v.subject == "Namespace/tenant-acme"
}

test_network_policy_that_allows_is_no_default_deny if {
	allow := object.union(default_deny, {"spec": {"ingress": [{"from": [{"podSelector": {}}]}]}})
	rules([tenant_ns, tenant_quota, tenant_limits, allow]) == {"tenant-namespace-has-default-deny"}
}

test_ingress_only_deny_is_no_default_deny if {
	ingress_only := object.union(default_deny, {"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
	rules([tenant_ns, tenant_quota, tenant_limits, ingress_only]) == {"tenant-namespace-has-default-deny"}
}

test_objects_in_other_namespaces_do_not_count if {
	elsewhere := object.union(tenant_quota, {"metadata": {"namespace": "tenant-other"}})
	rules([tenant_ns, elsewhere, tenant_limits, default_deny]) == {"tenant-namespace-has-resource-quota"}
}

test_namespace_without_tenant_label_is_not_a_tenant_namespace if {
	rules([{"kind": "Namespace", "metadata": {"name": "monitoring"}}]) == set()
}

# Hardening: runtimes on mutual TLS, Redis and OPA with auth, TLS on 443, drain behind a load balancer,
# real digests.

fairshare_labels(component) := {"app.kubernetes.io/name": "fairshare", "app.kubernetes.io/component": component}

labelled(component, spec) := {
	"kind": "Deployment",
	"metadata": {"name": component, "namespace": "fairshare"},
	"spec": {"template": {"metadata": {"labels": fairshare_labels(component)}, "spec": spec}},
}

runtime_with(args) := labelled("inference", {"containers": [{
	"name": "runtime",
	"image": "ghcr.io/fairshare/runtime:0.1.0-cpu",
	"args": array.concat(["--region", "us-east-1"], args),
}]})

test_runtime_with_tls_dir_passes if {
	rules([runtime_with(["--tls-dir", "/etc/fairshare/tls"])]) == set()
}

test_runtime_with_tls_files_passes if {
	rules([runtime_with(["--tls-cert=/t/c", "--tls-key", "/t/k", "--tls-client-ca", "/t/ca"])]) == set()
}

test_runtime_without_mtls_is_denied if {
	rules([runtime_with([])]) == {"runtime-requires-mutual-tls"}
}

test_runtime_with_half_the_tls_files_is_denied if {
	rules([runtime_with(["--tls-cert", "/t/c", "--tls-key", "/t/k"])]) == {"runtime-requires-mutual-tls"}
}

control_plane_with(args) := labelled("control-plane", {"containers": [
	{
		"name": "control-plane",
		"image": "ghcr.io/fairshare/control-plane:0.1.0",
		"command": ["fairshare"],
		"args": array.concat(["serve", "--xds-port", "18000"], args),
	},
	{"name": "opa", "image": "docker.io/openpolicyagent/opa:1.4.2-static", "args": ["run", "--server", "--addr", "127.0.0.1:8181"]},
]})

test_control_plane_with_tls_dir_passes if {
	rules([control_plane_with(["--tls-dir", "/etc/fairshare/controlplane-tls"])]) == set()
}

test_control_plane_without_tls_is_denied if {
	rules([control_plane_with([])]) == {"control-plane-requires-mutual-tls"}
}

test_redis_url_without_password_passes if {
	rules([control_plane_with(["--tls-dir", "/t", "--ratelimit-redis-url", "redis://fairshare@fairshare-redis:6379/0"])]) == set()
}

test_redis_password_in_arguments_is_denied if {
	rules([control_plane_with(["--tls-dir", "/t", "--ratelimit-redis-url", "redis://fairshare:$(REDIS_PASSWORD)@fairshare-redis:6379/0"])]) == {"no-password-in-arguments"}
}

redis_with(args) := deployment({"containers": [{
	"name": "redis",
	"image": "public.ecr.aws/docker/library/redis:7.4.2-alpine",
	"args": args,
}]})

test_redis_with_acl_file_passes if {
	rules([redis_with(["--aclfile", "/etc/redis/users.acl", "--protected-mode", "yes"])]) == set()
}

test_redis_without_auth_is_denied if {
	rules([redis_with(["--save", ""])]) == {"redis-requires-auth"}
}

test_redis_with_protected_mode_off_is_denied if {
	rules([redis_with(["--requirepass", "x", "--protected-mode", "no"])]) == {"redis-requires-auth"}
}

opa_with(args) := deployment({"containers": [{
	"name": "opa",
	"image": "docker.io/openpolicyagent/opa:1.4.2-static",
	"args": array.concat(["run", "--server"], args),
}]})

test_opa_with_token_auth_passes if {
	rules([opa_with(["--addr", "0.0.0.0:8181", "--authentication=token", "--authorization=basic"])]) == set()
}

test_opa_on_loopback_passes if {
	rules([opa_with(["--addr", "127.0.0.1:8181"])]) == set()
}

test_opa_open_on_the_network_is_denied if {
	rules([opa_with(["--addr", "0.0.0.0:8181"])]) == {"opa-requires-auth"}
}

test_opa_with_authentication_but_no_authorization_is_denied if {
	rules([opa_with(["--addr", ":8181", "--authentication=token"])]) == {"opa-requires-auth"}
}

service(port, annotations) := typed_service("LoadBalancer", port, annotations)

typed_service(type, port, annotations) := {
	"kind": "Service",
	"metadata": {"name": "fairshare-gateway", "namespace": "fairshare", "annotations": annotations},
	"spec": {"type": type, "ports": [{"name": "https", "port": port}]},
}

acm := "arn:aws:acm:us-east-1:123456789012:certificate/abc"

test_https_port_with_certificate_passes if {
	rules([service(443, {"service.beta.kubernetes.io/aws-load-balancer-ssl-cert": acm})]) == set()
	rules([service(443, {
		"service.beta.kubernetes.io/aws-load-balancer-ssl-cert": acm,
		"service.beta.kubernetes.io/aws-load-balancer-ssl-ports": "443",
	})]) == set()
}

test_plaintext_port_80_passes if {
	rules([service(80, {})]) == set()
}

test_https_port_without_tls_is_denied if {
	rules([service(443, {})]) == {"https-port-terminates-tls"}
}

test_https_port_of_a_node_port_without_tls_is_denied if {
	rules([typed_service("NodePort", 443, {})]) == {"https-port-terminates-tls"}
}

# A ClusterIP Service is reached from inside the cluster only (an admission webhook, over its pod's own TLS).
test_https_port_of_a_cluster_ip_service_passes if {
	rules([typed_service("ClusterIP", 443, {})]) == set()
	rules([{
		"kind": "Service",
		"metadata": {"name": "webhook", "namespace": "kube-system"},
		"spec": {"ports": [{"port": 443, "targetPort": 9443}]},
	}]) == set()
}

test_https_port_left_out_of_the_tls_ports_is_denied if {
	rules([service(443, {
		"service.beta.kubernetes.io/aws-load-balancer-ssl-cert": acm,
		"service.beta.kubernetes.io/aws-load-balancer-ssl-ports": "8443",
	})]) == {"https-port-terminates-tls"}
}

load_balancer := {
	"kind": "Service",
	"metadata": {"name": "fairshare-gateway", "namespace": "fairshare"},
	"spec": {"type": "LoadBalancer", "selector": fairshare_labels("gateway"), "ports": [{"port": 80}]},
}

gateway_container := {"name": "envoy", "image": "docker.io/envoyproxy/envoy:v1.40.0"}

test_load_balanced_pod_with_prestop_passes if {
	c := object.union(gateway_container, {"lifecycle": {"preStop": {"exec": {"command": ["drain"]}}}})
	rules([load_balancer, labelled("gateway", {"containers": [c]})]) == set()
}

test_pod_behind_no_load_balancer_needs_no_prestop if {
	rules([labelled("gateway", {"containers": [gateway_container]})]) == set()
}

test_load_balanced_pod_without_prestop_is_denied if {
	rules([load_balancer, labelled("gateway", {"containers": [gateway_container]})]) == {"load-balanced-pod-drains-on-stop"}
}

pinned(digest) := deployment({"containers": [{"name": "c", "image": sprintf("ghcr.io/fairshare/runtime:0.1.0@%s", [digest])}]})

test_real_digest_passes if {
	rules([pinned("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]) == set()
}

test_zero_digest_is_denied if {
	rules([pinned(concat("", ["sha256:", concat("", [x | some _ in numbers.range(1, 64); x := "0"])]))]) == {"image-digest-is-real"}
}

test_malformed_digest_is_denied if {
	rules([pinned("sha256:abc")]) == {"image-digest-is-real"}
}
