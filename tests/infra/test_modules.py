"""Static checks of every Terraform module and the region root: formatting, `terraform validate`, and each
module's own `terraform test` suite (mock AWS provider, plan-only runs: no cloud, no network)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from bench.terraform_driver import MODULES, REPO, TERRAFORM_DIR, Terraform, TerraformError, copy_tree, plugin_dir
from tests.infra.conftest import require_terraform


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_terraform()
    if plugin_dir() is None:
        pytest.skip("no local provider mirror (/opt/tf-plugins or $TF_PLUGIN_DIR): init would need the registry")
    return copy_tree(tmp_path_factory.mktemp("modules"))


@pytest.fixture(scope="module")
def module_results(tree: Path) -> dict[str, str | None]:
    """Per module: None when init, validate and `terraform test` all pass, else what failed. Three at a time:
    each run is mostly the AWS provider's start-up."""

    def check(name: str) -> str | None:
        tf = Terraform(tree / "modules" / name, tree.parent / "tfdata" / name)
        try:
            tf.init(timeout=180)
            tf.run("validate", timeout=180)
            tf.run("test", timeout=300)
        except TerraformError as err:
            return str(err)
        return None

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(MODULES, pool.map(check, MODULES), strict=True))


def test_terraform_is_formatted(tmp_path: Path) -> None:
    require_terraform()
    proc = Terraform(TERRAFORM_DIR, tmp_path / "tfdata").run("fmt", "-check", "-recursive", check=False)
    assert proc.returncode == 0, f"not `terraform fmt`-formatted: {proc.stdout.split()}"


@pytest.mark.parametrize("module", MODULES)
def test_module_validates_and_its_tests_pass(module: str, module_results: dict[str, str | None]) -> None:
    assert module_results[module] is None, module_results[module]


@pytest.mark.parametrize("module", MODULES)
def test_module_has_tests_docs_and_described_variables(module: str) -> None:
    directory = TERRAFORM_DIR / "modules" / module
    assert list((directory / "tests").glob("*.tftest.hcl")), f"{module} has no terraform test"
    assert (directory / "README.md").is_file(), f"{module} has no README.md"
    for name in ("variables.tf", "outputs.tf"):
        text = (directory / name).read_text()
        blocks = text.count('variable "') + text.count('output "')
        assert blocks > 0 and text.count("description") >= blocks, f"{module}/{name}: every block needs a description"


def test_every_module_is_checked() -> None:
    # A module missing from MODULES would get neither validate nor its terraform tests.
    assert set(MODULES) == {p.name for p in (TERRAFORM_DIR / "modules").iterdir() if (p / "main.tf").is_file()}


def test_region_root_validates(tree: Path) -> None:
    tf = Terraform(tree / "region", tree.parent / "tfdata" / "region")
    tf.init()
    tf.run("validate")


def test_every_configured_region_has_one_variable_file_and_nothing_else() -> None:
    configured = {r["id"] for r in yaml.safe_load((REPO / "config" / "regions.yaml").read_text())["regions"]}
    assert {p.stem for p in (TERRAFORM_DIR / "regions").glob("*.tfvars")} == configured
    # One root for every region: no per-region copies of code.
    roots = {p.parent.name for p in TERRAFORM_DIR.rglob("*.tf") if "modules" not in p.parts}
    assert roots == {"region"}
