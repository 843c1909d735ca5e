"""Token verification per algorithm: what PyJWT signs, gateway.jws + TokenVerifier accept,
and every tampering is refused with the right reason (unit level, no gateway)."""

from __future__ import annotations

import base64
import gc
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from gateway.config import ProxySettings
from gateway.errors import InvalidToken
from gateway.proxy.headers import HeaderPolicy
from gateway.tokens.keys import Key, KeyRing
from gateway.tokens.verifier import TokenVerifier

ISSUER, AUDIENCE = "https://gw.example", "api"


def make_key(alg: str, kid: str = "k") -> Key:
    if alg == "HS256":
        secret = b"s" * 32
        return Key(kid, alg, secret, secret)
    private: Any = {
        "EdDSA": ed25519.Ed25519PrivateKey.generate,
        "EdDSA-448": ed448.Ed448PrivateKey.generate,
        "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }[alg]()
    return Key(kid, alg.split("-")[0], private.public_key(), private)


def verifier_for(key: Key) -> TokenVerifier:
    ring = KeyRing([key], active_kid=key.kid, algorithms=[key.alg])
    return TokenVerifier(
        ring, issuer=ISSUER, audience=AUDIENCE, leeway=30, clock=time.time, cache_size=0
    )


def sign(key: Key, header: dict[str, Any] | None = None, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "sid": "s1",
        "jti": "j1",
        "iat": now,
        "exp": now + 300,
        **overrides,
    }
    headers = {"kid": key.kid, "typ": "at+jwt", **(header or {})}
    return jwt.encode(claims, key.sign_key, algorithm=key.alg, headers=headers)  # type: ignore[arg-type]


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    return caught.value.reason


ALGORITHMS = ["EdDSA", "EdDSA-448", "ES256", "RS256", "HS256"]


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_each_algorithm_verifies_and_refuses_a_changed_signature(alg: str) -> None:
    key = make_key(alg)
    verifier = verifier_for(key)
    token = sign(key)
    assert verifier.verify(token).sub == "alice"
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert refusal(verifier, f"{head}.{payload}.{flipped}") == "bad_signature"
    assert refusal(verifier, f"{head}.{payload}.{flipped[:-8]}") == "bad_signature"  # short
    assert refusal(verifier, f"{head}.{payload}.") == "malformed"  # stripped


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_payload_swapped_under_a_valid_signature_is_refused(alg: str) -> None:
    key = make_key(alg)
    verifier = verifier_for(key)
    head, _, signature = sign(key).split(".")
    _, other_payload, _ = sign(key, sub="mallory").split(".")
    assert refusal(verifier, f"{head}.{other_payload}.{signature}") == "bad_signature"


def test_encoding_and_structure_refusals() -> None:
    key = make_key("EdDSA")
    verifier = verifier_for(key)
    head, payload, signature = sign(key).split(".")
    for token in (
        f"{head}.{payload}.{signature}=",  # padding is not base64url (RFC 7515 §2)
        f"{head}.{payload}+.{signature}",
        f"{head}.{payload}.{signature}.extra",
        f"{head}.{payload}",
    ):
        assert refusal(verifier, token) == "malformed", token
    assert refusal(verifier, sign(key, header={"crit": ["b64"], "b64": False})) == "malformed"


@pytest.mark.parametrize(
    ("audience", "accepted"),
    [([AUDIENCE, "other"], True), (["other"], False), (7, False), ([AUDIENCE, 7], False)],
)
def test_audience_may_be_a_list_that_names_us(audience: Any, accepted: bool) -> None:
    key = make_key("EdDSA")
    verifier = verifier_for(key)
    token = sign(key, aud=audience)
    if accepted:
        assert verifier.verify(token).sub == "alice"
    else:
        assert refusal(verifier, token) == "wrong_audience"


def test_payload_that_is_not_a_json_object_is_malformed() -> None:
    key = make_key("HS256")
    verifier = verifier_for(key)
    head = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": "k"}).encode()
    ).rstrip(b"=")
    body = base64.urlsafe_b64encode(b"[1, 2]").rstrip(b"=")
    signing_input = head + b"." + body
    algorithm = jwt.get_algorithm_by_name("HS256")
    signature = base64.urlsafe_b64encode(algorithm.sign(signing_input, key.sign_key)).rstrip(b"=")
    assert refusal(verifier, (signing_input + b"." + signature).decode()) == "malformed"


def test_verified_principal_leaves_nothing_for_the_garbage_collector_to_walk() -> None:
    """A large verified-token cache must not make full collections longer: once a collection
    has seen them, the claims and derived values of a cached Principal are untracked."""
    key = make_key("EdDSA")
    ring = KeyRing([key], active_kid=key.kid, algorithms=[key.alg])
    verifier = TokenVerifier(ring, issuer=ISSUER, audience=AUDIENCE, leeway=30, clock=time.time)
    token = sign(
        key,
        roles=["user", "admin"],
        scope="read write",
        aud=[AUDIENCE, "other"],
        groups=[["nested"], ["lists"]],
    )
    principal = verifier.verify(token)
    policy = HeaderPolicy(ProxySettings())
    fields = policy.identity_fields(principal)
    assert verifier.verify(token) is principal  # the cached one
    assert policy.identity_fields(principal) is fields  # built once per token
    gc.collect()
    gc.collect()  # an array of arrays is untracked one collection after its items
    assert not gc.is_tracked(principal.claims)
    assert not gc.is_tracked(principal.derived)
    assert principal.claims["roles"] == ("user", "admin")
    assert principal.claims["groups"] == (("nested",), ("lists",))
    assert principal.scopes == ("read", "write")
    assert dict(fields)[b"X-User-Roles"] == b"user,admin"
