"""The OPA-server backend: the same policies, evaluated by an OPA server over its REST API
(opa-python-client). Policies and the platform context are pushed on each policy change."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient

from xds_server.policy.engine import PLATFORM_DATA, PolicyError
from xds_server.policy.sources import PolicySources


class OpaServerEngine:
    name = "opa"

    def __init__(self, url: str, timeout_seconds: float = 10.0) -> None:
        parts = urlsplit(url)
        self.url = url
        # Retries would multiply the time limit; a down server should fail the reload promptly.
        self._client = OpaClient(host=parts.hostname or "localhost", port=parts.port or 8181,
                                 ssl=parts.scheme == "https", timeout=timeout_seconds, retries=0)
        self.timeout_seconds = timeout_seconds

    def load(self, sources: PolicySources, platform: dict[str, Any]) -> None:
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
            raise PolicyError(self.name, where, f"OPA at {self.url} answered {_body(err)}") from None
        except Exception as err:  # opa-python-client raises its own types for rejected policies
            raise PolicyError(self.name, where, f"OPA at {self.url} refused it: {_short(err)}") from None

    def close(self) -> None:
        self._client.close_connection()


def _short(err: Exception) -> str:
    return str(err).splitlines()[0][:300] if str(err) else type(err).__name__


def _body(err: requests.HTTPError) -> str:
    response = err.response
    if response is None:
        return _short(err)
    return f"HTTP {response.status_code}: {response.text[:300]}"
