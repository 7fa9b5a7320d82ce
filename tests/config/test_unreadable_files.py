"""A config file that is there but is no file (a dangling or looping link, a directory, a FIFO) is a problem
naming it: never a tenant silently removed, a traceback, or a reload blocked for good."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from xds_server.config import ConfigError, load_config
from xds_server.config.loader import TenantFileCache


def problems(cfg_dir: Path, cache: TenantFileCache | None = None, changed: list[Path] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        load_config(cfg_dir, cache, changed=changed)
    return [str(p) for p in refused.value.problems]


def test_a_tenant_file_that_became_a_dangling_link_is_refused_not_removed(cfg_dir: Path) -> None:
    cache = TenantFileCache()
    assert "acme" in load_config(cfg_dir, cache).tenants
    acme = cfg_dir / "tenants" / "acme.yaml"
    acme.unlink()
    acme.symlink_to("/nonexistent/acme.yaml")
    expected = f"{acme}: a symbolic link to /nonexistent/acme.yaml, which does not exist"
    # The watcher names the file (an incremental load), or a full load lists the folder: the same answer.
    assert expected in problems(cfg_dir, cache, changed=[acme])
    assert expected in problems(cfg_dir, TenantFileCache())
    acme.unlink()  # really gone: now the tenant is removed
    assert "acme" not in load_config(cfg_dir, cache, changed=[acme]).tenants


def test_a_symbolic_link_loop_and_a_directory_are_named(cfg_dir: Path) -> None:
    tenants = cfg_dir / "tenants"
    (tenants / "zza.yaml").symlink_to("zzb.yaml")
    (tenants / "zzb.yaml").symlink_to("zza.yaml")
    (tenants / "zzdir.yaml").mkdir()
    found = problems(cfg_dir)
    assert f"{tenants / 'zza.yaml'}: a symbolic link loop (it resolves to itself)" in found
    assert f"{tenants / 'zzb.yaml'}: a symbolic link loop (it resolves to itself)" in found
    assert f"{tenants / 'zzdir.yaml'}: not a regular file (a directory)" in found


@pytest.mark.parametrize("name", ["tiers.yaml", "tenants/acme.yaml"])
def test_a_fifo_is_refused_without_blocking_the_load(cfg_dir: Path, name: str) -> None:
    """Opening a FIFO with no writer blocks until one comes: the reload's thread, and every reload after it,
    waited forever while status still said the last reload was ok."""
    path = cfg_dir / name
    path.unlink()
    os.mkfifo(path)
    found: list[str] = []
    loading = threading.Thread(target=lambda: found.extend(problems(cfg_dir)), daemon=True)
    loading.start()
    loading.join(60)  # a guard against hanging the suite, not a timing: the load returns at once or never
    assert not loading.is_alive(), "the load blocked on the FIFO"
    assert f"{path}: not a regular file (a FIFO)" in found


def test_validate_names_the_link_loop_without_a_traceback(cfg_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from xds_server.cli import main

    (cfg_dir / "tenants" / "zza.yaml").symlink_to("zza.yaml")
    assert main(["validate", "--config", str(cfg_dir)]) == 2
    err = capsys.readouterr().err
    assert "zza.yaml: a symbolic link loop" in err and "Traceback" not in err


def test_a_policy_file_that_is_a_fifo_is_named_not_waited_on(tmp_path: Path) -> None:
    import shutil

    from xds_server.policy.engine import PolicyError
    from xds_server.policy.sources import PolicySources

    policy = Path(shutil.copytree(Path(__file__).resolve().parents[2] / "policy", tmp_path / "policy"))
    os.mkfifo(policy / "zz_stuck.rego")
    with pytest.raises(PolicyError, match="not a regular file \\(a FIFO\\)") as refused:
        PolicySources.load(policy)
    assert "zz_stuck.rego" in str(refused.value)


@pytest.mark.parametrize("name", ["tiers.yaml", "models.yaml", "regions.yaml", "platform.yaml"])
def test_a_directory_for_a_top_level_file_is_named_and_leaks_no_descriptor(cfg_dir: Path, name: str) -> None:
    """os.fdopen refused the directory itself (IsADirectoryError: a traceback, naming no file) before the
    S_ISREG check, and the fd it was given stayed open: one leaked per reload."""
    path = cfg_dir / name
    path.unlink()
    path.mkdir()
    open_fds = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        assert f"{path}: not a regular file (a directory)" in problems(cfg_dir)
    assert len(os.listdir("/proc/self/fd")) == open_fds


def test_validate_and_compile_name_a_directory_without_a_traceback(cfg_dir: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from xds_server.cli import main

    (tmp_path / "endpoints").mkdir()
    assert main(["compile", "--config", str(cfg_dir), "--state", str(tmp_path / "state"),
                 "--endpoints", str(tmp_path / "endpoints")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'endpoints'}: not a regular file (a directory)" in err and "Traceback" not in err
    (cfg_dir / "tiers.yaml").unlink()
    (cfg_dir / "tiers.yaml").mkdir()
    assert main(["validate", "--config", str(cfg_dir)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg_dir / 'tiers.yaml'}: not a regular file (a directory)" in err and "Traceback" not in err
