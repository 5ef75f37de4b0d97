"""The framework-neutral core, used as a front uses it: no web framework here.

``Guard`` is what ``ResourceProtector`` (Flask) and ``bearerguard.starlette``
stand on: a request handed over as plain :class:`Credentials`, a decision,
a refusal rendered to the same bytes for every front.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bearerguard.core.credentials import Credentials, token_of
from bearerguard.core.guard import Guard
from bearerguard.core.requirements import compile_requirement
from bearerguard.core.stats import CacheStats, GuardStats
from bearerguard.core.values import values_of
from bearerguard.errors import (
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    UnknownTokenError,
)
from bearerguard.validators import BearerTokenValidator, JWTBearerTokenValidator

from .conftest import FakeClock
from .jwtkit import AUDIENCE, ISSUER, cached_keypair, call, jwks, make_token, protected_app

PROFILE = compile_requirement("profile", "AND", {})


class DictTokens(BearerTokenValidator):
    """Opaque tokens from a dict of claims, as an app would write one."""

    def __init__(self, tokens: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.tokens = tokens

    def authenticate_token(self, token_string: str) -> Any:
        return self.tokens.get(token_string)


def _guard(clock: FakeClock, **claims: Any) -> Guard:
    guard = Guard(clock=clock)
    token = {"scope": "profile", "sub": "u1", "exp": clock() + 60, **claims}
    guard.register_token_validator(DictTokens({"tok": token}))
    return guard


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("a  b", {"a", "b"}),
        (["a", 1, None, "b"], {"a", "b"}),
        (("a",), {"a"}),
        ({"a": True}, set()),
        (b"a b", set()),
        (None, set()),
        (5, set()),
    ],
    ids=["string", "list", "tuple", "object", "bytes", "null", "number"],
)
def test_values_of_reads_strings_and_lists_only(value: Any, words: set[str]) -> None:
    assert values_of(value) == words


@pytest.mark.parametrize("kind", ["jwt", "opaque"])
def test_a_claim_sent_as_an_object_grants_no_role(clock: FakeClock, kind: str) -> None:
    """``roles={"student": ...}`` is not a list of roles: its keys grant nothing.

    (They did: the roles check read any iterable, and a JSON object iterates
    over its keys, so ``{"student": false}`` passed ``roles=["student"]``.)
    """
    from bearerguard import ResourceProtector

    key = cached_keypair("RS256", "rsa-core")
    protector = ResourceProtector(clock=clock)
    if kind == "jwt":
        protector.register_token_validator(
            JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key))
        )
        as_object = make_token(key, now=clock(), roles={"student": False})
        as_list = make_token(key, now=clock(), roles=["student"])
    else:
        tokens = {"obj": {"roles": {"student": False}}, "list": {"roles": ["student"]}}
        protector.register_token_validator(DictTokens(tokens))
        as_object, as_list = "obj", "list"
    app = protected_app(protector)

    refused = call(app, as_object, "/students")
    assert (refused.status, refused.error) == (403, "insufficient_scope")
    assert call(app, as_list, "/students").status == 200


def test_the_guard_decides_on_plain_values(clock: FakeClock) -> None:
    guard = _guard(clock)
    assert guard.try_cached("Bearer tok", PROFILE) is None  # not validated yet: a miss

    info = guard.authorize(Credentials("Bearer tok"), PROFILE)
    assert info is not None and info.token["sub"] == "u1"
    hit = guard.try_cached("Bearer tok", PROFILE)
    assert hit is not None and hit.token is info.token

    with pytest.raises(InsufficientScopeError) as refused:
        guard.try_cached("Bearer tok", compile_requirement("admin", "AND", {}))
    assert refused.value.realm == "api" and refused.value.scope == "admin"
    with pytest.raises(UnknownTokenError):
        guard.authorize(Credentials("Bearer other"), PROFILE)
    assert guard.authorize(Credentials(None), PROFILE, optional=True) is None

    stats = guard.stats()
    assert stats["validations"] == {
        "accepted": 2,
        "refused": {"insufficient_scope": 1, "invalid_token": 1},
    }
    assert stats["cache"] is not None and stats["cache"]["hits"] == 2


def test_a_revoked_hit_goes_to_authorize_which_refuses_it(clock: FakeClock) -> None:
    guard = _guard(clock)
    assert guard.authorize(Credentials("Bearer tok"), PROFILE) is not None
    guard.revoke("tok")
    assert guard.try_cached("Bearer tok", PROFILE) is None
    with pytest.raises(InvalidTokenError) as refused:
        guard.authorize(Credentials("Bearer tok"), PROFILE)
    assert refused.value.description == "token revoked"


def test_render_gives_every_front_the_same_bytes(clock: FakeClock) -> None:
    guard = _guard(clock)
    with pytest.raises(MissingTokenError) as missing:
        guard.authorize(Credentials(None), PROFILE)
    status, headers, body = guard.render(missing.value)
    assert status == 401
    assert ("WWW-Authenticate", 'Bearer realm="api"') in headers
    assert ("Cache-Control", "no-store") in headers
    assert json.loads(body) == {
        "error": "missing_authorization",
        "error_description": "The request carries no access token.",
    }


def test_stats_have_the_shape_they_are_typed_with(clock: FakeClock) -> None:
    stats = _guard(clock).stats()
    assert set(stats) == set(GuardStats.__annotations__)
    assert stats["cache"] is not None
    assert set(stats["cache"]) == set(CacheStats.__annotations__)


def test_a_token_is_read_from_one_place_only() -> None:
    def read(**values: Any) -> str:
        return token_of(Credentials(**values), max_length=100, query=True, form=True)

    assert read(authorization="Bearer a") == "a"
    assert read(authorization=None, query={"access_token": ["q"]}) == "q"
    assert read(authorization=None, method="POST", form={"access_token": ["f"]}) == "f"
    with pytest.raises(MissingTokenError):  # a GET's body is no place for a token
        read(authorization=None, method="GET", form={"access_token": ["f"]})
    with pytest.raises(InvalidRequestError, match="more than one place"):
        read(authorization="Bearer a", query={"access_token": ["q"]})
    with pytest.raises(InvalidRequestError, match="more than one place"):
        read(authorization=None, query={"access_token": ["q", "r"]})


def test_a_cached_token_with_hooks_is_decided_by_them_on_a_hit(clock: FakeClock) -> None:
    """``validate_token`` runs on every request, cached or not; ``try_cached``
    runs it when given what the hook receives as its request, else defers."""
    seen: list[Any] = []

    class Hooked(DictTokens):
        def validate_token(self, token: Any, scopes: Any, request: Any) -> None:
            seen.append(request)
            if request == "banned":
                raise InvalidRequestError("banned client")

    guard = Guard(clock=clock)
    guard.register_token_validator(Hooked({"tok": {"scope": "profile", "exp": clock() + 60}}))
    assert guard.authorize(Credentials("Bearer tok", request="first"), PROFILE) is not None

    assert guard.try_cached("Bearer tok", PROFILE) is None  # the hook needs its request
    assert guard.try_cached("Bearer tok", PROFILE, lambda: "ok") is not None
    with pytest.raises(InvalidRequestError, match="banned client"):
        guard.try_cached("Bearer tok", PROFILE, lambda: "banned")
    assert seen == ["first", "ok", "banned"]
    assert guard.stats()["validations"] == {"accepted": 2, "refused": {"invalid_request": 1}}


def test_replaced_is_dataclasses_replace_for_every_field() -> None:
    """``replaced`` (the miss path's copy of a TokenInfo) changes exactly what
    it is told to, whichever field, and refuses what TokenInfo has not."""
    import dataclasses

    from bearerguard.core.tokeninfo import TokenInfo, replaced

    full = TokenInfo(**{f.name: object() for f in dataclasses.fields(TokenInfo)})
    for field in dataclasses.fields(TokenInfo):
        new = object()
        mine = replaced(full, **{field.name: new})
        assert mine == dataclasses.replace(full, **{field.name: new})
        assert getattr(mine, field.name) is new
        assert getattr(full, field.name) is not new  # the original untouched
    assert replaced(full) == full
    with pytest.raises(TypeError):
        replaced(full, not_a_field=1)


def test_new_info_is_the_frozen_token_info_the_dataclass_builds() -> None:
    """``new_info`` (the validators' fast constructor) takes exactly
    TokenInfo's fields with its defaults, and gives the same frozen object."""
    import dataclasses
    import inspect
    from dataclasses import MISSING

    from bearerguard.core.tokeninfo import TokenInfo, new_info

    fields = dataclasses.fields(TokenInfo)
    parameters = list(inspect.signature(new_info).parameters.values())
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, field in zip(parameters, fields, strict=True):
        default = field.default
        assert parameter.default is (inspect.Parameter.empty if default is MISSING else default)
    values = {f.name: object() for f in fields}
    made = new_info(**values)
    assert type(made) is TokenInfo
    assert made == TokenInfo(**values)
    assert all(getattr(made, name) is value for name, value in values.items())
    assert new_info(token="t", scopes=frozenset()) == TokenInfo(token="t", scopes=frozenset())
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.scopes = frozenset({"admin"})  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del made.token  # type: ignore[misc]
