"""Terraform's `chart_inputs` output as a values file for helm/fairshare, as `addons-values` carries
`cluster_addons_values` to the add-ons chart: the runtimes' and the control plane's IRSA role ARNs, the
tenants' pseudonymisation-key prefix and the audit bucket the control planes ship their audit trail to,
from the region Terraform built, so no install goes without them.

    terraform output -json chart_inputs > chart-inputs.json
    python -m xds_server.deploy.chart_inputs chart-inputs.json --region eu-west-1 -o terraform.yaml

`make chart-install` runs both and passes the file between the generated spec and the operator's values.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from xds_server.deploy.helm_values import dump_values

# chart_inputs key -> where the chart takes it.
_FIELDS = {
    "runtime_role_arn": ("inference", "roleArn"),
    "control_plane_role_arn": ("controlPlane", "roleArn"),
    "tenant_secret_name_prefix": ("inference", "pseudonymisationKeys", "secretPrefix"),
    "audit_bucket": ("controlPlane", "audit", "bucket"),
    "audit_prefix": ("controlPlane", "audit", "prefix"),
}


class ChartInputsError(Exception):
    pass


def chart_inputs_values(inputs: Any, region: str, source: str = "chart_inputs") -> dict[str, Any]:
    """The chart's values from `inputs` (the output's JSON). Raises ChartInputsError naming the field when
    a field is missing or empty, or when the output is another region's."""
    if not isinstance(inputs, dict):
        raise ChartInputsError(f"{source}: not the chart_inputs object (terraform output -json chart_inputs)")
    if inputs.get("region") != region:
        raise ChartInputsError(f"{source}: region is {inputs.get('region')!r}, not {region!r}: these are another "
                               "region's roles (read the output from this region's Terraform working dir)")
    values: dict[str, Any] = {}
    for key, path in _FIELDS.items():
        value = inputs.get(key)
        if not isinstance(value, str) or not value:
            # An output from before the field existed: the region's Terraform has not been applied since.
            raise ChartInputsError(f"{source}: {key} is missing or empty (the chart's {'.'.join(path)}); if "
                                   "this region's Terraform predates it, apply it again (make region-apply)")
        node = values
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xds_server.deploy.chart_inputs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", type=Path, help="the file of `terraform output -json chart_inputs`")
    parser.add_argument("--region", required=True, help="the region being installed (must be the output's)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the values file to write")
    args = parser.parse_args(argv)
    try:
        try:
            inputs = json.loads(args.inputs.read_text())
        except (OSError, ValueError) as e:
            raise ChartInputsError(f"{args.inputs}: cannot read terraform's chart_inputs: {e}") from None
        values = chart_inputs_values(inputs, args.region, str(args.inputs))
    except ChartInputsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("# From terraform output -json chart_inputs (make chart-install); not edited.\n"
                           + dump_values(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
