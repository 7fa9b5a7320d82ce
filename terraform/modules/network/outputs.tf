output "vpc_id" {
  description = "ID of the region's VPC."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "Private subnet IDs, one per availability zone, in zone order: where the cluster and its nodes run."
  value       = [for az in var.availability_zones : aws_subnet.private[az].id]
}

output "public_subnet_ids" {
  description = "Public subnet IDs, one per availability zone, in zone order: for internet-facing load balancers."
  value       = [for az in var.availability_zones : aws_subnet.public[az].id]
}

output "private_subnet_cidrs" {
  description = "CIDR of each private subnet, keyed by availability zone."
  value       = { for az, s in aws_subnet.private : az => s.cidr_block }
}

output "nat_gateway_ids" {
  description = "NAT gateway ID per zone that has one (every zone by default)."
  value       = { for az, n in aws_nat_gateway.this : az => n.id }
}

output "vpc_endpoint_ids" {
  description = "VPC endpoint ID per service (s3 gateway and the interface endpoints)."
  value       = merge({ for s, e in aws_vpc_endpoint.interface : s => e.id }, { for e in aws_vpc_endpoint.s3 : "s3" => e.id })
}
