# METADATA
# title: Infrastructure reference data
# description: |
#   Facts the infrastructure rules compare a plan against, kept by hand beside the rules that read them:
#   EKS's Kubernetes versions in standard support, and what GPU instance types offer.
package fairshare.infrastructure

# Kubernetes minor versions in EKS standard support, each with its last day there (docs.aws.amazon.com/eks,
# "Kubernetes version lifecycle": 14 months of standard support from release). A version missing from the
# table, or past its date, is refused: add a version when EKS releases it, drop it when its date passes.
kubernetes_standard_support := {
	"1.33": "2026-07-29",
	"1.34": "2026-12-02",
	"1.35": "2027-03-27",
}

# GPU instance types: vCPUs, memory (GiB), GPUs, and the pods the VPC CNI fits on one (amazon-eks-ami
# eni-max-pods.txt), from which EKS derives what it reserves for the kubelet (allocatable below).
gpu_instance_types := {
	"g4dn.xlarge": {"vcpu": 4, "memory_gib": 16, "gpus": 1, "max_pods": 29},
	"g4dn.2xlarge": {"vcpu": 8, "memory_gib": 32, "gpus": 1, "max_pods": 29},
	"g4dn.4xlarge": {"vcpu": 16, "memory_gib": 64, "gpus": 1, "max_pods": 29},
	"g4dn.8xlarge": {"vcpu": 32, "memory_gib": 128, "gpus": 1, "max_pods": 58},
	"g4dn.12xlarge": {"vcpu": 48, "memory_gib": 192, "gpus": 4, "max_pods": 234},
	"g4dn.16xlarge": {"vcpu": 64, "memory_gib": 256, "gpus": 1, "max_pods": 58},
	"g4dn.metal": {"vcpu": 96, "memory_gib": 384, "gpus": 8, "max_pods": 737},
	"g5.xlarge": {"vcpu": 4, "memory_gib": 16, "gpus": 1, "max_pods": 58},
	"g5.2xlarge": {"vcpu": 8, "memory_gib": 32, "gpus": 1, "max_pods": 58},
	"g5.4xlarge": {"vcpu": 16, "memory_gib": 64, "gpus": 1, "max_pods": 234},
	"g5.8xlarge": {"vcpu": 32, "memory_gib": 128, "gpus": 1, "max_pods": 234},
	"g5.12xlarge": {"vcpu": 48, "memory_gib": 192, "gpus": 4, "max_pods": 737},
	"g5.16xlarge": {"vcpu": 64, "memory_gib": 256, "gpus": 1, "max_pods": 234},
	"g5.24xlarge": {"vcpu": 96, "memory_gib": 384, "gpus": 4, "max_pods": 737},
	"g5.48xlarge": {"vcpu": 192, "memory_gib": 768, "gpus": 8, "max_pods": 345},
	"g6.xlarge": {"vcpu": 4, "memory_gib": 16, "gpus": 1, "max_pods": 58},
	"g6.2xlarge": {"vcpu": 8, "memory_gib": 32, "gpus": 1, "max_pods": 58},
	"g6.4xlarge": {"vcpu": 16, "memory_gib": 64, "gpus": 1, "max_pods": 234},
	"g6.8xlarge": {"vcpu": 32, "memory_gib": 128, "gpus": 1, "max_pods": 234},
	"g6.12xlarge": {"vcpu": 48, "memory_gib": 192, "gpus": 4, "max_pods": 234},
	"g6.16xlarge": {"vcpu": 64, "memory_gib": 256, "gpus": 1, "max_pods": 737},
	"g6.24xlarge": {"vcpu": 96, "memory_gib": 384, "gpus": 4, "max_pods": 737},
	"g6.48xlarge": {"vcpu": 192, "memory_gib": 768, "gpus": 8, "max_pods": 737},
	"g6e.xlarge": {"vcpu": 4, "memory_gib": 32, "gpus": 1, "max_pods": 58},
	"g6e.2xlarge": {"vcpu": 8, "memory_gib": 64, "gpus": 1, "max_pods": 58},
	"g6e.4xlarge": {"vcpu": 16, "memory_gib": 128, "gpus": 1, "max_pods": 234},
	"g6e.8xlarge": {"vcpu": 32, "memory_gib": 256, "gpus": 1, "max_pods": 234},
	"g6e.12xlarge": {"vcpu": 48, "memory_gib": 384, "gpus": 4, "max_pods": 292},
	"g6e.16xlarge": {"vcpu": 64, "memory_gib": 512, "gpus": 1, "max_pods": 737},
	"g6e.24xlarge": {"vcpu": 96, "memory_gib": 768, "gpus": 4, "max_pods": 492},
	"g6e.48xlarge": {"vcpu": 192, "memory_gib": 1536, "gpus": 8, "max_pods": 492},
	"p4d.24xlarge": {"vcpu": 96, "memory_gib": 1152, "gpus": 8, "max_pods": 737},
	"p5.48xlarge": {"vcpu": 192, "memory_gib": 2048, "gpus": 8, "max_pods": 100},
}

# What the node's own DaemonSets (VPC CNI, kube-proxy, Pod Identity agent) request beside a replica.
node_daemonset_reserve := {"cpu_m": 250, "memory_mib": 512}

# Allocatable after EKS's kubelet reservations (the EKS AMIs' formula): CPU 6% of the first core, 1% of
# the second, 0.5% of the next two and 0.25% of the rest; memory 11 MiB per pod plus 255 MiB, and the
# 100 MiB hard eviction threshold. The node's DaemonSets are taken off too.
allocatable(t) := {"gpus": s.gpus, "cpu_m": cpu, "memory_mib": memory} if {
	s := gpu_instance_types[t]
	reserved_cpu_m := ((60 + 10) + 5 * min([2, max([0, s.vcpu - 2])])) + 2.5 * max([0, s.vcpu - 4])
	cpu := ((1000 * s.vcpu) - reserved_cpu_m) - node_daemonset_reserve.cpu_m
	memory := (((1024 * s.memory_gib) - ((11 * s.max_pods) + 255)) - 100) - node_daemonset_reserve.memory_mib
}
