"""Single sign-on with OpenID Connect (Entra ID, Keycloak and the like): the authorization code
flow with PKCE (S256) through authlib's OAuth 2 client, and the ID token checked with joserfc
(authlib's JOSE library): its signature against the provider's published keys (asymmetric
algorithms only), its issuer, audience, expiry and nonce. The EWI role comes from one claim (e.g.
`groups`) through a configured map; a user with no mapped value gets no session.

Nothing of a token is logged or shown: a refusal names its reason only (`SsoRefused.reason`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import errors as jose_errors
from joserfc import jwt
from joserfc.jwk import KeySet

from ewi.dashboard import users
from ewi.settings import get_settings

log = logging.getLogger(__name__)

#: signatures an ID token may carry: asymmetric only (never "none", never an HMAC keyed by the
#: client secret, which anyone holding the secret could forge)
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 60  # clock difference tolerated between the provider and this server
_CACHE_SECONDS = 3600
HTTP_TIMEOUT = 10


class SsoRefused(Exception):
    """A sign-on that gives no session; `reason` is one of: state, provider_error, unreachable,
    token, no_user, no_role."""

    def __init__(self, reason: str, username: str | None = None):
        super().__init__(reason)
        self.reason, self.username = reason, username


@dataclass(frozen=True)
class Provider:
    issuer: str
    client_id: str
    client_secret: str | None
    redirect_uri: str | None
    scopes: str
    username_claim: str
    role_claim: str
    role_map: dict[str, str] = field(default_factory=dict)


def configured() -> Provider | None:
    """The provider the settings name; None when single sign-on is not set up."""
    s = get_settings()
    if not s.oidc_issuer or not s.oidc_client_id:
        return None
    secret = s.oidc_client_secret.get_secret_value() if s.oidc_client_secret else None
    return Provider(s.oidc_issuer.rstrip("/"), s.oidc_client_id, secret or None, s.oidc_redirect_uri,
                    s.oidc_scopes, s.oidc_username_claim, s.oidc_role_claim, dict(s.oidc_role_map))


_cache: dict[str, tuple[float, dict]] = {}


def _get_json(url: str, refresh: bool = False) -> dict:
    cached = _cache.get(url)
    if cached and not refresh and time.monotonic() - cached[0] < _CACHE_SECONDS:
        return cached[1]
    try:
        response = httpx.get(url, timeout=HTTP_TIMEOUT, follow_redirects=False)
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("single sign-on: the provider's %s could not be read (%s)", url, type(exc).__name__)
        raise SsoRefused("unreachable") from exc
    _cache[url] = (time.monotonic(), body)
    return body


def metadata(provider: Provider) -> dict:
    meta = _get_json(f"{provider.issuer}/.well-known/openid-configuration")
    # OpenID Connect Discovery 4.3: the document must name the issuer it was fetched for
    if meta.get("issuer", "").rstrip("/") != provider.issuer:
        log.warning("single sign-on: the discovery document names another issuer")
        raise SsoRefused("unreachable")
    return meta


def begin(provider: Provider, redirect_uri: str) -> tuple[str, dict]:
    """The provider's authorization URL to send the browser to, and what the callback must be
    given back (state, nonce, PKCE verifier), to keep in a signed cookie meanwhile."""
    meta = metadata(provider)
    pending = {"state": generate_token(32), "nonce": generate_token(32), "verifier": generate_token(64)}
    with OAuth2Client(provider.client_id, scope=provider.scopes, redirect_uri=redirect_uri,
                      code_challenge_method="S256") as client:
        url, _ = client.create_authorization_url(meta["authorization_endpoint"], state=pending["state"],
                                                 code_verifier=pending["verifier"], nonce=pending["nonce"])
    return url, pending


def finish(provider: Provider, redirect_uri: str, pending: dict, params: dict) -> tuple[str, str]:
    """(username, role) for the provider's answer `params` at the callback; SsoRefused otherwise."""
    if not pending or params.get("state") != pending.get("state"):
        raise SsoRefused("state")
    if params.get("error") or not params.get("code"):
        raise SsoRefused("provider_error")
    meta = metadata(provider)
    if params.get("iss") and params["iss"].rstrip("/") != provider.issuer:  # RFC 9207: a mix-up
        raise SsoRefused("provider_error")
    auth_method = "client_secret_basic" if provider.client_secret else "none"
    try:
        with OAuth2Client(provider.client_id, provider.client_secret, token_endpoint_auth_method=auth_method,
                          redirect_uri=redirect_uri, timeout=HTTP_TIMEOUT) as client:
            token = client.fetch_token(meta["token_endpoint"], grant_type="authorization_code",
                                       code=params["code"], code_verifier=pending["verifier"])
    except Exception as exc:  # authlib raises its OAuthError, httpx its own; neither reaches the user
        log.warning("single sign-on: the code could not be exchanged for tokens (%s)", type(exc).__name__)
        raise SsoRefused("token") from exc
    claims = verify_id_token(provider, meta, token.get("id_token"), pending["nonce"])
    if provider.username_claim not in claims or provider.role_claim not in claims:
        claims = {**_userinfo(meta, token, claims["sub"]), **claims}
    username = str(claims.get(provider.username_claim) or claims["sub"])
    role = role_of(claims.get(provider.role_claim), provider.role_map)
    if role is None:
        raise SsoRefused("no_role", username)
    return username, role


def verify_id_token(provider: Provider, meta: dict, id_token: str | None, nonce: str) -> dict:
    if not id_token:
        raise SsoRefused("token")
    allowed = [a for a in meta.get("id_token_signing_alg_values_supported") or ["RS256"] if a in SIGNING_ALGORITHMS]
    try:
        try:
            decoded = jwt.decode(id_token, _keys(meta), algorithms=allowed)
        except (jose_errors.BadSignatureError, jose_errors.InvalidKeyIdError, ValueError):
            # a key rotated since the keys were read: read them again, once
            decoded = jwt.decode(id_token, _keys(meta, refresh=True), algorithms=allowed)
        jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": provider.client_id},
            exp={"essential": True}, iat={"essential": True}, sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(decoded.claims)
    except (jose_errors.JoseError, ValueError) as exc:
        log.warning("single sign-on: ID token refused (%s)", type(exc).__name__)
        raise SsoRefused("token") from exc
    aud = decoded.claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and decoded.claims.get("azp") != provider.client_id:
        log.warning("single sign-on: ID token refused (for several audiences, not authorised for us)")
        raise SsoRefused("token")
    return decoded.claims


def _keys(meta: dict, refresh: bool = False) -> KeySet:
    try:
        return KeySet.import_key_set(_get_json(meta["jwks_uri"], refresh=refresh))
    except (KeyError, ValueError, jose_errors.JoseError) as exc:
        raise SsoRefused("unreachable") from exc


def _userinfo(meta: dict, token: dict, sub: str) -> dict:
    """The userinfo claims, when the ID token lacks the username or role claim (providers put
    scope-requested claims there rather than in the ID token)."""
    if not meta.get("userinfo_endpoint") or not token.get("access_token"):
        return {}
    try:
        response = httpx.get(meta["userinfo_endpoint"], timeout=HTTP_TIMEOUT,
                             headers={"Authorization": f"Bearer {token['access_token']}"})
        response.raise_for_status()
        info = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SsoRefused("unreachable") from exc
    if info.get("sub") != sub:  # OpenID Connect Core 5.3.2: must be the ID token's subject
        raise SsoRefused("token")
    return info


def role_of(value, role_map: dict[str, str]) -> str | None:
    """The EWI role the role claim's value(s) give: through the map, or, with no map, the values
    `coordinator` and `auditor` themselves. Both: auditor (who sees the coordinators' pages too)."""
    values = value if isinstance(value, list) else [value] if value is not None else []
    mapping = role_map or {r: r for r in users.ROLES}
    roles = {mapping.get(str(v)) for v in values} & set(users.ROLES)
    if "auditor" in roles:
        return "auditor"
    return "coordinator" if "coordinator" in roles else None
