"""`fairshare run`'s stand-in for the tenant secrets Terraform creates: one pseudonymisation key per tenant,
a file in the state dir (`<state>/pseudonymisation-keys/<tenant>.key`, directory 0700, file 0600), which
the runtimes read with `--pseudonymisation-keys file:DIR`.

A key is created once and kept across restarts, so a tenant's pseudonyms stay stable on one machine;
deleting the file (or the state dir) is what offboarding does to a secret: every pseudonym made with it
can no longer be linked to anything.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from inference_images.runtime.pii.keys import key_file

KEYS_DIR = "pseudonymisation-keys"
KEY_BYTES = 32  # 256 random bits, written as 64 hex digits


def keys_dir(state_dir: Path) -> Path:
    return state_dir / KEYS_DIR


def ensure_tenant_keys(state_dir: Path, tenants: Iterable[str]) -> Path:
    """A key file for each tenant that has none; returns the directory."""
    directory = keys_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    for tenant in tenants:
        path = key_file(directory, tenant)
        try:
            # O_EXCL: a key another launcher just wrote is kept, never overwritten.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(KEY_BYTES) + "\n")
    return directory


def remove_tenant_key(state_dir: Path, tenant: str) -> bool:
    """Delete the tenant's key (offboarding); whether there was one."""
    try:
        key_file(keys_dir(state_dir), tenant).unlink()
    except FileNotFoundError:
        return False
    return True
