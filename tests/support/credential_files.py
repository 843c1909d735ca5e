"""Files the gateway reads secrets from, written as the CLI writes them: the demo users (with
cheap argon2id hashes), signing keys for each algorithm, a cookie-sealing key."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import yaml
from argon2 import PasswordHasher

from gateway.browser.seal import new_seal_key
from gateway.tokens.keys import generate_key_material, write_secret_file

# Cheap argon2id parameters: the hashes are real, the tests stay fast.
FAST_HASHER: Final = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def write_users_file(path: Path) -> Path:
    """The demo users: alice/wonderland (`user`), bob/builder (`user`, `reports`)."""
    users = {
        "alice": {"password_hash": FAST_HASHER.hash("wonderland"), "roles": ["user"]},
        "bob": {"password_hash": FAST_HASHER.hash("builder"), "roles": ["user", "reports"]},
    }
    path.write_text(yaml.safe_dump({"users": users}))
    return path


def write_key_files(directory: Path) -> dict[str, Path]:
    """Fresh signing keys for EdDSA, ES256 and HS256 in `directory`, by algorithm."""
    files = {}
    for alg in ("EdDSA", "ES256", "HS256"):
        path = directory / f"{alg}.key"
        write_secret_file(path, generate_key_material(alg))
        files[alg] = path
    return files


def write_seal_key(path: Path) -> Path:
    """A cookie-sealing key, as `gateway cookie-key generate` writes one."""
    write_secret_file(path, new_seal_key())
    return path
