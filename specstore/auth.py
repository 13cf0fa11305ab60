"""Permission tokens: RS256 JWTs issued by the auth service, verified here.

The public key comes from one of three sources, chosen by configuration:

* :class:`StaticPublicKey`: ``AUTH_PUBLIC_KEY`` (PEM text or a file);
* :class:`RemotePublicKey`: fetched from ``http://<AUTH_SERVER>/auth/public-key``
  on first use, cached, refreshed on a TTL and (rate-limited) when a token
  fails to verify, so a rotated key is picked up; while the auth service is
  down the last good key keeps working;
* :class:`LocalKeyPair`: neither is set, so the installation makes its own
  pair and ``specstore token USERID`` signs tokens with it.

Only RS256 is accepted, named explicitly: the key type alone never decides
the algorithm.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cachetools import LRUCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from .errors import Forbidden, ServiceUnavailable, Unauthorized
from .http_client import HttpClient, PeerUnavailable
from .store.installation import InstallationValues

ALGORITHMS = ["RS256"]
# Real permission tokens are well under 1 KiB; anything much larger is refused
# before any parsing is spent on it.
MAX_TOKEN_LENGTH = 4096
KEY_TTL_SECONDS = 3600.0
KEY_REFRESH_INTERVAL_SECONDS = 30.0
# Tokens verified, kept by each process so that a client's next request with the same token
# is not checked again (the auth service's tokens carry no expiry).
VERIFIED_TOKENS = 4096
# Claims that make a token's validity depend on the time: such a token is checked each time.
TIME_CLAIMS = frozenset({"exp", "nbf", "iat"})


class PublicKeySource(Protocol):
    def has_key(self) -> bool:
        """Whether a key is at hand now, without fetching one."""

    def current(self) -> RSAPublicKey:
        """The key to verify with; :class:`ServiceUnavailable` when none can be had."""

    def refreshed(self) -> RSAPublicKey | None:
        """A different key than :meth:`current` gave, if one can be had now, else None."""


def load_public_key(pem: str | bytes) -> RSAPublicKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError("the public key is not an RSA key")
    return key


class StaticPublicKey:
    def __init__(self, pem: str) -> None:
        self._key = load_public_key(pem)

    def has_key(self) -> bool:
        return True

    def current(self) -> RSAPublicKey:
        return self._key

    def refreshed(self) -> RSAPublicKey | None:
        return None


class LocalKeyPair:
    """The installation's own key pair, created on first use and shared by every worker."""

    def __init__(self, installation: InstallationValues) -> None:
        self._installation = installation
        self._private: RSAPrivateKey | None = None
        self._public: RSAPublicKey | None = None

    def has_key(self) -> bool:
        return True

    def private_key(self) -> RSAPrivateKey:
        if self._private is None:
            pem = self._installation.local_private_key_pem().encode("ascii")
            key = serialization.load_pem_private_key(pem, password=None)
            assert isinstance(key, RSAPrivateKey)
            self._private = key
        return self._private

    def current(self) -> RSAPublicKey:
        if self._public is None:
            self._public = self.private_key().public_key()
        return self._public

    def refreshed(self) -> RSAPublicKey | None:
        return None


class RemotePublicKey:
    """The auth service's key, fetched lazily and cached."""

    def __init__(
        self,
        http: HttpClient,
        auth_server: str,
        ttl: float = KEY_TTL_SECONDS,
        refresh_interval: float = KEY_REFRESH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        base = auth_server if "://" in auth_server else f"http://{auth_server}"
        self.url = base.rstrip("/") + "/auth/public-key"
        self._http = http
        self._ttl = ttl
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._key: RSAPublicKey | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")

    def has_key(self) -> bool:
        return self._key is not None

    def _fetch(self) -> RSAPublicKey | None:
        """Fetch the key now (call with the lock held); None when that fails."""
        self._attempted_at = self._clock()
        try:
            key = load_public_key(self._http.get(self.url).content)
        except (PeerUnavailable, ValueError):
            return None
        self._key, self._fetched_at = key, self._attempted_at
        return key

    def current(self) -> RSAPublicKey:
        with self._lock:
            now = self._clock()
            stale = now - self._fetched_at >= self._ttl
            # A stale key is refetched, but not more often than the refresh
            # interval while the auth service is failing.
            if stale and now - self._attempted_at >= self._refresh_interval:
                self._fetch()
            if self._key is None:
                raise ServiceUnavailable(
                    "the auth service's public key cannot be had right now, try again shortly"
                )
            return self._key

    def refreshed(self) -> RSAPublicKey | None:
        with self._lock:
            if self._clock() - self._attempted_at < self._refresh_interval:
                return None
            old = self._key
            new = self._fetch()
            if new is None or old is None or _same_key(new, old):
                return None
            return new


def _same_key(one: RSAPublicKey, other: RSAPublicKey) -> bool:
    return one.public_numbers() == other.public_numbers()


@dataclass(frozen=True)
class Identity:
    """Who a verified token speaks for."""

    userid: str
    claims: dict[str, Any]

    def require_user(self, userid: str) -> None:
        if self.userid != userid:
            raise Forbidden(f"the token is for user {self.userid!r}, not for {userid!r}")


def _reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return f"the token must be signed with {' or '.join(ALGORITHMS)}"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token's signature does not verify"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token has no {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token is not for this audience (AUTH_AUDIENCE)"
    if isinstance(exc, jwt.DecodeError):
        return "the token is malformed"
    return f"the token is not valid: {exc}"


class TokenVerifier:
    """Checks permission tokens: RS256 from the auth service's key, a ``userid``, the
    ``service`` (when the token names one), and, with ``audience`` set, an ``aud`` that
    names it. Without ``audience``, ``aud`` is not looked at (the DataHub auth service
    sets none).

    A token that verified, and whose validity does not depend on the time (no ``exp``,
    ``nbf`` or ``iat``), is remembered with the key that verified it: while that key is
    the current one, the token is not checked again."""

    def __init__(self, keys: PublicKeySource, service: str, audience: str | None = None) -> None:
        self.keys = keys
        self.service = service
        self.audience = audience
        self._verified: LRUCache[str, tuple[RSAPublicKey, Identity]] = LRUCache(VERIFIED_TOKENS)
        self._lock = threading.Lock()

    def _decode(self, token: str, key: RSAPublicKey) -> dict[str, Any]:
        if self.audience:
            return jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                options={"require": ["userid", "aud"]},
            )
        return jwt.decode(
            token,
            key=key,
            algorithms=ALGORITHMS,
            options={"require": ["userid"], "verify_aud": False},
        )

    def verify(self, token: str | None) -> Identity:
        """The identity a permission token speaks for.

        :class:`Unauthorized` when there is no token or it does not verify,
        :class:`Forbidden` when it is for another service,
        :class:`ServiceUnavailable` when there is no key to check it with.
        """
        if not token:
            raise Unauthorized("a permission token is required in the Auth-Token header")
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
        key = self.keys.current()
        with self._lock:
            known = self._verified.get(token)
        if known is not None and known[0] is key:
            return known[1]
        try:
            try:
                claims = self._decode(token, key)
            except jwt.InvalidSignatureError:
                # Perhaps the auth service rotated its key: check once with a fresh one.
                fresh = self.keys.refreshed()
                if fresh is None:
                    raise
                key, claims = fresh, self._decode(token, fresh)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(_reason(exc)) from None
        userid = claims["userid"]
        if not isinstance(userid, str) or not userid:
            raise Unauthorized("the token's userid claim is not a user id")
        service = claims.get("service")
        if service is not None and service != self.service:
            raise Forbidden(f"the token is for the service {service!r}, not {self.service!r}")
        identity = Identity(userid=userid, claims=claims)
        if TIME_CLAIMS.isdisjoint(claims):
            with self._lock:
                self._verified[token] = (key, identity)
        return identity


def issue_token(private_key: RSAPrivateKey, userid: str, service: str) -> str:
    """A permission token as the auth service would issue it (no ``exp``, like the real ones)."""
    return jwt.encode(
        {"userid": userid, "permissions": {}, "service": service},
        private_key,
        algorithm="RS256",
    )
