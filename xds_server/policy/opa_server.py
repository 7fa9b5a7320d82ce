"""The OPA-server backend: the same policies, evaluated by an OPA server over its REST API
(opa-python-client). Policies and the platform context are pushed on each policy change."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient

from xds_server.config.urls import without_userinfo
from xds_server.policy.engine import PLATFORM_DATA, PolicyError, locate
from xds_server.policy.sources import PolicySources


class OpaServerEngine:
    name = "opa"

    def __init__(self, url: str, timeout_seconds: float = 10.0) -> None:
        parts = urlsplit(url)
        # As every message shows it (reload refusals reach /status and the audit trail): a user and password
        # would authenticate nothing (the client gets host, port and scheme), and must never be shown.
        self.url = without_userinfo(url)
        # Retries would multiply the time limit; a down server should fail the reload promptly.
        self._client = OpaClient(host=parts.hostname or "localhost", port=parts.port or 8181,
                                 ssl=parts.scheme == "https", timeout=timeout_seconds, retries=0)
        self.timeout_seconds = timeout_seconds
        self._root: Path | None = None  # the pushed policies' directory: an error's file is named under it

    def load(self, sources: PolicySources, platform: dict[str, Any]) -> None:
        self._root = sources.root
        for name, text in sources.modules.items():
            self._do(name, lambda n=name, t=text: self._client.update_policy_from_string(t, n, rego_compat=False))
        self._do("platform data", lambda: self._client.update_or_create_data(platform, PLATFORM_DATA))

    def query(self, path: str, input: Any) -> Any:
        answer = self._do(path, lambda: self._client.query_rule(input, path))
        return answer.get("result") if isinstance(answer, dict) else None

    def _do(self, where: str, call: Any) -> Any:
        try:
            return call()
        except requests.Timeout:
            raise PolicyError(self.name, where, f"OPA at {self.url} did not answer within "
                                                f"{self.timeout_seconds:g}s") from None
        except requests.ConnectionError as err:
            raise PolicyError(self.name, where, f"OPA at {self.url} is unreachable ({_short(err)})") from None
        except requests.HTTPError as err:
            raise self._placed(where, _answer(err)) or PolicyError(
                self.name, where, f"OPA at {self.url} answered {_body(err)}") from None
        except Exception as err:  # opa-python-client raises its own types for rejected policies
            raise self._placed(where, vars(err)) or PolicyError(
                self.name, where, f"OPA at {self.url} refused it: {_short(err)}") from None

    def _placed(self, where: str, answer: dict[str, Any]) -> PolicyError | None:
        """OPA's error at the policy file, line and column it names (its `errors[].location`, or the
        `file:line: code: reason` of its message), the file under the policy directory; None if none."""
        errors = answer.get("errors")
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        at = first.get("location")
        if isinstance(at, dict) and at.get("file") and isinstance(at.get("row"), int):
            file, line, column, reason = str(at["file"]), at["row"], at.get("col"), " ".join(
                str(first.get("message", "")).split())
        else:
            found = locate(str(answer.get("message") or ""))
            if found is None:
                return None
            file, line, column, reason = found.file, found.line, found.column, found.reason
        return PolicyError(self.name, where, reason, file=str(self._root / file) if self._root else file,
                           line=line, column=column if isinstance(column, int) else None)

    def close(self) -> None:
        self._client.close_connection()


def _short(err: Exception) -> str:
    return str(err).splitlines()[0][:300] if str(err) else type(err).__name__


def _answer(err: requests.HTTPError) -> dict[str, Any]:
    """OPA's JSON error body ({code, message, errors}), or {}."""
    try:
        body = err.response.json() if err.response is not None else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _body(err: requests.HTTPError) -> str:
    response = err.response
    if response is None:
        return _short(err)
    return f"HTTP {response.status_code}: {response.text[:300]}"
