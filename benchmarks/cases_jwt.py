"""JWT access tokens (RS256, ES256, EdDSA): bearerguard against Authlib,
flask-jwt-extended and a minimal PyJWT decorator."""

from __future__ import annotations

import importlib.util
from typing import Any

from .apps import make_app, pyjwt_decorator, quiet_authlib, require_bearerguard_feature
from .config import Context
from .harness import Case, Feed, Group, Skip
from .tokens import ALGORITHMS, AUDIENCE, ISSUER, Minter, jwks

#: Tokens cycled by cases that validate every request anyway (no cache).
CYCLE = 16


def bearerguard_jwt_protector(issuers: list[tuple[str, dict[str, Any]]]) -> Any:
    """A protector trusting each ``(issuer, jwks)``, with a cache (the default)."""
    from bearerguard import ResourceProtector, TokenCache
    from bearerguard.validators import JWTBearerTokenValidator

    require_bearerguard_feature(JWTBearerTokenValidator, "JWTBearerTokenValidator")
    protector = ResourceProtector(cache=TokenCache(ttl=3600))
    for issuer, keys in issuers:
        validator = JWTBearerTokenValidator(issuer=issuer, audience=AUDIENCE, jwks=keys)
        protector.register_token_validator(validator)
    return protector


def authlib_jwt_app(name: str, keys: Any, alg: str = "RS256") -> Any:
    """Authlib 1.9's RFC 9068 validator; ``get_jwks()`` returns ``keys`` as is.

    ``keys`` a JWKS dict is the documented way ("statically stored in the
    resource server configuration"): Authlib then imports every key on every
    request. A prebuilt ``joserfc`` ``KeySet`` skips that.

    Authlib decodes with joserfc's recommended algorithms only (HS256, RS256,
    ES256), so an EdDSA token is refused as documented; for EdDSA the
    validator's ``authenticate_token`` is Authlib's own with ``algorithms=``
    added, the least change that accepts it.
    """
    from authlib.integrations.flask_oauth2 import ResourceProtector
    from authlib.oauth2.rfc9068 import JWTBearerTokenValidator

    quiet_authlib()

    class StaticJWKSValidator(JWTBearerTokenValidator):  # type: ignore[misc]
        def get_jwks(self) -> Any:
            return keys

    validator_class = StaticJWKSValidator
    if alg not in ("RS256", "ES256"):
        validator_class = _with_algorithms(StaticJWKSValidator, [alg])
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(validator_class(issuer=ISSUER, resource_server=AUDIENCE))
    return make_app(name, require_oauth("profile"))


def _with_algorithms(base: type, algorithms: list[str]) -> type:
    """``base`` whose joserfc decode allows ``algorithms`` (Authlib's method, one arg added)."""
    from authlib._joserfc_helpers import import_any_key
    from authlib.oauth2.rfc6750.errors import InvalidTokenError
    from authlib.oauth2.rfc9068.claims import JWTAccessTokenClaims
    from joserfc import jwt
    from joserfc.errors import JoseError

    class WithAlgorithms(base):  # type: ignore[misc,valid-type]
        def authenticate_token(self, token_string: str) -> Any:
            claims_options = {
                "iss": {"essential": True, "validate": self.validate_iss},
                "exp": {"essential": True},
                "aud": {"essential": True, "value": self.resource_server},
                "sub": {"essential": True},
                "client_id": {"essential": True},
                "iat": {"essential": True},
                "jti": {"essential": True},
                "auth_time": {"essential": False},
                "acr": {"essential": False},
                "amr": {"essential": False},
                "scope": {"essential": False},
                "groups": {"essential": False},
                "roles": {"essential": False},
                "entitlements": {"essential": False},
            }
            key = import_any_key(self.get_jwks())
            try:
                token = jwt.decode(token_string, key=key, algorithms=algorithms)
                return JWTAccessTokenClaims(token.claims, token.header, claims_options)
            except JoseError as exc:
                raise InvalidTokenError(
                    realm=self.realm, extra_attributes=self.extra_attributes
                ) from exc

    return WithAlgorithms


def flask_jwt_extended_app(name: str, alg: str, public_pem: str) -> Any:
    if importlib.util.find_spec("flask_jwt_extended") is None:
        raise Skip("flask-jwt-extended is not installed (the bench extra)", "package")
    from flask_jwt_extended import JWTManager, jwt_required

    app = make_app(name, jwt_required())
    app.config.update(
        JWT_ALGORITHM=alg,
        JWT_PUBLIC_KEY=public_pem,
        JWT_SECRET_KEY="unused-with-a-public-key",
        JWT_TOKEN_LOCATION=["headers"],
        JWT_DECODE_AUDIENCE=AUDIENCE,
        JWT_DECODE_ISSUER=ISSUER,
    )
    JWTManager(app)
    return app


def build(ctx: Context, group: Group) -> None:
    profile = ctx.profile
    for alg in ALGORITHMS:
        key = ctx.key(alg)
        keys = jwks(key)
        mint = Minter(key)
        tag = f"jwt.{alg.lower()}"
        reference = f"{tag}.authlib.jwks-dict"
        target_miss = "miss_rs256" if alg == "RS256" else None
        try:
            protector = bearerguard_jwt_protector([(ISSUER, keys)])
            hit = Feed(mint(CYCLE))
            group.cases.append(
                Case(
                    f"{tag}.bg.hit",
                    make_app(f"{tag}-hit", protector("profile")),
                    hit,
                    authlib=reference,
                    target="hit",
                )
            )
            miss_protector = bearerguard_jwt_protector([(ISSUER, keys)])
            group.cases.append(
                Case(
                    f"{tag}.bg.miss",
                    make_app(f"{tag}-miss", miss_protector("profile")),
                    Feed(mint=ctx.pool(alg).reader()),
                    batch=profile.fixed(80),
                    authlib=reference,
                    target=target_miss,
                )
            )
        except Skip as skip:
            group.skip([f"{tag}.bg.hit", f"{tag}.bg.miss"], skip)
        cycled = mint(CYCLE)
        group.cases.append(
            Case(
                reference,
                authlib_jwt_app(reference, keys, alg),
                Feed(cycled),
                batch=profile.fixed(40),
                target="authlib_jwt_rs256" if alg == "RS256" else None,
            )
        )
        from joserfc.jwk import KeySet

        group.cases.append(
            Case(
                f"{tag}.authlib.keyset",
                authlib_jwt_app(f"{tag}.authlib.keyset", KeySet.import_key_set(keys), alg),
                Feed(cycled),
                batch=profile.fixed(60),
                authlib=reference,
            )
        )
        name = f"{tag}.flask-jwt-extended"
        try:
            group.cases.append(
                Case(
                    name,
                    flask_jwt_extended_app(name, alg, key.public_pem),
                    Feed(cycled),
                    batch=profile.fixed(40),
                    authlib=reference,
                    target="fjwt_rs256" if alg == "RS256" else None,
                )
            )
        except Skip as skip:
            group.skip(name, skip)
        if alg == "RS256":
            public = key.private.public_key()
            group.cases.append(
                Case(
                    f"{tag}.pyjwt-decorator",
                    make_app(f"{tag}-pyjwt", pyjwt_decorator(public, alg, ISSUER, AUDIENCE)),
                    Feed(cycled),
                    batch=profile.fixed(80),
                    authlib=reference,
                    target="pyjwt_rs256",
                )
            )
