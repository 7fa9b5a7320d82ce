"""Gateway header checks on their own: residency first, then tenant, weight and version."""

from __future__ import annotations

import pytest

from inference_images.runtime.gateway import (
    ANONYMOUS_TENANT,
    GatewayHeaderError,
    read_gateway_context,
)

OWN = "us-east-1"


def read(headers: dict[str, str], allow_anonymous: bool = False):  # type: ignore[no-untyped-def]
    return read_gateway_context(headers, own_region=OWN, allow_anonymous=allow_anonymous)


def refused(headers: dict[str, str], allow_anonymous: bool = False) -> GatewayHeaderError:
    with pytest.raises(GatewayHeaderError) as caught:
        read(headers, allow_anonymous)
    return caught.value


def test_full_context_is_read() -> None:
    context = read(
        {
            "x-fairshare-tenant": "acme",
            "x-fairshare-region": OWN,
            "x-fairshare-weight": "2.5",
            "x-fairshare-model-version": "v1",
        }
    )
    assert (context.tenant, context.region, context.weight, context.model_version) == ("acme", OWN, 2.5, "v1")


def test_defaults_when_optional_headers_are_absent() -> None:
    context = read({"x-fairshare-tenant": "acme"})
    assert context.weight == 1.0 and context.region is None and context.model_version is None


def test_other_region_is_refused_before_anything_else() -> None:
    error = refused({"x-fairshare-region": "eu-west-1"})  # no tenant either: residency wins
    assert error.status == 403
    assert "eu-west-1" in error.message and OWN in error.message


def test_missing_tenant_is_400_unless_anonymous_allowed() -> None:
    error = refused({})
    assert error.status == 400
    assert error.message == "missing x-fairshare-tenant header (requests must come through the gateway)"
    assert read({}, allow_anonymous=True).tenant == ANONYMOUS_TENANT


@pytest.mark.parametrize("weight", ["0", "-1", "abc", "nan", "inf", ""])
def test_bad_weight_is_400(weight: str) -> None:
    error = refused({"x-fairshare-tenant": "acme", "x-fairshare-weight": weight})
    assert error.status == 400 and "x-fairshare-weight" in error.message


@pytest.mark.parametrize("tenant", ["", "a" * 129, "bad\ttenant"])
def test_bad_tenant_is_400(tenant: str) -> None:
    assert refused({"x-fairshare-tenant": tenant}).status == 400
