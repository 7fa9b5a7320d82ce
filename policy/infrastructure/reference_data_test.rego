package fairshare.infrastructure_test

# Tests of reference_data.rego: the allocatable formula on known shapes, and tables a rule can rely on.

test_allocatable_after_eks_reservations if {
	# g6.xlarge: 4 vCPU less 80m for the kubelet and 250m for the node's DaemonSets; 16 GiB less
	# 11 MiB x 58 pods + 255 MiB, the 100 MiB eviction threshold and 512 MiB of DaemonSets.
	data.fairshare.infrastructure.allocatable("g6.xlarge") == {"gpus": 1, "cpu_m": 3670, "memory_mib": 14879}
	data.fairshare.infrastructure.allocatable("g6.12xlarge") == {"gpus": 4, "cpu_m": 47560, "memory_mib": 193167}
}

test_an_unknown_instance_type_has_no_allocatable if {
	not data.fairshare.infrastructure.allocatable("m6i.large")
}

test_every_gpu_instance_type_has_gpus_and_room_for_a_pod if {
	every t, s in data.fairshare.infrastructure.gpu_instance_types {
		s.gpus > 0
		a := data.fairshare.infrastructure.allocatable(t)
		a.cpu_m > 0
		a.memory_mib > 0
	}
}

test_every_support_date_is_a_date if {
	every _, day in data.fairshare.infrastructure.kubernetes_standard_support {
		time.parse_rfc3339_ns(sprintf("%sT00:00:00Z", [day]))
	}
}
