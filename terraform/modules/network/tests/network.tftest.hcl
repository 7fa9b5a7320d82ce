mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
}

variables {
  name               = "fairshare-eu-west-1"
  cidr_block         = "10.41.0.0/16"
  availability_zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  cluster_name       = "fairshare-eu-west-1"
}

run "one_private_and_one_public_subnet_per_zone" {
  command = plan

  assert {
    condition     = length(aws_subnet.private) == 3 && length(aws_subnet.public) == 3
    error_message = "expected one private and one public subnet per zone"
  }

  assert {
    condition     = aws_subnet.private["eu-west-1a"].cidr_block == "10.41.0.0/19" && aws_subnet.public["eu-west-1a"].cidr_block == "10.41.192.0/22"
    error_message = "subnet ranges moved: private /19s from the bottom, public /22s from 10.41.192.0"
  }

  assert {
    condition     = length(distinct(concat(values(output.private_subnet_cidrs), [for s in aws_subnet.public : s.cidr_block]))) == 6
    error_message = "subnet ranges must not repeat"
  }

  assert {
    condition     = aws_subnet.private["eu-west-1b"].tags["kubernetes.io/role/internal-elb"] == "1"
    error_message = "private subnets must be tagged for internal load balancers"
  }

  assert {
    condition     = toset(keys(aws_nat_gateway.this)) == toset(["eu-west-1a", "eu-west-1b", "eu-west-1c"])
    error_message = "one NAT gateway per zone by default, each in its own zone's public subnet"
  }

  assert {
    condition     = length(aws_route_table.private) == 3 && toset(keys(aws_route.private_nat)) == toset(keys(aws_nat_gateway.this))
    error_message = "each zone has its own private route table and default route (through that zone's NAT gateway)"
  }

  assert {
    condition     = aws_vpc_endpoint.s3[0].vpc_endpoint_type == "Gateway" && aws_vpc_endpoint.s3[0].service_name == "com.amazonaws.eu-west-1.s3"
    error_message = "model and image-layer pulls go through an S3 gateway endpoint"
  }

  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["sts", "ecr.api", "ecr.dkr"]) && alltrue([for e in aws_vpc_endpoint.interface : e.private_dns_enabled])
    error_message = "STS and ECR (API and registry) are reached through private interface endpoints"
  }
}

run "one_shared_nat_gateway_when_asked" {
  command = plan

  variables {
    nat_gateway_per_az = false
  }

  assert {
    condition     = keys(aws_nat_gateway.this) == ["eu-west-1a"] && length(aws_route.private_nat) == 3
    error_message = "nat_gateway_per_az = false keeps one NAT gateway, in the first zone, for every private route table"
  }
}

run "nat_gateway_can_be_left_out" {
  command = plan

  variables {
    enable_nat_gateway = false
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 0 && length(aws_route.private_nat) == 0 && length(aws_eip.nat) == 0
    error_message = "no NAT gateway, route or address when disabled"
  }

  assert {
    condition     = length(aws_vpc_endpoint.interface) == 3 && length(aws_vpc_endpoint.s3) == 1
    error_message = "a region without NAT still reaches S3, STS and ECR through the endpoints"
  }
}

run "a_single_zone_is_refused" {
  command = plan

  variables {
    availability_zones = ["eu-west-1a"]
  }

  expect_failures = [var.availability_zones]
}

run "a_bad_cidr_is_refused" {
  command = plan

  variables {
    cidr_block = "10.41.0.0/24"
  }

  expect_failures = [var.cidr_block]
}
