"""Property-based tests: hostile headers, tokens and backend answers through a real app.

One Flask app is protected by every kind of validator at once: JWTs checked
against a static JWKS, opaque tokens looked up in a dict and in a SQLite
database, and opaque tokens introspected at a real server on 127.0.0.1. On
every generated request the invariants are the same:

* never a 500 or an exception out of the view;
* a 200 only for a token that a configured key signed (checked independently,
  with PyJWT) or that the dict, the database or the introspection server knows;
* every refusal is 400, 401 or 403 with the RFC 6750 ``error`` code in the
  body and the same code and description in ``WWW-Authenticate``, and never
  echoes the token.

Time is a fixed ``FakeClock``, so whether a signed token is valid is a pure
function of its claims, and the tests assert it exactly. Examples are few
(``max_examples`` ≤ 200) to keep the module under ~20 s; ``make fuzz`` is where
long random runs belong.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt as pyjwt
import pytest
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.orm import scoped_session, sessionmaker
from sqlalchemy.pool import StaticPool
from werkzeug.datastructures import WWWAuthenticate

from bearerguard import ResourceProtector, TokenCache
from bearerguard.sqla import create_bearer_token_validator
from bearerguard.validators import (
    BearerTokenValidator,
    IntrospectionTokenValidator,
    JWTBearerTokenValidator,
)
from bearerguard.validators.jwt import ANY_AUDIENCE

from .conftest import FakeClock
from .jwtkit import AUDIENCE, ISSUER, Keypair, b64url, cached_keypair, jwks, make_token
from .jwtkit import loopback_client as _loopback_client
from .models import Base, Token
from .opaquekit import OpaqueValidator, opaque_claims
from .servers import LoopbackServer, Reply, Seen

NOW = 1_800_000_000.0
LEEWAY = 60.0
EC = cached_keypair("ES256", "prop-ec")
RSA = cached_keypair("RS256", "prop-rsa")
#: Same kid and algorithm as EC, another private key: what a forger holds.
FORGER = Keypair.generate("ES256", kid="prop-ec")
EVIL_ISSUER = "https://evil.example.com"

DICT_TOKENS = {"dict-token-1", "dict-token-2.with~chars+/=="}
DB_TOKENS = {"db-token-1", "DB-token-2"}
INTROSPECTED = {"intro-token-1"}
KNOWN_OPAQUE = DICT_TOKENS | DB_TOKENS | INTROSPECTED
VALID_JWTS = [
    make_token(EC, now=NOW, scope="profile email"),
    make_token(RSA, now=NOW, scope="profile email"),
    make_token(EC, now=NOW, scope="profile", header={"kid": None}),
]

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every fixed text bearerguard writes into a response: a "token" that is a
# substring of these is not an echo.
_OWN_TEXT = (
    'Bearer realm="api" error invalid_request invalid_token insufficient_scope '
    "missing_authorization unsupported_token_type temporarily_unavailable no-store no-cache "
    "application/json "
    "The request carries no access token. The request is malformed. The access token is "
    "invalid. The access token lacks the scope this resource needs. The token cannot be "
    "checked right now. unknown token token expired token revoked signing keys unavailable "
    "malformed Authorization header missing token in Authorization header access token too "
    "large unsupported authentication scheme untrusted issuer malformed token invalid "
    "signature algorithm not allowed unsupported critical header unknown signing key "
    "issuer mismatch missing claim: exp aud invalid claim: nbf iat token not yet valid token "
    "issued in the future audience mismatch token is not active malformed exp not a bearer "
    "token sender-constrained token profile email Retry-After Content-Type Content-Length "
    "WWW-Authenticate Cache-Control Pragma "
    '{"error": "", "error_description": ""}'
)


# -- the app under test ------------------------------------------------------------


def dict_validator() -> OpaqueValidator:
    record = opaque_claims(scope="profile email", exp=NOW + 3600, sub="dict-user")
    return OpaqueValidator({token: dict(record) for token in DICT_TOKENS})


class AuthServer:
    """Introspection: ``/introspect`` knows INTROSPECTED; ``/answer`` says ``raw``."""

    def __init__(self) -> None:
        self.raw = '{"active": false}'

    def __call__(self, seen: Seen) -> Reply:
        if seen.path == "/answer":
            return Reply(200, self.raw, {"Content-Type": "application/json"})
        token = parse_qs(seen.body.decode()).get("token", [""])[0]
        if token in INTROSPECTED:
            answer = {"active": True, "scope": "profile email", "exp": NOW + 3600, "sub": "i"}
            return Reply(200, answer)
        return Reply(200, {"active": False})


@dataclass
class Scene:
    client: Any
    auth: AuthServer
    answers: Any  # a client whose only validator introspects at /answer


def _views(protector: ResourceProtector) -> Flask:
    app = Flask(__name__)
    for path, guard in {
        "/profile": protector("profile"),
        "/any": protector(),
        "/admin": protector("admin"),
        "/both": protector("profile email"),
    }.items():
        app.add_url_rule(path, path, guard(lambda: "ok"))
    return app


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    Base.metadata.create_all(engine)
    session = scoped_session(sessionmaker(engine))
    session.add_all(
        Token(access_token=t, scope="profile email", issued_at=int(NOW), expires_in=3600)
        for t in DB_TOKENS
    )
    session.commit()
    auth = AuthServer()
    server = LoopbackServer(auth)
    http = _loopback_client()
    clock = FakeClock(NOW)

    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(EC, RSA), leeway=LEEWAY)
    )
    protector.register_token_validator(dict_validator())
    protector.register_token_validator(create_bearer_token_validator(session, Token)())
    protector.register_token_validator(
        IntrospectionTokenValidator(
            server.url + "/introspect",
            "rs",
            "secret",
            audience=ANY_AUDIENCE,  # the answers here carry no aud
            http=http,
            clock=clock,
        )
    )
    app = _views(protector)
    app.teardown_appcontext(lambda _exc: session.remove())

    answering = ResourceProtector(clock=clock, cache=None)
    answering.register_token_validator(
        IntrospectionTokenValidator(
            server.url + "/answer",
            "rs",
            "secret",
            audience=ANY_AUDIENCE,  # the answers here carry no aud
            http=http,
            clock=clock,
            leeway=LEEWAY,
        )
    )
    yield Scene(app.test_client(), auth, _views(answering).test_client())
    server.close()
    http.close()
    session.remove()
    engine.dispose()


def send(client: Any, header: str | None, path: str = "/profile") -> Any:
    environ = {} if header is None else {"HTTP_AUTHORIZATION": header}
    return client.get(path, environ_overrides=environ)


# -- the invariants ----------------------------------------------------------------


def assert_rfc6750(response: Any, token: str | None, *, outage_ok: bool = False) -> str | None:
    """Check a response's shape; return its ``error`` code (None for a 200)."""
    status = response.status_code
    allowed = (200, 400, 401, 403, 503) if outage_ok else (200, 400, 401, 403)
    assert status in allowed, f"status {status}: {response.get_data(as_text=True)[:300]!r}"
    text = response.get_data(as_text=True)
    if token is not None and len(token) >= 6 and token not in _OWN_TEXT:
        assert token not in text, "the token is echoed in the body"
        for name, value in response.headers.items():
            assert token not in value, f"the token is echoed in the {name} header"
    if status == 200:
        return None
    body = response.get_json(silent=True)
    assert isinstance(body, dict) and set(body) == {"error", "error_description"}, text
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert response.headers.get("Cache-Control") == "no-store"
    error = body["error"]
    challenge = response.headers.get("WWW-Authenticate")
    if status == 503:
        assert error == "temporarily_unavailable"
        assert int(response.headers["Retry-After"]) > 0
        assert challenge is None
        return str(error)
    expected = {
        400: {"invalid_request"},
        401: {"invalid_token", "missing_authorization", "unsupported_token_type"},
    }
    assert error in expected.get(status, {"insufficient_scope"}), (status, body)
    assert challenge is not None
    parsed = WWWAuthenticate.from_header(challenge)
    assert parsed is not None and parsed.type == "bearer", challenge
    params = dict(parsed.parameters)
    assert params.get("realm") == "api"
    if error in ("missing_authorization", "unsupported_token_type"):
        assert "error" not in params, "RFC 6750 §3.1: no error code without credentials"
    else:
        assert params.get("error") == error, challenge
        assert params.get("error_description") == body["error_description"], challenge
    if error == "insufficient_scope":
        assert params.get("scope"), challenge
    return str(error)


def signed_by_a_configured_key(token: str) -> bool:
    """Checked with PyJWT, independently of bearerguard's own verifier."""
    for key in (EC, RSA):
        try:
            pyjwt.PyJWS().decode_complete(token, key=key.public_key, algorithms=[key.alg])
        except Exception:
            continue
        return True
    return False


_BEARER = re.compile(r"(?i:bearer) +(\S+)")


def known_opaque(header: str) -> bool:
    match = _BEARER.fullmatch(header)
    return match is not None and match.group(1) in KNOWN_OPAQUE


# -- strategies ----------------------------------------------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TOKEN_CHARS = B64URL + ".~+/="
PREFIXES = ["Bearer ", "bearer ", "BEARER  ", "Bearer\t", " Bearer ", "Bearer", "Basic ", ""]


@st.composite
def near_known(draw: st.DrawFn) -> str:
    """A known opaque token, changed a little: case, one character, padding, doubling."""
    token = draw(st.sampled_from(sorted(KNOWN_OPAQUE)))
    how = draw(st.sampled_from(["upper", "swapcase", "char", "append", "prepend", "double"]))
    if how == "upper":
        return token.upper()
    if how == "swapcase":
        return token.swapcase()
    if how == "double":
        return token + token
    char = draw(st.sampled_from(TOKEN_CHARS + " \t\x00é"))
    if how == "append":
        return token + char
    if how == "prepend":
        return char + token
    at = draw(st.integers(0, len(token) - 1))
    return token[:at] + char + token[at + 1 :]


header_values = st.one_of(
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),  # what a WSGI server hands over
    st.text(max_size=200),  # unicode beyond latin-1, as a framework might pass it
    st.builds(str.__add__, st.sampled_from(PREFIXES), st.text(max_size=120)),
    st.builds(str.__add__, st.sampled_from(PREFIXES), st.text(TOKEN_CHARS + ' ,"\t', max_size=120)),
    st.builds(str.__add__, st.sampled_from(PREFIXES), near_known()),
    st.builds(str.__add__, st.sampled_from(PREFIXES), st.sampled_from(sorted(KNOWN_OPAQUE))),
)


@PROPERTY
@given(header=header_values, path=st.sampled_from(["/profile", "/any", "/admin"]))
def test_any_authorization_header_gets_a_clean_answer(scene: Scene, header: str, path: str) -> None:
    response = send(scene.client, header, path)

    assert_rfc6750(response, header.partition(" ")[2].strip() or None)
    if response.status_code == 200:
        assert known_opaque(header), f"accepted a token nobody issued: {header!r}"
        assert path != "/admin"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated_jws(draw: st.DrawFn) -> str:
    """A real signed token with exactly one segment (or the dots) changed."""
    token = draw(st.sampled_from(VALID_JWTS))
    parts = token.split(".")
    index = draw(st.integers(0, 2))
    segment = parts[index]
    how = draw(
        st.sampled_from(
            ["char", "insert", "delete", "truncate", "bytes", "json", "swap", "dots", "pad"]
        )
    )
    if how in ("char", "insert", "delete"):
        at = draw(st.integers(0, len(segment) - 1))
        char = draw(st.sampled_from(TOKEN_CHARS))
        skip = 0 if how == "insert" else 1
        segment = segment[:at] + ("" if how == "delete" else char) + segment[at + skip :]
    elif how == "truncate":
        segment = segment[: draw(st.integers(0, len(segment) - 1))]
    elif how == "bytes":
        segment = b64url(draw(st.binary(max_size=300)))
    elif how == "json":
        if index == 0:
            value: Any = draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "alg": st.sampled_from(["ES256", "RS256", "none", "HS256"]) | json_values,
                        "kid": st.sampled_from(["prop-ec", "prop-rsa"]) | json_values,
                        "crit": json_values,
                        "jku": st.just("http://127.0.0.1:1/jwks"),
                        "b64": st.booleans(),
                    },
                )
            )
        else:
            value = draw(json_values)
        segment = b64url(json.dumps(value))
    elif how == "swap":
        segment = draw(st.sampled_from(VALID_JWTS)).split(".")[index]
    elif how == "pad":
        segment += draw(st.sampled_from(["=", "==", "+", "/"]))
    if how == "dots":
        return draw(st.sampled_from([token + ".", "." + token, token.replace(".", "..", 1)]))
    parts[index] = segment
    return ".".join(parts)


@PROPERTY
@given(token=mutated_jws(), path=st.sampled_from(["/profile", "/any"]))
def test_a_mutated_jws_is_accepted_only_if_a_configured_key_signed_it(
    scene: Scene, token: str, path: str
) -> None:
    response = send(scene.client, f"Bearer {token}", path)

    assert_rfc6750(response, token)
    if response.status_code == 200:
        assert signed_by_a_configured_key(token), f"accepted a forgery: {token}"


# -- time claims, duplicate keys ------------------------------------------------------

HUGE = "1" + "0" * 400
#: Literals json.loads reads as something odd: inf, -inf, an int too big for a
#: float, an int past Python's 4300-digit limit, NaN and Infinity (not JSON).
ODD_NUMBERS = [
    "1e400",
    "-1e400",
    "1E+309",
    HUGE,
    "-" + HUGE,
    "1" + "0" * 4400,
    "NaN",
    "Infinity",
    "-Infinity",
    "1e308",
    "-0.0",
    "1.0e-400",
]
time_values = st.one_of(
    st.integers(int(NOW) - 400, int(NOW) + 400).map(str),
    st.floats(NOW - 400, NOW + 400).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(ODD_NUMBERS),
    st.sampled_from(["true", "false", "null", '"1800000100"', "[1800000100]", "{}"]),
    st.text(max_size=6).map(json.dumps),
)


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _as_time(value: Any) -> float | bool | None:
    """A JSON value as bearerguard must read a time: float, False (not a number),
    or None (a number no float can hold: inf, NaN, or too big)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int) and abs(value) > 2**53:
        return None  # no float holds it exactly: bearerguard refuses it as a time
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def expected_verdict(header_text: str, payload_text: str) -> str:
    """``accept``, ``refuse`` or ``either``, read with the last duplicate winning
    (RFC 7515 §5.2 allows exactly that), for a token signed by EC."""
    try:
        header = json.loads(header_text)
        claims = json.loads(payload_text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return "refuse"
    if header.get("alg") != "ES256" or header.get("kid") not in (EC.kid, None):
        return "refuse"  # (no kid, or null: the one ES256 key is used)
    if claims.get("iss") != ISSUER or claims.get("aud") != AUDIENCE:
        return "refuse"
    exp = _as_time(claims.get("exp"))
    if not exp or exp <= NOW:  # not a number, not a finite one, or past
        return "refuse"
    verdict = "accept"
    for name in ("nbf", "iat"):
        if claims.get(name) is None:
            continue
        value = _as_time(claims[name])
        if value is False:
            return "refuse"
        if value is None:
            if claims[name] > 0:  # beyond any float, so in the future
                return "refuse"
            verdict = "either"  # -inf or a huge negative int: harmless, never a 500
        elif value > NOW + LEEWAY:
            return "refuse"
    return verdict


def raw_object(pairs: list[tuple[str, str]]) -> str:
    """A JSON object from (name, raw JSON text) pairs, duplicates kept in order."""
    return "{" + ",".join(f"{json.dumps(name)}:{value}" for name, value in pairs) + "}"


def sign_text(key: Keypair, header_text: str, payload_text: str) -> str:
    signing_input = f"{b64url(header_text)}.{b64url(payload_text)}"
    signature = pyjwt.get_algorithm_by_name(key.alg).sign(signing_input.encode(), key.private_key)
    return f"{signing_input}.{b64url(signature)}"


@st.composite
def time_claim_tokens(draw: st.DrawFn) -> tuple[str, str, str]:
    """A token EC really signed, with odd time claims and duplicate keys."""
    header = [("alg", '"ES256"'), ("kid", json.dumps(EC.kid))]
    if draw(st.booleans()):  # a duplicate alg or kid, first or last
        name = draw(st.sampled_from(["alg", "kid"]))
        other = draw(st.sampled_from(['"none"', '"HS256"', '"RS256"', '"prop-rsa"', "null"]))
        header.insert(draw(st.sampled_from([0, len(header)])), (name, other))
    payload = [
        ("iss", json.dumps(draw(st.sampled_from([ISSUER, ISSUER, EVIL_ISSUER])))),
        ("aud", json.dumps(AUDIENCE)),
        ("sub", '"alice"'),
        ("scope", '"profile email"'),
        ("jti", json.dumps(draw(st.uuids()).hex)),
    ]
    for name in ("exp", "nbf", "iat"):
        if name == "exp" or draw(st.booleans()):
            payload.append((name, draw(time_values)))
        if draw(st.integers(0, 3)) == 0:  # the same claim twice
            payload.insert(draw(st.integers(0, len(payload))), (name, draw(time_values)))
    if draw(st.integers(0, 5)) == 0:
        payload.insert(0, ("iss", json.dumps(EVIL_ISSUER if draw(st.booleans()) else ISSUER)))
    header_text, payload_text = raw_object(header), raw_object(payload)
    return sign_text(EC, header_text, payload_text), header_text, payload_text


def signed_case(**raw_claims: str) -> tuple[str, str, str]:
    """A case for the test below: EC's signature over these raw claim values."""
    header_text = raw_object([("alg", '"ES256"'), ("kid", json.dumps(EC.kid))])
    pairs = [("iss", json.dumps(ISSUER)), ("aud", json.dumps(AUDIENCE)), ("scope", '"profile"')]
    pairs += [(name.rstrip("_"), value) for name, value in raw_claims.items()]
    payload_text = raw_object(pairs)
    return sign_text(EC, header_text, payload_text), header_text, payload_text


FUTURE, PAST = str(int(NOW) + 300), str(int(NOW) - 300)


@PROPERTY
@given(case=time_claim_tokens())
# The dangerous ones, every run: inf (a token that never expires), ints no
# float holds, and duplicates whose first value differs from the last.
@example(case=signed_case(exp="1e400"))
@example(case=signed_case(exp="1E+309"))
@example(case=signed_case(exp=HUGE))
@example(case=signed_case(exp=str(2**53 + 1)))
@example(case=signed_case(exp="-" + HUGE))
@example(case=signed_case(exp=FUTURE, nbf=HUGE))
@example(case=signed_case(exp=FUTURE, iat=HUGE))
@example(case=signed_case(exp=FUTURE, iat="-" + HUGE))
@example(case=signed_case(exp="NaN"))
@example(case=signed_case(exp=FUTURE, exp_=PAST))
@example(case=signed_case(exp=PAST, exp_=FUTURE))
def test_time_claims_and_duplicate_keys_decide_exactly(
    scene: Scene, case: tuple[str, str, str]
) -> None:
    token, header_text, payload_text = case
    response = send(scene.client, f"Bearer {token}")

    error = assert_rfc6750(response, token)
    if len(token) > 8192:
        assert error == "invalid_request"
        return
    verdict = expected_verdict(header_text, payload_text)
    if verdict == "accept":
        assert response.status_code == 200, (response.json, payload_text[:300])
    elif verdict == "refuse":
        assert (response.status_code, error) == (401, "invalid_token"), payload_text[:300]
    else:
        assert response.status_code in (200, 401), payload_text[:300]


@st.composite
def nested_tokens(draw: st.DrawFn) -> tuple[str, str]:
    """A signed token with one deeply nested JSON value, and where it sits."""
    depth = draw(st.integers(1, 2800))
    if draw(st.booleans()):
        nested = "[" * depth + "]" * depth
    else:
        depth = min(depth, 900)
        nested = '{"a":' * depth + "0" + "}" * depth
    where = draw(st.sampled_from(["ext", "scope", "aud", "exp", "header", "kid"]))
    header = [("alg", '"ES256"'), ("kid", json.dumps(EC.kid))]
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "scope": "profile",
        "exp": int(NOW) + 300,
    }
    payload = [(k, json.dumps(v)) for k, v in claims.items()]
    if where == "header":
        header.append(("x", nested))
    elif where == "kid":
        header[1] = ("kid", nested)
    else:
        payload = [p for p in payload if p[0] != where] + [(where, nested)]
    return sign_text(EC, raw_object(header), raw_object(payload)), where


@settings(PROPERTY, max_examples=60)
@given(case=nested_tokens())
def test_deeply_nested_json_is_refused_or_ignored_never_a_crash(
    scene: Scene, case: tuple[str, str]
) -> None:
    token, where = case
    response = send(scene.client, f"Bearer {token}")

    error = assert_rfc6750(response, token)
    if where in ("ext", "header"):  # a harmless extra value, if it parses at all
        assert response.status_code in (200, 401)
    elif where == "scope":  # no string scopes in a list of lists
        assert error in ("insufficient_scope", "invalid_token")
    else:
        assert error == "invalid_token"


unicode_text = st.text(max_size=12)
#: The typ values a JWT access token may carry (others are refused by default).
ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt", "jwt", "application/jwt"}


@st.composite
def unicode_tokens(draw: st.DrawFn) -> tuple[str, bool]:
    """A signed token with unicode in some fields; whether it should pass."""
    replaced = draw(
        st.sets(st.sampled_from(["iss", "aud", "sub", "client_id", "jti", "scope", "kid", "typ"]))
    )
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "client_id": "app",
        "jti": "j-1",
        "scope": "profile",
        "exp": int(NOW) + 300,
    }
    header: dict[str, Any] = {"alg": "ES256", "kid": EC.kid, "typ": "at+jwt"}
    for name in replaced:
        value = draw(unicode_text)
        (header if name in ("kid", "typ") else claims)[name] = value
    extra = draw(st.dictionaries(unicode_text, unicode_text, max_size=3))
    claims.update({k: v for k, v in extra.items() if k not in claims})
    ascii_only = draw(st.booleans())
    token = sign_text(
        EC,
        json.dumps(header, ensure_ascii=ascii_only),
        json.dumps(claims, ensure_ascii=ascii_only),
    )
    must_refuse = (
        claims["iss"] != ISSUER
        or claims["aud"] != AUDIENCE
        or header["kid"] != EC.kid
        or header["typ"].lower() not in ACCESS_TOKEN_TYPES
    )
    return token, must_refuse


@settings(PROPERTY, max_examples=100)
@given(case=unicode_tokens())
def test_unicode_in_any_field_never_breaks_the_answer(scene: Scene, case: tuple[str, bool]) -> None:
    token, must_refuse = case
    try:
        token.encode("ascii")
    except UnicodeEncodeError:  # pragma: no cover - b64url is ASCII
        pytest.fail("a compact JWS must be ASCII")
    response = send(scene.client, f"Bearer {token}", "/any")

    error = assert_rfc6750(response, token)
    if must_refuse:
        assert error == "invalid_token"
    else:
        assert response.status_code == 200, response.json


# -- introspection answers -------------------------------------------------------------

_tokens = itertools.count()


@st.composite
def introspection_answers(draw: st.DrawFn) -> str:
    """The raw JSON an introspection endpoint might answer, odd values included."""
    pairs: list[tuple[str, str]] = []
    fields: dict[str, Any] = {
        "active": st.sampled_from(["true", "false", '"true"', "1", "null", "0"]),
        "exp": time_values,
        "nbf": time_values,
        "iat": time_values,
        "scope": st.sampled_from(['"profile"', '"profile email"', '["profile"]', "null", "{}"])
        | unicode_text.map(json.dumps),
        "token_type": st.sampled_from(['"Bearer"', '"bearer"', '"N_A"', '"mac"', "null", "{}"]),
        "cnf": st.sampled_from(['{"jkt": "abc"}', "null", "{}", "[]"]),
        "sub": unicode_text.map(json.dumps) | st.just("123"),
    }
    for name, values in fields.items():
        if name == "active" or draw(st.booleans()):
            pairs.append((name, draw(values)))
    if draw(st.integers(0, 3)) == 0:  # a duplicate member, the last one wins
        name = draw(st.sampled_from(["active", "exp", "token_type"]))
        pairs.insert(draw(st.integers(0, len(pairs))), (name, draw(fields[name])))
    return raw_object(pairs)


@PROPERTY
@given(raw=introspection_answers())
@example(raw='{"active": true, "scope": "profile", "exp": NaN}')
@example(raw='{"active": true, "scope": "profile", "exp": Infinity}')
@example(raw='{"active": true, "scope": "profile", "exp": 1e400}')
@example(raw=f'{{"active": true, "scope": "profile", "exp": {HUGE}}}')
@example(raw=f'{{"active": true, "scope": "profile", "nbf": {HUGE}}}')
@example(raw=f'{{"active": true, "scope": "profile", "iat": {HUGE}}}')
@example(raw='{"active": true, "active": false, "scope": "profile"}')
@example(raw='{"active": false, "active": true, "scope": "profile"}')
def test_an_introspection_answer_is_enforced_or_refused_never_a_crash(
    scene: Scene, raw: str
) -> None:
    scene.auth.raw = raw
    token = f"opaque-{next(_tokens)}"
    response = send(scene.answers, f"Bearer {token}")

    assert_rfc6750(response, token, outage_ok=True)
    if response.status_code != 200:
        return
    answer = json.loads(raw)  # as lenient as the validator: NaN and Infinity parse
    assert answer.get("active") is True, raw
    exp = answer.get("exp")
    if exp is not None:
        number = _as_time(exp)
        assert number and number > NOW, f"accepted with exp {exp!r}"
    nbf = _as_time(answer.get("nbf"))
    assert not (nbf and nbf > NOW + LEEWAY), raw
    assert answer.get("cnf") is None, raw
    token_type = answer.get("token_type")
    assert token_type is None or str(token_type).lower() == "bearer", raw


# -- a cache hit re-checks what the request needs ------------------------------------------

PATH_SCOPES = {
    "/any": set(),
    "/profile": {"profile"},
    "/admin": {"admin"},
    "/both": {"profile", "email"},
}
steps = st.lists(
    st.one_of(
        st.tuples(st.just("get"), st.sampled_from(sorted(PATH_SCOPES))),
        st.tuples(st.just("advance"), st.integers(0, 40)),
        st.tuples(st.just("revoke"), st.just("")),
    ),
    max_size=25,
)


@settings(PROPERTY, max_examples=100)
@given(
    kind=st.sampled_from(["opaque", "jwt"]),
    scopes=st.sets(st.sampled_from(["profile", "email", "admin"])),
    lifetime=st.integers(1, 100),
    ttl=st.sampled_from([5, 30, 300]),
    actions=steps,
)
def test_a_cache_hit_rechecks_expiry_revocation_and_scope(
    kind: str, scopes: set[str], lifetime: int, ttl: int, actions: list[tuple[str, Any]]
) -> None:
    """Whatever was cached by earlier requests, each answer is what a fresh
    validation would give: expired, else revoked, else the path's scope."""
    clock = FakeClock(NOW)
    exp = int(NOW) + lifetime
    scope = " ".join(sorted(scopes))
    token = make_token(EC, now=NOW, exp=exp, scope=scope) if kind == "jwt" else "opaque-1"

    class OneToken(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Any:
            if token_string == token:
                return {"scope": scope, "exp": exp, "sub": "alice"}
            return None

    protector = ResourceProtector(clock=clock, cache=TokenCache(ttl=ttl, clock=clock))
    protector.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(EC)))
    protector.register_token_validator(OneToken())
    client = _views(protector).test_client()
    revoked = False
    for action, value in actions:
        if action == "advance":
            clock.advance(value)
            continue
        if action == "revoke":
            protector.revoke(token)
            revoked = True
            continue
        response = send(client, f"Bearer {token}", value)
        body = response.get_json(silent=True) or {}
        assert_rfc6750(response, token)
        if clock() >= exp:
            assert body.get("error_description") == "token expired", (clock() - NOW, body)
        elif revoked:
            assert body.get("error_description") == "token revoked", body
        elif not PATH_SCOPES[value] <= scopes:
            assert response.status_code == 403, body
        else:
            assert response.status_code == 200, body


# -- revoke() takes any token string ----------------------------------------------------------

MAX_LIFETIME = 86400.0


@st.composite
def revocable(draw: st.DrawFn) -> str:
    """What an application may hand to ``revoke()``: often what a client sent."""
    exp = draw(time_values)
    head, body = b64url({"alg": "ES256", "kid": EC.kid}), b64url(raw_object([("exp", exp)]))
    unsigned = f"{head}.{body}.c2ln"
    return draw(
        st.one_of(
            time_claim_tokens().map(lambda case: case[0]),
            st.just(unsigned),
            mutated_jws(),
            st.sampled_from(sorted(KNOWN_OPAQUE)),
            st.text(TOKEN_CHARS, min_size=1, max_size=60),
        )
    )


def _revoking_app() -> tuple[ResourceProtector, Any, FakeClock]:
    clock = FakeClock(NOW)
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(EC)))
    protector.register_token_validator(dict_validator())
    return protector, _views(protector).test_client(), clock


@settings(PROPERTY, max_examples=100)
@given(token=revocable())
@example(token=signed_case(exp=HUGE)[0])
@example(token=signed_case(exp="1e400")[0])
def test_revoke_takes_any_token_string_and_refuses_it(token: str) -> None:
    protector, client, _ = _revoking_app()

    protector.revoke(token)  # never raises, whatever the (unverified) exp says

    response = send(client, f"Bearer {token}", "/any")
    assert_rfc6750(response, token)
    assert response.status_code in (400, 401), "a revoked token was accepted"


@settings(PROPERTY, max_examples=60)
@given(token=revocable())
@example(token=signed_case(exp="1e308")[0])
@example(token=signed_case(exp="1e400")[0])
def test_a_revocation_is_kept_no_longer_than_any_token_lives(token: str) -> None:
    """What ``revoke()`` cannot verify is only the client's (or a forger's)
    word: however far away its ``exp`` says, that entry lapses within the
    store's ``unverified_lifetime`` (here ``max_token_lifetime``), so revoking
    what clients send cannot fill the deny-list (and Redis) for ever. A
    verified entry lasts exactly until the token's own verified ``exp``."""
    protector, _, clock = _revoking_app()
    protector.revocations.max_token_lifetime = MAX_LIFETIME

    try:
        protector.revoke(token)
    except OverflowError:
        pytest.fail("revoke() crashed (see the test above)")

    store = protector.revocations
    for key, until in store.tokens.items():  # none if already expired, or junk
        if key in store.unverified:
            assert until <= clock() + MAX_LIFETIME, f"kept until {until!r}"
        else:
            assert until == protector.guard.validate(token).expires_at, f"kept until {until!r}"
