"""platform.yaml `controlplane.replicas`: more than one replica needs rate-limit counters they share."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from bench.synth import REPO_CONFIG
from xds_server.config import ConfigError, load_config


def _config(tmp_path: Path, **platform: object) -> Path:
    cfg = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, cfg)
    doc = yaml.safe_load((cfg / "platform.yaml").read_text())
    for section, fields in platform.items():
        doc.setdefault(section, {}).update(fields)  # type: ignore[call-overload]
    (cfg / "platform.yaml").write_text(yaml.safe_dump(doc))
    return cfg


def test_memory_backend_with_two_replicas_is_refused_naming_file_and_field(tmp_path: Path) -> None:
    cfg = _config(tmp_path, controlplane={"replicas": 2})
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    [problem] = err.value.problems
    assert problem.file == str(cfg / "platform.yaml")
    assert "ratelimit.backend 'memory'" in problem.message and "controlplane.replicas 2" in problem.message


def test_redis_backend_with_two_replicas_loads(tmp_path: Path) -> None:
    cfg = _config(tmp_path, controlplane={"replicas": 2},
                  ratelimit={"backend": "redis", "redis_url": "redis://127.0.0.1:6379/0"})
    assert load_config(cfg).platform.controlplane.replicas == 2


def test_unset_and_one_replica_keep_the_memory_backend(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path)).platform.controlplane.replicas is None
    one = _config(tmp_path / "one", controlplane={"replicas": 1})
    assert load_config(one).platform.controlplane.replicas == 1


def test_replicas_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, controlplane={"replicas": 0}))
    assert [p.field for p in err.value.problems] == ["controlplane.replicas"]
