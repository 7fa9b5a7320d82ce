"""The `fairshare` command line: exit codes and messages users script against."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jwt
import pytest

from xds_server.auth.keys import SigningKey
from xds_server.cli import main
from xds_server.local.processes import free_port

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--config", str(REPO_CONFIG)]) == 0
    assert "config OK: 4 tenants" in capsys.readouterr().out


def test_validate_notes_each_quota_clamped_to_its_tiers_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Valid, and served with the tier's limit: the file's author is told, not left to find it in an audit."""
    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
    globex = config / "tenants" / "globex.yaml"
    globex.write_text(globex.read_text() + "quotas: {concurrency: 100000, requests_per_second: 500}\n")
    assert main(["validate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "note: globex: quotas.concurrency: asked 100000, clamped to tier pro's limit 64" in out
    # A rate as the file writes it, not as a float prints.
    assert "note: globex: quotas.requests_per_second: asked 500, clamped to tier pro's limit 200" in out
    assert main(["validate", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == [
        "globex: quotas.concurrency: asked 100000, clamped to tier pro's limit 64",
        "globex: quotas.requests_per_second: asked 500, clamped to tier pro's limit 200"]
    assert main(["validate", "--config", str(REPO_CONFIG)]) == 0
    assert "note:" not in capsys.readouterr().out


def test_validate_reports_problems_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--config", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'}: config directory does not exist" in capsys.readouterr().err


def test_token_is_on_the_last_line_and_verifies_against_the_jwks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "acme", "--config", str(REPO_CONFIG), "--state", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    jwks = json.loads(SigningKey.load_or_create(tmp_path).jwks())
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(token, key, algorithms=["ES256"], audience="fairshare-gateway")
    assert claims["tenant"] == "acme" and claims["iss"] == "fairshare-local"
    assert (tmp_path / "signing-key.pem").stat().st_mode & 0o077 == 0  # the key is owner-only


@pytest.mark.parametrize("ttl", ["0", "-5", "2678401", "1h"])
def test_token_refuses_a_lifetime_that_is_not_one(ttl: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An already-expired credential printed with exit 0 would be found only at the gateway's 401."""
    with pytest.raises(SystemExit) as exit_:
        main(["token", "acme", "--config", str(REPO_CONFIG), "--state", str(tmp_path), f"--ttl={ttl}"])
    assert exit_.value.code == 2
    assert "argument --ttl:" in capsys.readouterr().err


def test_compile_prints_a_row_per_snapshot_and_json_every_resource(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Resource names are 30,000 lines at 10,000 tenants: the table counts them, --json names them."""
    assert main(["compile", "--config", str(REPO_CONFIG), "--state", str(tmp_path), "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert main(["compile", "--config", str(REPO_CONFIG), "--state", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"config version {full['version']}: {len(full['regions'])} snapshots"
    header = lines[1].split()
    assert header[:3] == ["SNAPSHOT", "VERSION", "SIZE"] and "CLUSTERS" in header and "ROUTES" in header
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == set(full["regions"])
    for region, snap in full["regions"].items():
        counts = rows[region][-(len(header) - 3):]
        assert rows[region][1] == snap["version"][:12]
        assert int(counts[header.index("CLUSTERS") - 3]) == len(snap["resources"]["Cluster"])
        assert int(counts[header.index("ROUTES") - 3]) == len(snap["resources"]["RouteConfiguration"])


def test_token_for_unknown_tenant_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "nobody", "--config", str(REPO_CONFIG), "--state", str(tmp_path)]) == 2
    assert "unknown tenant 'nobody'" in capsys.readouterr().err


def test_token_needs_only_the_tenants_own_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken file of another tenant (the serving config is then still the last good one) does not stop a
    credential for a sound tenant; the broken tenant's own is refused, naming its file and line."""
    config = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, config)
    (config / "tenants" / "acme.yaml").write_text("id: acme\nname: [unclosed\n")
    state = tmp_path / "state"
    assert main(["token", "globex", "--config", str(config), "--state", str(state)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    key = jwt.PyJWK(json.loads(SigningKey.load_or_create(state).jwks())["keys"][0]).key
    assert jwt.decode(token, key, algorithms=["ES256"], audience="fairshare-gateway")["tenant"] == "globex"
    assert main(["token", "acme", "--config", str(config), "--state", str(state)]) == 2
    assert f"{config / 'tenants' / 'acme.yaml'}: line 3, column 1: not valid YAML" in capsys.readouterr().err


def test_token_refuses_offboarded_tenants_and_names_that_are_not_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, config)
    globex = config / "tenants" / "globex.yaml"
    globex.write_text(globex.read_text() + "offboard: true\n")
    state = str(tmp_path / "state")
    assert main(["token", "globex", "--config", str(config), "--state", state]) == 2
    assert "tenant 'globex' is offboarded" in capsys.readouterr().err
    # platform.yaml is a file in the config folder, not a tenant: a path is never read as a tenant file.
    assert main(["token", "../platform", "--config", str(config), "--state", state]) == 2
    assert "unknown tenant '../platform': a tenant id is lowercase letters" in capsys.readouterr().err


def test_corrupt_signing_key_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "signing-key.pem").write_text("not a key")
    assert main(["token", "acme", "--config", str(REPO_CONFIG), "--state", str(tmp_path)]) == 2
    assert "signing-key.pem: not a readable PEM private key" in capsys.readouterr().err


def test_status_without_a_control_plane(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["status", "--status-port", str(port)]) == 1
    assert f"no control plane answers at http://127.0.0.1:{port}/status" in capsys.readouterr().err


def test_models_lists_catalog_and_own_models_without_a_platform(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--config", str(REPO_CONFIG), "--status-port", "1", "--state", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    assert "acme:ticket-router  onnx" in out and "1=90% 2=10%" in out
    assert "globex:intent" in out and "head" in out
    assert "residency unknown" in out
    assert main(["models", "--config", str(REPO_CONFIG), "--tenant", "globex", "--json", "--status-port", "1",
                 "--state", "/nonexistent"]) == 0
    rows = {m["model"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    # globex sees its own model and the catalog models it is granted; not acme's model nor the embedder.
    assert set(rows) == {"classifier", "globex:intent"}
    assert rows["globex:intent"]["versions"] == {"1": 100} and rows["globex:intent"]["regions"] == ["us-east-1"]
    # A catalog model as globex may call it: its grant's split, in the regions it is served (not v1 v2 in both).
    assert rows["classifier"]["versions"] == {"v1": 80, "v2": 20} and rows["classifier"]["regions"] == ["us-east-1"]
    assert main(["models", "--config", str(REPO_CONFIG), "--tenant", "nobody", "--status-port", "1"]) == 2


def test_models_from_an_old_runs_endpoints_file_says_so_and_caps_its_warnings_on_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No control plane: the replicas come from the endpoints file an old run left, which is said; only the
    config's pools are asked (not the cells' gateways), and the unreadable ones are a few lines on stderr."""
    port, dead = free_port(), free_port()
    pool = [{"host": "127.0.0.1", "port": dead, "admin_port": dead, "name": f"runtime-r{i}"} for i in range(8)]
    gateway = [{"host": "127.0.0.1", "port": dead, "name": "gateway-us-east-1-c0"}]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "endpoints.yaml").write_text(json.dumps({"regions": {
        "us-east-1": {"cpu-general": pool, "gpu-small": pool[:4], "gateway.c0": gateway, "gateway.vip": gateway}}}))
    argv = ["models", "--config", str(REPO_CONFIG), "--status-port", str(port), "--state", str(tmp_path)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[0] == (f"no control plane at 127.0.0.1:{port}; replicas from "
                                   f"{tmp_path / 'run' / 'endpoints.yaml'} (may be stale)")
    assert "warning" not in out and "gateway-us-east-1" not in out + err
    warnings = err.splitlines()[1:]
    assert len(warnings) == 6 and warnings[-1] == "  ... and 7 more replicas not readable (--json lists every one)"
    assert all(line.startswith("warning: runtime-r") for line in warnings[:5])
    assert max(len(line) for line in out.splitlines()) <= 130  # was 305: a name per replica, padded
    assert main([*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)["unreachable"]) == 12 and err.count("\n") == 1  # every one, and only the note


@pytest.mark.parametrize("bad", ["cp-peers", "cp-peers:status", ":18001", "cp:0", "cp:70000"])
def test_serve_refuses_a_peer_that_is_not_host_and_port(bad: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["serve", "--config", str(REPO_CONFIG), "--state", str(tmp_path), "--peers", f"10.0.0.5:18001,{bad}"]
    assert main(argv) == 2
    assert f"--peers: {bad!r} is not HOST:PORT" in capsys.readouterr().err


def test_serve_with_a_signing_key_file_loads_it_and_never_makes_one(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The chart mounts the key from a Secret (read-only) beside a writable state dir: a missing key is an
    error naming the file, not a new key that the other replicas' JWKS would refuse."""
    missing = tmp_path / "secret" / "signing-key.pem"
    argv = ["serve", "--config", str(REPO_CONFIG), "--state", str(tmp_path / "state"), "--signing-key", str(missing)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{missing}: cannot read the signing key" in err and "Traceback" not in err
    assert not missing.exists() and not (tmp_path / "state" / "signing-key.pem").exists()
    made = SigningKey.load_or_create(tmp_path / "made")
    assert SigningKey.load(tmp_path / "made" / "signing-key.pem").kid == made.kid


@pytest.mark.parametrize(("argv", "message"), [
    (["audit", "verify", "--log", "{tmp}"], "--log {tmp} is a folder: name the log file in it"),
    (["audit", "show", "--since", "99999999d", "--state", "{tmp}"], "--since: '99999999d' reaches back before year 1"),
    (["compliance", "report", "--tenant", "acme", "--config", str(REPO_CONFIG), "--state", "{tmp}",
      "--since", "9999-12-31T23:59:59-23:59"], "--since: '9999-12-31T23:59:59-23:59' is outside the dates"),
    (["policy", "bundle", "--config", str(REPO_CONFIG), "-o", "{tmp}"], "-o {tmp} is a folder: name a file in it"),
    (["chart-values", "--config", str(REPO_CONFIG), "--region", "us-east-1", "-o", "{tmp}"], "-o {tmp} is a folder"),
    # Refused before the checks or suites run: it had been an IsADirectoryError once they had passed.
    (["policy", "check", "--config", str(REPO_CONFIG), "--json", "{tmp}"],
     "--json {tmp} is a folder: name a file in it"),
    (["policy", "test", "--json", "{tmp}"], "--json {tmp} is a folder: name a file in it"),
    (["audit", "verify", "--log", "/dev/zero"], "--log /dev/zero: not a regular file (a character device)"),
    (["validate", "--config", str(REPO_CONFIG / "tiers.yaml")],
     f"{REPO_CONFIG / 'tiers.yaml'}: is a file, not a config directory"),
])
def test_bad_arguments_are_errors_naming_them_not_tracebacks(
        argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message.replace("{tmp}", str(tmp_path)) in err and "Traceback" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--xds-port", "99999"], "argument --xds-port: must be between 1 and 65,535, got 99999"),
    (["serve", "--status-port", "0"], "argument --status-port: must be between 1 and 65,535, got 0"),
    (["run", "--control-planes", "-1"], "argument --control-planes: must be at least 1, got -1"),
    (["serve", "--audit-seal-after", "-5"], "argument --audit-seal-after: must be at least 0 seconds, got -5"),
    (["serve", "--audit-seal-after", "1h"], "argument --audit-seal-after: '1h' is not a whole number of seconds"),
    # Secrets Manager's range, checked when the command is read: it had been refused at step 7 (secrets),
    # after the tenant's routes, tokens and models were gone.
    (["tenant", "offboard", "acme", "--recovery-window-days", "3"],
     "argument --recovery-window-days: must be between 7 and 30 days, got 3"),
    (["tenant", "offboard", "acme", "--recovery-window-days", "31"],
     "argument --recovery-window-days: must be between 7 and 30 days, got 31"),
    (["tenant", "offboard", "acme", "--status-port", "0"],
     "argument --status-port: must be between 1 and 65,535, got 0"),
])
def test_ports_and_counts_out_of_range_are_refused_by_name(argv: list[str], message: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_serve_on_a_port_in_use_names_the_port_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
        platform = config / "platform.yaml"
        platform.write_text(platform.read_text().replace("    enabled: true\n    control_plane: true",
                                                         "    enabled: false\n    control_plane: false"))
        argv = ["serve", "--config", str(config), "--state", str(tmp_path), "--xds-port", str(free_port()),
                "--status-port", str(port), "--ratelimit-port", str(free_port()), "--no-audit"]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: --status-port: the status server cannot listen" in err and "Traceback" not in err
