"""helm/fairshare-cluster-addons (the AWS Load Balancer Controller and Cluster Autoscaler, vendored upstream
charts) installed with the values Terraform outputs: the eu-west-1 region applied against moto (real
terraform, real AWS APIs), `terraform output cluster_addons_values` rendered by helm, and the result checked
against what Terraform built there: the roles' trust policies, the node groups' tags, the cluster and VPC.
Refusals (wrong namespace, a Kubernetes minor the autoscaler does not serve, missing or mismatched values)
need no Terraform."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bench.terraform_driver import MotoServer
from tests.chart.conftest import AppliedRegion
from tests.chart.helm import KUBERNETES_VERSIONS, REPO, HelmError, admission_violations, by_kind, find, helm

ADDONS = REPO / "helm" / "fairshare-cluster-addons"
PRODUCTION = ADDONS / "examples" / "production.yaml"
REGION = "eu-west-1"
NAMESPACE = "kube-system"
LBC, CA = "aws-load-balancer-controller", "cluster-autoscaler"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
DISCOVERY_PREFIX = "k8s.io/cluster-autoscaler/"


def render(helm_bin: str, *values: Path, namespace: str = NAMESPACE, sets: tuple[str, ...] = (),
           kube_version: str = KUBERNETES_VERSIONS[-1]) -> list[dict[str, Any]]:
    """Every object an install would create, CRDs included, as `make addons-render` renders them."""
    args = ["template", "cluster-addons", str(ADDONS), "--namespace", namespace, "--include-crds",
            "--kube-version", kube_version]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args, helm_bin=helm_bin)) if d]


def container(manifests: list[dict[str, Any]], release_part: str) -> dict[str, Any]:
    (deployment,) = [d for d in by_kind(manifests, "Deployment") if release_part in d["metadata"]["name"]]
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


def flag(c: dict[str, Any], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in c.get("command", []) + c.get("args", []) if a.startswith(f"--{name}=")]
    return str(value)


def test_lints_and_renders_valid_kubernetes_from_terraforms_values(helm_bin: str, applied: AppliedRegion) -> None:
    for extra in ([], [PRODUCTION]):
        args = [str(ADDONS), "--namespace", NAMESPACE, "-f", str(applied.values_file)]
        args += [a for e in extra for a in ("-f", str(e))]
        assert "0 chart(s) failed" in helm("lint", "--strict", *args, helm_bin=helm_bin)
    problems = []
    for version in KUBERNETES_VERSIONS:
        manifests = render(helm_bin, applied.values_file, PRODUCTION, kube_version=version)
        for m in manifests:
            try:
                kubernetes_validate.validate(m, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                problems.append(f"{version}: {m['kind']}/{m['metadata']['name']}: {err.message}")
    assert not problems, "\n".join(problems)
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "ServiceAccount", "CustomResourceDefinition", "PodDisruptionBudget"} <= kinds
    cluster_scoped = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
                      "ValidatingWebhookConfiguration"}
    assert {m["metadata"].get("namespace") for m in manifests if m["kind"] not in cluster_scoped} == {NAMESPACE}


def _trusted_accounts(moto: MotoServer, role_arn: str) -> set[str]:
    """The service accounts a role's trust policy lets assume it (the sub condition of IRSA)."""
    role = moto.client("iam", REGION).get_role(RoleName=role_arn.rsplit("/", 1)[1])["Role"]
    doc = role["AssumeRolePolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    subs = [v for st in doc["Statement"] for cond in st["Condition"].values()
            for k, v in cond.items() if k.endswith(":sub")]
    return {s for v in subs for s in ([v] if isinstance(v, str) else v)}


def test_each_controller_runs_as_the_account_its_terraform_role_trusts(helm_bin: str, applied: AppliedRegion) -> None:
    manifests = render(helm_bin, applied.values_file, PRODUCTION)
    inputs = applied.outputs["chart_inputs"]
    for part, role_arn in ((LBC, inputs["load_balancer_role"]), (CA, inputs["cluster_autoscaler_role"])):
        (deployment,) = [d for d in by_kind(manifests, "Deployment") if part in d["metadata"]["name"]]
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        sa = find(manifests, "ServiceAccount", account, NAMESPACE)
        assert sa["metadata"].get("namespace") == NAMESPACE
        assert sa["metadata"]["annotations"][ROLE_ANNOTATION] == role_arn, part
        # The role IAM holds trusts exactly this account: otherwise the controller gets no credentials.
        assert _trusted_accounts(applied.moto, role_arn) == {f"system:serviceaccount:{NAMESPACE}:{account}"}, part


def test_the_autoscaler_discovers_exactly_the_node_groups_terraform_tags(helm_bin: str, applied: AppliedRegion) -> None:
    c = container(render(helm_bin, applied.values_file), "cluster-autoscaler")
    spec = flag(c, "node-group-auto-discovery")
    assert spec.startswith("asg:tag="), spec
    discovery = set(spec.removeprefix("asg:tag=").split(","))
    cluster = applied.outputs["cluster_name"]
    assert flag(c, "cloud-provider") == "aws"
    assert {e["name"]: e.get("value") for e in c["env"]}["AWS_REGION"] == REGION
    # The tags on every node group Terraform created, as EKS (moto) holds them: the GPU pool's and the CPU
    # pools' alike, so the autoscaler grows each of them.
    eks = applied.moto.client("eks", REGION)
    names = eks.list_nodegroups(clusterName=cluster)["nodegroups"]
    assert set(names) == set(applied.outputs["node_groups"]) and len(names) >= 2
    groups = [eks.describe_nodegroup(clusterName=cluster, nodegroupName=n)["nodegroup"] for n in names]
    for g in groups:
        assert {k for k in g["tags"] if k.startswith(DISCOVERY_PREFIX)} == discovery, g["nodegroupName"]
    # The autoscaler's role may resize only groups tagged <cluster> = owned: that tag must be one it discovers by.
    role = applied.outputs["chart_inputs"]["cluster_autoscaler_role"].rsplit("/", 1)[1]
    iam = applied.moto.client("iam", REGION)
    (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    doc = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    (resize,) = [st for st in doc["Statement"] if "autoscaling:SetDesiredCapacity" in st["Action"]]
    (condition,) = resize["Condition"]["StringEquals"].items()
    assert condition == (f"aws:ResourceTag/{DISCOVERY_PREFIX}{cluster}", "owned")
    assert condition[0].removeprefix("aws:ResourceTag/") in discovery
    assert all(g["tags"][f"{DISCOVERY_PREFIX}{cluster}"] == "owned" for g in groups)


def test_the_load_balancer_controller_manages_this_clusters_vpc(helm_bin: str, applied: AppliedRegion) -> None:
    c = container(render(helm_bin, applied.values_file), "aws-load-balancer-controller")
    inputs = applied.outputs["chart_inputs"]
    cluster = applied.moto.client("eks", REGION).describe_cluster(name=inputs["cluster_name"])["cluster"]
    assert flag(c, "cluster-name") == inputs["cluster_name"] == cluster["name"]
    assert flag(c, "aws-region") == inputs["region"] == REGION
    # Given, not looked up: the nodes' metadata service allows one hop, so a pod cannot reach it.
    subnet = cluster["resourcesVpcConfig"]["subnetIds"][0]
    (vpc,) = {s["VpcId"] for s in applied.moto.client("ec2", REGION).describe_subnets(SubnetIds=[subnet])["Subnets"]}
    assert flag(c, "aws-vpc-id") == inputs["vpc_id"] == vpc


def test_the_admission_policy_admits_the_production_addons(helm_bin: str, applied: AppliedRegion) -> None:
    manifests = render(helm_bin, applied.values_file, PRODUCTION)
    found = {(v["rule"], v["subject"]) for v in admission_violations(manifests)}
    assert found == set(), found
    # Among them the controller's webhook: port 443 of a ClusterIP Service that only the API server calls,
    # over the TLS the controller serves (a CA bundle in each webhook that points at it), which no load
    # balancer fronts (https-port-terminates-tls asks only LoadBalancer and NodePort Services for TLS).
    service = find(manifests, "Service", "aws-load-balancer-webhook-service", NAMESPACE)
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert [p["port"] for p in service["spec"]["ports"]] == [443]
    hooks = [h for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
             for m in by_kind(manifests, kind) for h in m["webhooks"]]
    assert hooks and all(h["clientConfig"]["service"]["name"] == service["metadata"]["name"]
                         and h["clientConfig"]["caBundle"] for h in hooks)
    # With the upstream registries (the chart's defaults) the images are refused: production mirrors them.
    upstream = {(v["rule"], v["subject"]) for v in admission_violations(render(helm_bin, applied.values_file))}
    assert {r for r, _ in upstream} == {"image-from-allowed-registry"}


# Refusals: values shaped like Terraform's output, without Terraform.
VALUES = {
    "cluster": {"kubernetesVersion": KUBERNETES_VERSIONS[-1]},
    LBC: {"clusterName": "fairshare-eu-west-1", "region": REGION, "vpcId": "vpc-0a1b2c3d4e5f60718",
          "serviceAccount": {"name": "aws-load-balancer-controller", "annotations": {
              ROLE_ANNOTATION: "arn:aws:iam::123456789012:role/fairshare-eu-west-1-load-balancer-controller"}}},
    CA: {"awsRegion": REGION, "autoDiscovery": {"clusterName": "fairshare-eu-west-1", "tags": [
        f"{DISCOVERY_PREFIX}enabled", f"{DISCOVERY_PREFIX}fairshare-eu-west-1"]},
         "rbac": {"serviceAccount": {"name": "cluster-autoscaler", "annotations": {
             ROLE_ANNOTATION: "arn:aws:iam::123456789012:role/fairshare-eu-west-1-cluster-autoscaler"}}}},
}


@pytest.fixture(scope="module")
def sample_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("addons") / "addons.json"
    path.write_text(json.dumps(VALUES))
    return path


def test_the_sample_renders(helm_bin: str, sample_values: Path) -> None:
    assert container(render(helm_bin, sample_values), "cluster-autoscaler")


@pytest.mark.parametrize(("case", "sets", "namespace", "expected"), [
    ("another namespace", (), "fairshare", 'into kube-system, not "fairshare"'),
    ("another Kubernetes minor", ("cluster.kubernetesVersion=1.34",), NAMESPACE,
     "cluster-autoscaler v1.35.2 is for Kubernetes 1.35, but the cluster runs 1.34"),
    ("no owned tag", (f"{CA}.autoDiscovery.tags={{{DISCOVERY_PREFIX}enabled}}",), NAMESPACE,
     f"lack {DISCOVERY_PREFIX}fairshare-eu-west-1"),
    ("two clusters", (f"{LBC}.clusterName=other",), NAMESPACE, "differ"),
    ("no VPC", (f"{LBC}.vpcId=",), NAMESPACE, f"at '/{LBC}/vpcId'"),
    ("no role", (f"{CA}.rbac.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=",), NAMESPACE,
     f"at '/{CA}/rbac/serviceAccount/annotations/eks.amazonaws.com~1role-arn'"),
])
def test_values_that_cannot_work_are_refused_naming_the_cause(
        helm_bin: str, sample_values: Path, case: str, sets: tuple[str, ...], namespace: str, expected: str) -> None:
    with pytest.raises(HelmError) as err:
        render(helm_bin, sample_values, namespace=namespace, sets=sets)
    assert expected in str(err.value), (case, str(err.value))


def test_without_terraforms_values_nothing_renders(helm_bin: str) -> None:
    with pytest.raises(HelmError) as err:
        render(helm_bin)
    for field in (f"/{LBC}/clusterName", f"/{LBC}/vpcId", f"/{CA}/awsRegion", "/cluster/kubernetesVersion"):
        assert f"at '{field}'" in str(err.value), field


def test_chart_install_installs_the_addons_before_the_platform(sample_values: Path) -> None:
    """make chart-install: the controllers' CRDs, then the add-ons into kube-system (waiting until they run),
    then the fairshare chart, whose gateway Service only the Load Balancer Controller turns into an NLB."""
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH")
    out = subprocess.run(["make", "-n", "chart-install", f"REGION={REGION}", f"ADDONS_TF_VALUES={sample_values}"],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    installs = [line for line in out.splitlines() if "upgrade --install " in line]
    assert [line.split("upgrade --install ", 1)[1].split()[0] for line in installs] == ["cluster-addons", "fairshare"]
    addons = installs[0]
    assert f"-f {sample_values}" in addons and f"--namespace {NAMESPACE}" in addons and "--wait" in addons
    assert out.index("crds/crds.yaml") < out.index("upgrade --install cluster-addons")


def _commands(text: str) -> list[str]:
    """Shell commands, one per entry: continuation lines joined, comments and blank lines left out."""
    joined = text.replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [" ".join(line.split()) for line in lines if line and not line.startswith("#")]


def test_the_docs_manual_steps_are_what_make_runs() -> None:
    """docs/helm.md spells out make chart-install's steps for running them by hand: the same two CRD files (the
    controller's crds/ also holds a kustomization.yaml, which kubectl refuses), and Terraform's output read
    through the region's working dir (in the repository root `terraform output` has no state)."""
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH")
    doc = (REPO / "docs" / "helm.md").read_text()
    start = doc.index("# which runs, in this order")
    steps = _commands(doc[start:doc.index("```", start)])
    made = _commands(subprocess.run(["make", "-n", "addons-install", f"REGION={REGION}"], cwd=REPO,
                                    capture_output=True, text=True, timeout=60, check=True).stdout)
    (doc_crds,) = [c for c in steps if c.startswith("kubectl apply")]
    (make_crds,) = [c for c in made if c.startswith("kubectl apply")]
    assert doc_crds == make_crds
    made += _commands(subprocess.run(["make", "-n", "chart-inputs", f"REGION={REGION}"], cwd=REPO,
                                     capture_output=True, text=True, timeout=60, check=True).stdout)

    def data_dir(command: str) -> str:
        return next(w for w in command.split() if w.startswith("TF_DATA_DIR=")).replace("$PWD", str(REPO))

    for name in ("cluster_addons_values", "chart_inputs"):
        output = f"terraform -chdir=terraform/region output -json {name}"
        (doc_tf,) = [c for c in steps if output in c]
        (make_tf,) = [c for c in made if output in c]
        assert data_dir(doc_tf) == data_dir(make_tf), name
