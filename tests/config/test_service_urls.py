"""platform.yaml's service URLs: ratelimit.redis_url is checked when the config is read (it had passed
`validate` and then ended `serve` with the Redis client's traceback), and policy.opa_url may not carry a
user or password (they authenticate nothing and were shown verbatim in errors, /status and the audit
trail). No message shows a password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from xds_server.cli import main
from xds_server.config import ConfigError, load_config
from xds_server.config.urls import redis_url_problem, without_userinfo


def with_platform(cfg_dir: Path, **sections: dict[str, object]) -> Path:
    path = cfg_dir / "platform.yaml"
    data = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("url", "message"), [
    ("rediss://u:pw@127.0.0.1:notaport/0",
     "its port must be a number from 1 to 65535 (rediss://***@127.0.0.1:notaport/0)"),
    ("redis://:pw@127.0.0.1:70000/0", "its port must be a number from 1 to 65535 (redis://***@127.0.0.1:70000/0)"),
    ("redis://127.0.0.1:0/0", "its port must be a number from 1 to 65535"),
    ("http://u:pw@127.0.0.1:6379", "must be a redis://, rediss:// or unix:// URL (e.g. redis://127.0.0.1:6379/0), got "
                                   "http://…"),
    ("127.0.0.1:6379", "must be a redis://, rediss:// or unix:// URL"),
    ("redis://:6379/0", "names no host"),
    ("redis://127.0.0.1:6379/zero", "its path must be the database number, e.g. /0"),
    ("redis://u:p/w@127.0.0.1:6379/0", "has an @ after its host: a / ? or # in the user or password ends the host"),
    ("redis://127.0.0.1:6379/0?socket_timeout=soon", "the Redis client refuses it: Invalid value for 'socket_timeout'"),
    ("unix://", "names no socket path"),
])
def test_a_bad_redis_url_is_a_problem_of_platform_yaml(cfg_dir: Path, url: str, message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = with_platform(cfg_dir, ratelimit={"backend": "redis", "redis_url": url})
    with pytest.raises(ConfigError) as refused:
        load_config(cfg_dir)
    (problem,) = [str(p) for p in refused.value.problems]
    assert problem.startswith(f"{path}: ratelimit.redis_url: ") and message in problem
    assert "pw" not in problem
    assert main(["validate", "--config", str(cfg_dir), "--json"]) == 2
    out = capsys.readouterr().out
    assert "ratelimit.redis_url" in json.dumps(json.loads(out)) and "pw" not in out


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "redis://fairshare@fairshare-redis:6379/0",
                                 "rediss://user:p%2Fw@redis.internal:6380/2", "redis://[::1]:6379",
                                 "unix:///run/redis/redis.sock"])
def test_a_sound_redis_url_is_taken(cfg_dir: Path, url: str) -> None:
    with_platform(cfg_dir, ratelimit={"backend": "redis", "redis_url": url})
    assert load_config(cfg_dir).platform.ratelimit.redis_url == url


def test_serve_and_run_refuse_a_bad_redis_url_flag_the_same_way(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("serve", "run"):
        with pytest.raises(SystemExit) as exited:
            main([command, "--ratelimit-redis-url", "rediss://u:pw@127.0.0.1:notaport/0"])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and "Traceback" not in err and "pw" not in err
        assert ("argument --ratelimit-redis-url: its port must be a number from 1 to 65535 "
                "(rediss://***@127.0.0.1:notaport/0)") in err
    assert redis_url_problem("redis://fairshare@fairshare-redis:6379/0") is None  # what the chart passes


def test_an_opa_url_with_a_user_and_password_is_refused_without_showing_them(cfg_dir: Path) -> None:
    path = with_platform(cfg_dir, policy={"backend": "opa", "opa_url": "http://admin:S3cret@127.0.0.1:8181"})
    with pytest.raises(ConfigError) as refused:
        load_config(cfg_dir)
    rendered = refused.value.render()
    assert f"{path}: policy.opa_url: must not carry a user or password (http://***@127.0.0.1:8181)" in rendered
    assert "the control plane sends OPA no credentials" in rendered
    assert "S3cret" not in rendered and "admin" not in rendered


def test_an_opa_url_is_shown_without_its_userinfo_wherever_the_engine_names_it() -> None:
    """The engine can be given one outside the config (a test, a script): its errors, which a reload's
    refusal carries to /status and the audit trail, still hide it."""
    from xds_server.local.processes import free_port
    from xds_server.policy.engine import PolicyError
    from xds_server.policy.opa_server import OpaServerEngine
    from xds_server.policy.sources import PolicySources

    engine = OpaServerEngine(f"http://admin:S3cret@127.0.0.1:{free_port()}", timeout_seconds=2)
    try:
        with pytest.raises(PolicyError) as refused:
            engine.load(PolicySources.load(Path(__file__).resolve().parents[2] / "policy"), {})
    finally:
        engine.close()
    assert "OPA at http://***@127.0.0.1:" in str(refused.value) and "S3cret" not in str(refused.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("http://admin:S3cret@127.0.0.1:8181", "http://***@127.0.0.1:8181"),
    ("redis://u:pa/ss@h:6379/0", "redis://***@h:6379/0"),  # an unencoded / in the password: still hidden
    ("http://127.0.0.1:8181", "http://127.0.0.1:8181"),
    ("not a url @ all", "not a url @ all"),
])
def test_userinfo_is_hidden(url: str, shown: str) -> None:
    assert without_userinfo(url) == shown
