"""Redeeming an authorization code at a provider's token endpoint (RFC 6749 §4.1.3 with the
PKCE verifier, RFC 7636 §4.5): the gateway's own OAuth client call, over the shared HTTP
client, within `federation.fetch_timeout`, reading at most `federation.max_document_size`
bytes, never following a redirect. The client authenticates as configured: HTTP Basic or
form fields with a secret from a file or an environment variable, a signed client assertion
(`private_key_jwt`), or not at all (a public client: the verifier is the proof).

Failures leave as the gateway's errors, mapped here once: the provider refusing the code
(400 `invalid_grant`, …) is a SignInFailed (a page, 400); an answer that is no token response
(5xx, HTML, too large, unreachable) is ProviderFailed (502), a silent provider
ProviderTimeout (504). Neither the code, the verifier, the secret nor a token is logged.
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from gateway.config import ProviderLoginSettings
from gateway.errors import ConfigError, ProviderFailed, ProviderTimeout, SignInFailed
from gateway.outbound.http_client import SharedClientSession
from gateway.outbound.json_fetch import FetchFailed, post_form
from gateway.tokens.client_assertion import ASSERTION_TYPE, ClientAssertionSigner
from gateway.typedefs import Clock

log = logging.getLogger("gateway.federation")

MAX_TOKEN: Final = 16 * 1024  # an ID token with many claims stays well below
_ERROR_CODE: Final = re.compile(r"^[a-z_]{1,40}$")
# RFC 6749 §5.2: counted by name; anything else as "error"
KNOWN_ERRORS: Final = frozenset(
    {"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client"}
    | {"unsupported_grant_type", "invalid_scope"}
)


@dataclass(frozen=True, slots=True)
class ProviderTokens:
    """What the token endpoint answered: the ID token and (for at_hash) the access token."""

    id_token: str
    access_token: str | None


class ClientAuthentication:
    """How the gateway proves it is the client at one provider's token endpoint."""

    def __init__(
        self,
        login: ProviderLoginSettings,
        *,
        secret: str | None,
        signer: ClientAssertionSigner | None,
    ):
        self.client_id = login.client_id
        self.method = login.auth_method
        self._secret = secret
        self._signer = signer

    @classmethod
    def from_settings(
        cls,
        login: ProviderLoginSettings,
        *,
        where: str,
        clock: Clock,
        environ: Mapping[str, str] | None = None,
    ) -> ClientAuthentication:
        """The secret or key `login` names, read now; ConfigError naming `where` otherwise."""
        env = os.environ if environ is None else environ
        secret = signer = None
        if login.client_secret_file is not None:
            try:
                secret = login.client_secret_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"{where}.client_secret_file: cannot read {login.client_secret_file}: "
                    f"{exc.strerror}"
                ) from None
        elif login.client_secret_env is not None:
            secret = env.get(login.client_secret_env, "").strip()
            if not secret:
                raise ConfigError(
                    f"{where}.client_secret_env: {login.client_secret_env} is not set"
                )
        elif login.private_key_file is not None:
            signer = ClientAssertionSigner.from_file(
                login.private_key_file,
                client_id=login.client_id,
                kid=login.private_key_id,
                clock=clock,
                where=f"{where}.private_key_file",
            )
        if secret is not None and not secret:
            raise ConfigError(f"{where}: the client secret is empty")
        return cls(login, secret=secret, signer=signer)

    def apply(self, form: dict[str, str], headers: dict[str, str], token_endpoint: str) -> None:
        """Add the client's credentials to the token request."""
        if self.method == "client_secret_basic":
            assert self._secret is not None
            # RFC 6749 §2.3.1: both parts form-encoded before they are joined and encoded
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            return
        form["client_id"] = self.client_id
        if self.method == "client_secret_post":
            assert self._secret is not None
            form["client_secret"] = self._secret
        elif self.method == "private_key_jwt":
            assert self._signer is not None
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = self._signer.sign(token_endpoint)


class CodeRedemption:
    """The token request of the authorization code grant, for any provider."""

    def __init__(self, http: SharedClientSession, *, timeout: float, max_size: int):
        self._http = http
        self._timeout = timeout
        self._max_size = max_size

    async def redeem(
        self,
        provider: str,
        token_endpoint: str,
        client: ClientAuthentication,
        *,
        code: str,
        verifier: str,
        redirect_uri: str,
    ) -> ProviderTokens:
        """The tokens the code is worth; SignInFailed, ProviderFailed or ProviderTimeout."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers: dict[str, str] = {}
        client.apply(form, headers, token_endpoint)
        try:
            answer = await post_form(
                self._http.session,
                token_endpoint,
                form,
                headers=headers,
                timeout=self._timeout,
                max_size=self._max_size,
            )
        except FetchFailed as exc:
            log.warning("token endpoint failed provider=%s reason=%s", provider, exc.reason)
            if exc.reason == "timeout":
                raise ProviderTimeout(reason="timeout") from exc
            raise ProviderFailed(reason=exc.reason) from exc
        document = answer.document
        if answer.status in (400, 401) and document is not None:
            error = document.get("error")
            code_name = error if isinstance(error, str) and _ERROR_CODE.match(error) else "error"
            log.info("token endpoint refused the code provider=%s error=%s", provider, code_name)
            raise SignInFailed(
                f"the identity provider refused the sign-in code ({code_name})",
                reason=f"token_{code_name if code_name in KNOWN_ERRORS else 'error'}",
            )
        if answer.status != 200:
            log.warning("token endpoint answered %d provider=%s", answer.status, provider)
            raise ProviderFailed(reason=f"http_{answer.status}")
        if document is None:
            log.warning("token endpoint answered no JSON object provider=%s", provider)
            raise ProviderFailed(reason="not_json")
        id_token = document.get("id_token")
        if not isinstance(id_token, str) or not id_token or len(id_token) > MAX_TOKEN:
            log.warning("token endpoint answered no ID token provider=%s", provider)
            raise ProviderFailed(
                "the identity provider answered without an ID token", reason="no_id_token"
            )
        access_token = document.get("access_token")
        return ProviderTokens(id_token, access_token if isinstance(access_token, str) else None)
