"""RFC 6750 on the wire, the same over every front and every validator kind.

Each test runs over ``front`` (Flask, ASGI) x ``kind`` (opaque dict,
database, JWT, introspection), see ``fronts.py``: status, error code, body
and ``WWW-Authenticate`` together, so a front that answers differently from
the other, or a kind the protector reads differently, fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

# The fixtures live in fronts.py, shared with test_asgi*.py; a test's argument
# named like an imported fixture is how pytest injects it.
# ruff: noqa: F811
from .fronts import (  # noqa: F401
    FRONT_BUILDERS,
    MALFORMED,
    Answer,
    Setup,
    front,
    introspection_server,
    kind,
    make,
)
from .opaquekit import OpaqueValidator

BARE = 'Bearer realm="api"'


@pytest.fixture
def setup(make: Any) -> Setup:
    return make()


def refused(answer: Answer, status: int, error: str, description: str | None = None) -> None:
    """The status, body and challenge of a refusal agree with each other."""
    assert answer.status == status, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.json["error"] == error
    described = answer.json.get("error_description")
    if description is not None:
        assert described == description
    if status == 503:  # an outage is no verdict on the credentials: no challenge
        assert "WWW-Authenticate" not in answer.headers
        return
    expected = f'{BARE}, error="{error}"'
    if described is not None:
        expected += f', error_description="{described}"'
    assert answer.challenge.startswith(expected)


# -- the header ------------------------------------------------------------------------


def test_no_credentials_gets_bare_challenge(setup: Setup) -> None:
    answer = setup.client.get("/r")
    assert answer.status == 401
    assert answer.challenge == BARE
    assert answer.json["error"] == "missing_authorization"
    assert answer.headers["Cache-Control"] == "no-store"


def test_valid_token(setup: Setup) -> None:
    token = setup.backend.mint(sub="alice")
    answer = setup.client.get("/r", setup.bearer(token))
    assert answer.status == 200
    assert answer.json == {"sub": "alice" if setup.backend.has_claims else None}


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_scheme_is_case_insensitive(setup: Setup, scheme: str) -> None:
    token = setup.backend.mint()
    assert setup.client.get("/r", {"Authorization": f"{scheme} {token}"}).status == 200


def test_unknown_token_gets_invalid_token(setup: Setup) -> None:
    answer = setup.client.get("/r", {"Authorization": "Bearer nope"})
    refused(answer, 401, "invalid_token")
    assert answer.challenge == (
        f'{BARE}, error="invalid_token", error_description="{answer.json["error_description"]}"'
    )


def test_insufficient_scope_is_403_with_scope(setup: Setup) -> None:
    answer = setup.client.get("/admin", setup.bearer(setup.backend.mint()))
    refused(answer, 403, "insufficient_scope")
    assert answer.challenge.endswith('scope="admin"')


def test_realm_is_configurable_and_quoted(make: Any) -> None:
    assert make(realm='my "api"').client.get("/r").challenge == 'Bearer realm="my \\"api\\""'


def test_no_realm(make: Any) -> None:
    assert make(realm=None).client.get("/r").challenge == "Bearer"


# -- the malformed-header corpus: 400 or 401, never anything else ----------------------


def test_corpus_is_big_enough() -> None:
    assert len(MALFORMED) >= 30


@pytest.mark.parametrize(
    ("header", "status", "error"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_authorization_headers(
    setup: Setup, header: str, status: int, error: str | None
) -> None:
    # Sent raw, as a client that does not check its headers would: past the
    # test clients' own checks, straight into the framework's request.
    answer = setup.client.get("/r", raw_authorization=header)
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/json"
    if error is None:
        assert answer.challenge == BARE
    else:
        refused(answer, status, error)
    # Nothing from the request is echoed back.
    assert "abc" not in answer.text
    assert not header.strip() or header.strip() not in answer.text


def test_max_token_length_is_configurable(make: Any) -> None:
    answer = make(max_token_length=10).client.get("/r", {"Authorization": "Bearer " + "a" * 11})
    refused(answer, 400, "invalid_request", "access token too large")


def test_oversized_token_never_reaches_the_validator(setup: Setup) -> None:
    setup.client.get("/r", {"Authorization": "Bearer " + "a" * 9000})
    assert setup.backend.calls == 0


# -- other places a token can be sent (RFC 6750 §2.2, §2.3) -------------------------------


def test_query_token_is_off_by_default(setup: Setup) -> None:
    answer = setup.client.get("/r", query={"access_token": setup.backend.mint()})
    assert answer.status == 401
    assert answer.challenge == BARE


def test_form_token_is_off_by_default(setup: Setup) -> None:
    answer = setup.client.post("/r", data={"access_token": setup.backend.mint()})
    assert answer.status == 401
    assert answer.challenge == BARE


def test_query_token_when_enabled(make: Any) -> None:
    setup = make(allow_query_token=True)
    answer = setup.client.get("/r", query={"access_token": setup.backend.mint(sub="bob")})
    assert answer.status == 200
    assert answer.json == {"sub": "bob" if setup.backend.has_claims else None}


def test_form_token_when_enabled(make: Any) -> None:
    setup = make(allow_form_token=True)
    token = setup.backend.mint()
    assert setup.client.post("/r", data={"access_token": token}).status == 200
    # Not from a GET's query, nor from a JSON body (§2.2 conditions).
    assert setup.client.post("/r", json={"access_token": token}).status == 401


TWO_PLACES: list[tuple[str, bool, dict[str, Any], dict[str, bool]]] = [
    ("header+query", True, {"query": {"access_token": "T"}}, {"allow_query_token": True}),
    ("header+form", True, {"data": {"access_token": "T"}}, {"allow_form_token": True}),
    (
        "query+form",
        False,
        {"query": {"access_token": "T"}, "data": {"access_token": "T"}},
        {"allow_query_token": True, "allow_form_token": True},
    ),
    (
        "query-twice",
        False,
        {"query": [("access_token", "T"), ("access_token", "T")]},
        {"allow_query_token": True},
    ),
]


@pytest.mark.parametrize(
    ("in_header", "places", "options"),
    [t[1:] for t in TWO_PLACES],
    ids=[t[0] for t in TWO_PLACES],
)
def test_token_in_two_places_is_invalid_request(
    make: Any, in_header: bool, places: dict[str, Any], options: dict[str, bool]
) -> None:
    setup = make(**options)
    token = setup.backend.mint()

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: token for k in value}
        return [(k, token) for k, _ in value]

    places = {where: fill(value) for where, value in places.items()}
    headers = setup.bearer(token) if in_header else {}
    answer = setup.client.post("/r", headers, **places)
    refused(answer, 400, "invalid_request", "access token sent in more than one place")


def test_settings_changed_after_a_token_is_cached_hold_for_its_next_request(make: Any) -> None:
    """A cached token is answered from the cache only while nothing else must
    be checked: turning query tokens on, or the cache off, after it was
    cached takes effect on the very next request."""
    setup = make()
    token = setup.backend.mint()
    assert setup.client.get("/r", setup.bearer(token)).status == 200  # now cached
    setup.protector.allow_query_token = True
    answer = setup.client.get("/r", setup.bearer(token), query={"access_token": token})
    refused(answer, 400, "invalid_request", "access token sent in more than one place")
    setup.protector.allow_query_token = False
    setup.protector.max_token_length = len(token) - 1
    refused(setup.client.get("/r", setup.bearer(token)), 400, "invalid_request")
    setup.protector.max_token_length = len(token)
    assert setup.client.get("/r", setup.bearer(token)).status == 200
    setup.protector.cache = None
    before = setup.protector.stats()["validations"]["accepted"]
    assert setup.client.get("/r", setup.bearer(token)).status == 200
    assert setup.protector.stats()["cache"] is None
    assert setup.protector.stats()["validations"]["accepted"] == before + 1


def test_a_cache_set_on_a_protector_serves_it_alone(make: Any) -> None:
    first, second = make(), make()
    with pytest.raises(ValueError, match="serves another ResourceProtector"):
        second.protector.cache = first.protector.cache


def test_malformed_query_token_is_invalid_request(make: Any) -> None:
    answer = make(allow_query_token=True).client.get("/r", query={"access_token": "a b"})
    refused(answer, 400, "invalid_request")


# -- cache and expiry --------------------------------------------------------------------


def test_cache_hit_never_outlives_exp(setup: Setup) -> None:
    token = setup.backend.mint(exp_in=30)
    assert setup.client.get("/r", setup.bearer(token)).status == 200
    setup.clock.advance(29)
    assert setup.client.get("/r", setup.bearer(token)).status == 200
    assert setup.backend.calls == 1
    setup.clock.advance(1)
    refused(setup.client.get("/r", setup.bearer(token)), 401, "invalid_token", "token expired")


def test_cache_ttl_bounds_staleness(setup: Setup) -> None:
    token = setup.backend.mint()
    setup.client.get("/r", setup.bearer(token))
    setup.clock.advance(setup.protector.cache.ttl + 1)
    assert setup.client.get("/r", setup.bearer(token)).status == 200
    assert setup.backend.calls == 2


def test_cache_none_validates_every_request(make: Any) -> None:
    setup = make(cache=None)
    token = setup.backend.mint()
    for _ in range(3):
        assert setup.client.get("/r", setup.bearer(token)).status == 200
    assert setup.backend.calls == 3


# -- revocation ---------------------------------------------------------------------------


def test_revoke_uncached_token_refuses_it(setup: Setup) -> None:
    token = setup.backend.mint()
    setup.protector.revoke(token)
    refused(setup.client.get("/r", setup.bearer(token)), 401, "invalid_token", "token revoked")


def test_revoke_cached_token_refuses_it(setup: Setup) -> None:
    token = setup.backend.mint()
    assert setup.client.get("/r", setup.bearer(token)).status == 200
    setup.protector.revoke(token)
    refused(setup.client.get("/r", setup.bearer(token)), 401, "invalid_token", "token revoked")


def test_revoke_lasts_until_the_token_would_have_expired(setup: Setup) -> None:
    token = setup.backend.mint(exp_in=600)
    assert setup.client.get("/r", setup.bearer(token)).status == 200
    setup.protector.revoke(token)
    setup.clock.advance(599)
    answer = setup.client.get("/r", setup.bearer(token))
    refused(answer, 401, "invalid_token", "token revoked")
    assert setup.protector.revocations.tokens  # still listed while it could matter
    setup.clock.advance(2)
    setup.protector.revocations.purge()
    assert not setup.protector.revocations.tokens


def _with_claims(setup: Setup) -> None:
    if not setup.backend.has_claims:
        pytest.skip(f"a {setup.backend.name} token carries no sub, client_id, iat or jti")


def test_revoke_subject_and_client(setup: Setup) -> None:
    _with_claims(setup)
    now = int(setup.clock())
    old = setup.backend.mint(sub="s1", client_id="c1", iat=now - 10)
    assert setup.client.get("/r", setup.bearer(old)).status == 200
    setup.protector.revoke_subject("s1")
    refused(setup.client.get("/r", setup.bearer(old)), 401, "invalid_token")
    setup.clock.advance(5)
    new = setup.backend.mint(sub="s1", client_id="c1", iat=int(setup.clock()))
    assert setup.client.get("/r", setup.bearer(new)).status == 200
    setup.protector.revoke_client("c1")
    refused(setup.client.get("/r", setup.bearer(new)), 401, "invalid_token")
    other = setup.backend.mint(sub="s2", client_id="c2", iat=int(setup.clock()))
    assert setup.client.get("/r", setup.bearer(other)).status == 200


def test_revoke_jti(setup: Setup) -> None:
    _with_claims(setup)
    token = setup.backend.mint(jti="J1", exp_in=600)
    assert setup.client.get("/r", setup.bearer(token)).status == 200
    setup.protector.revoke_jti("J1", setup.clock() + 600)
    refused(setup.client.get("/r", setup.bearer(token)), 401, "invalid_token")


# -- outages ------------------------------------------------------------------------------


def test_backend_failure_is_503_and_not_cached(setup: Setup) -> None:
    token = setup.backend.mint()
    setup.backend.fail(True)
    answer = setup.client.get("/r", setup.bearer(token))
    refused(answer, 503, "temporarily_unavailable")
    assert answer.headers["Retry-After"] == "5"
    assert token not in answer.text
    setup.backend.fail(False)
    assert setup.client.get("/r", setup.bearer(token)).status == 200


# -- user hooks (opaque validators written for the test) ----------------------------------


def _hooked(make: Any, validator: OpaqueValidator) -> tuple[Setup, str]:
    setup = make()
    setup.protector = type(setup.protector)(clock=setup.clock)
    setup.protector.register_token_validator(validator)

    setup.client = FRONT_BUILDERS[setup.front](setup.protector)
    return setup, validator.issue(exp=setup.clock() + 60)


@pytest.mark.parametrize("kind", ["opaque"], indirect=True)
def test_request_invalid_hook_gives_400(make: Any) -> None:
    class NeedsDevice(OpaqueValidator):
        def request_invalid(self, request: Any) -> bool:
            return "X-Device" not in request.headers

    setup, token = _hooked(make, NeedsDevice())
    refused(setup.client.get("/r", setup.bearer(token)), 400, "invalid_request")
    assert setup.client.get("/r", {**setup.bearer(token), "X-Device": "1"}).status == 200


@pytest.mark.parametrize("kind", ["opaque"], indirect=True)
def test_a_hook_after_the_lookup_that_raises_is_503(make: Any) -> None:
    """token_revoked (or get_scope, is_expired, reading roles) failing is an outage, not a 500."""

    class BrokenRevocationCheck(OpaqueValidator):
        def token_revoked(self, token: Any) -> bool:
            raise ConnectionError("revocation table unreachable")

    setup, token = _hooked(make, BrokenRevocationCheck())
    refused(setup.client.get("/r", setup.bearer(token)), 503, "temporarily_unavailable")


HOOK_DESCRIPTIONS = [
    ("quote", 'tenant "acme" suspended', "tenant 'acme' suspended"),
    ("backslash", "path C:\\tenants\\acme", "path C:?tenants?acme"),
    ("non-ascii", "Mandant gesperrt: M\u00fcller \U0001f600", "Mandant gesperrt: M?ller ?"),
    ("control", "bell\x07 nul\x00 tab\t del\x7f", "bell? nul? tab? del?"),
    ("crlf", "suspended\r\nSet-Cookie: session=evil", "suspended??Set-Cookie: session=evil"),
    ("only-unsafe", '"\\\r\n', "'???"),
]


@pytest.mark.parametrize("kind", ["opaque"], indirect=True)
@pytest.mark.parametrize(
    ("text", "rendered"), [d[1:] for d in HOOK_DESCRIPTIONS], ids=[d[0] for d in HOOK_DESCRIPTIONS]
)
def test_any_description_from_a_hook_renders_safely(make: Any, text: str, rendered: str) -> None:
    from bearerguard.errors import InvalidTokenError

    validator = OpaqueValidator()
    setup, token = _hooked(make, validator)
    validator.fault = InvalidTokenError(text)
    answer = setup.client.get("/r", setup.bearer(token))
    assert answer.status == 401
    assert answer.json == {"error": "invalid_token", "error_description": rendered}
    assert answer.challenge == (f'{BARE}, error="invalid_token", error_description="{rendered}"')
    assert "Set-Cookie" not in answer.headers
    for value in answer.headers.values():
        assert all(" " <= c <= "~" for c in value), value
