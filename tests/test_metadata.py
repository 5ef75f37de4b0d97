"""Protected Resource Metadata (RFC 9728) and resource indicators (RFC 8707):
the document and the challenges over real HTTP on 127.0.0.1 for every front,
and through the ``fronts`` fixture over every validator kind."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt as pyjwt
import pytest
import requests

from bearerguard import ResourceMetadata, ResourceProtector
from bearerguard.core.metadata import check_resource, metadata_url
from bearerguard.validators import JWTBearerTokenValidator

from .fronts import FRONTS, Setup, front, introspection_server, kind, make  # noqa: F401
from .jwtkit import ISSUER, Keypair, jwks, make_token
from .prmkit import KEY, WELL_KNOWN, api, jwt_protector, protector_of, served, token

# ruff: noqa: F811


@pytest.fixture(params=FRONTS)
def live(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Any]]:
    """``(front, resource, protector)``: resource ``<base>/v1/mcp`` served for real."""
    front_name = str(request.param)
    holder: dict[str, Any] = {}

    def build(base: str) -> Any:
        resource = base + "/v1/mcp"
        holder["resource"] = resource
        metadata = ResourceMetadata(
            resource,
            scopes_supported=["email"],
            max_age=120,
            resource_name="Test API",
            resource_documentation=base + "/docs",
        )
        holder["protector"] = jwt_protector(front_name, metadata, allow_query_token=True)
        return api(front_name, holder["protector"], "/v1/mcp")

    with served(front_name, build):
        yield front_name, holder["resource"], holder["protector"]


# -- the URL of the document ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("https://api.example.com", "https://api.example.com" + WELL_KNOWN),
        ("https://api.example.com/", "https://api.example.com" + WELL_KNOWN),
        ("https://api.example.com/v1/mcp", "https://api.example.com" + WELL_KNOWN + "/v1/mcp"),
        ("https://api.example.com:8443/a/", "https://api.example.com:8443" + WELL_KNOWN + "/a"),
        ("http://127.0.0.1:9/r?x=1", "http://127.0.0.1:9" + WELL_KNOWN + "/r?x=1"),
    ],
    ids=["host", "slash", "path", "port-trailing-slash", "query"],
)
def test_the_well_known_suffix_is_inserted_between_host_and_path(
    resource: str, expected: str
) -> None:
    assert metadata_url(resource) == expected


@pytest.mark.parametrize(
    "resource",
    ["http://api.example.com", "https://api.example.com/#frag", "/relative", "ftp://h/x"],
    ids=["http-remote", "fragment", "relative", "ftp"],
)
def test_a_resource_that_is_not_an_https_url_without_fragment_is_refused(resource: str) -> None:
    with pytest.raises(ValueError, match="resource"):
        check_resource(resource)


# -- the document, over HTTP ----------------------------------------------------------------


def test_the_document_is_served_at_the_path_inserted_url(live: tuple[str, str, Any]) -> None:
    _, resource, _ = live
    base = resource.rsplit("/v1/mcp", 1)[0]
    answer = requests.get(base + WELL_KNOWN + "/v1/mcp", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.headers["Cache-Control"] == "public, max-age=120"
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    doc = answer.json()
    assert doc["resource"] == resource  # §3.3
    assert doc["authorization_servers"] == [ISSUER]
    assert set(doc["scopes_supported"]) == {"profile", "admin", "email"}
    assert doc["bearer_methods_supported"] == ["header", "query"]
    assert doc["resource_name"] == "Test API"
    assert doc["resource_documentation"] == base + "/docs"
    assert "signed_metadata" not in doc
    # The root form is not this resource's document (§3.1: the path is part of it).
    assert requests.get(base + WELL_KNOWN, timeout=5).status_code == 404


def test_the_document_answers_a_cors_preflight(live: tuple[str, str, Any]) -> None:
    _, resource, _ = live
    url = metadata_url(resource)
    answer = requests.options(
        url, headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    )
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in answer.headers["Access-Control-Allow-Methods"]


REFUSALS: list[tuple[str, Callable[[str], dict[str, str]], int, str | None]] = [
    ("no-token", lambda r: {}, 401, None),
    ("not-a-token", lambda r: {"Authorization": "Bearer abc"}, 401, "invalid_token"),
    ("bad-signature", lambda r: {"Authorization": "Bearer " + _bad_signature(r)}, 401, None),
    ("expired", lambda r: token(r, exp=int(time.time()) - 600), 401, "invalid_token"),
    ("other-audience", lambda r: token(r, aud="https://other.example"), 401, "invalid_token"),
    ("basic", lambda r: {"Authorization": "Basic dXNlcjpwYXNz"}, 401, None),
    ("malformed", lambda r: {"Authorization": "Bearer a b"}, 400, "invalid_request"),
]


def _bad_signature(resource: str) -> str:
    other = Keypair.generate("ES256", kid="prm")
    return make_token(other, aud=resource)


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_every_refusal_points_to_the_document(
    live: tuple[str, str, Any],
    headers: Callable[[str], dict[str, str]],
    status: int,
    error: str | None,
) -> None:
    _, resource, _ = live
    answer = requests.get(resource, headers=headers(resource), timeout=5)
    assert answer.status_code == status, answer.text
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{metadata_url(resource)}"' in challenge
    if error is not None:
        assert f'error="{error}"' in challenge


def test_a_revoked_token_is_refused_with_the_document_url(live: tuple[str, str, Any]) -> None:
    _, resource, protector = live
    headers = token(resource)
    assert requests.get(resource, headers=headers, timeout=5).status_code == 200
    protector.revoke(headers["Authorization"][7:])
    answer = requests.get(resource, headers=headers, timeout=5)
    assert answer.status_code == 401
    assert f'resource_metadata="{metadata_url(resource)}"' in answer.headers["WWW-Authenticate"]


def test_insufficient_scope_names_the_scope_and_the_document(live: tuple[str, str, Any]) -> None:
    _, resource, _ = live
    headers = token(resource, scope="profile")
    assert requests.get(resource, headers=headers, timeout=5).status_code == 200
    # A cache hit refused for scope: the challenge is the same as on a miss.
    for _ in range(2):
        answer = requests.get(resource + "/admin", headers=headers, timeout=5)
        assert answer.status_code == 403
        challenge = answer.headers["WWW-Authenticate"]
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="admin"' in challenge
        assert f'resource_metadata="{metadata_url(resource)}"' in challenge


# -- RFC 8707: the resource is the audience -------------------------------------------------


def test_a_jwt_validator_without_audience_needs_the_protectors_resource() -> None:
    with pytest.raises(ValueError, match="resource"):
        ResourceProtector().register_token_validator(
            JWTBearerTokenValidator(ISSUER, jwks=jwks(KEY))
        )


def test_an_unregistered_validator_without_audience_accepts_no_token() -> None:
    from bearerguard.errors import InvalidTokenError

    validator = JWTBearerTokenValidator(ISSUER, jwks=jwks(KEY))
    with pytest.raises(InvalidTokenError):
        validator.validate(make_token(KEY))


def test_an_explicit_audience_is_kept_when_a_resource_is_set() -> None:
    protector = ResourceProtector(resource="https://api.example.com/v1")
    validator = JWTBearerTokenValidator(ISSUER, "https://legacy.example", jwks=jwks(KEY))
    protector.register_token_validator(validator)
    assert validator.audiences == frozenset({"https://legacy.example"})


# -- several resources on one app -------------------------------------------------------------


@pytest.mark.parametrize("front_name", FRONTS)
def test_each_protector_of_one_app_publishes_its_own_document(front_name: str) -> None:
    holder: dict[str, Any] = {}

    def build(base: str) -> Any:
        one = jwt_protector(front_name, base + "/one")
        two = protector_of(front_name, resource=base + "/two", allow_form_token=True)
        two.register_token_validator(JWTBearerTokenValidator("https://as2.example", jwks=jwks(KEY)))
        app = api(front_name, one, "/one")
        if front_name == "flask":
            from flask import Blueprint

            blueprint = Blueprint("two", __name__)
            blueprint.add_url_rule("/two", "r", two("write")(lambda: {"ok": True}))
            app.register_blueprint(blueprint)
            two.init_app(app)
        elif front_name == "fastapi":
            from fastapi import APIRouter, Security

            router = APIRouter()
            needs = Security(two("write"))

            async def write(token: Any = needs) -> dict[str, Any]:
                return {"ok": True}

            router.add_api_route("/two", write)
            app.include_router(router)
            two.init_app(app)
        else:
            from starlette.requests import Request
            from starlette.responses import JSONResponse, Response
            from starlette.routing import Route

            async def ok(request: Request) -> Response:
                return JSONResponse({"ok": True})

            app.router.routes.append(Route("/two", two.route("write")(ok)))
            two.init_app(app)
        holder["base"] = base
        return app

    with served(front_name, build) as base:
        first = requests.get(base + WELL_KNOWN + "/one", timeout=5).json()
        second = requests.get(base + WELL_KNOWN + "/two", timeout=5).json()
        challenge = requests.get(base + "/two", timeout=5).headers["WWW-Authenticate"]
    assert (first["resource"], second["resource"]) == (base + "/one", base + "/two")
    assert first["authorization_servers"] == [ISSUER]
    assert second["authorization_servers"] == ["https://as2.example"]
    assert set(first["scopes_supported"]) == {"profile", "admin"}
    assert second["scopes_supported"] == ["write"]
    assert second["bearer_methods_supported"] == ["header", "body"]
    assert f'resource_metadata="{base}{WELL_KNOWN}/two"' in challenge


def test_two_flask_protectors_for_one_resource_are_refused() -> None:
    from flask import Flask

    app = Flask(__name__)
    ResourceProtector(resource="https://api.example.com").init_app(app)
    with pytest.raises(ValueError, match="already publishes"):
        ResourceProtector(resource="https://api.example.com").init_app(app)
    assert list(app.extensions["bearerguard"]) == [WELL_KNOWN]


# -- signed metadata (§2.2) -----------------------------------------------------------------


@pytest.mark.parametrize("front_name", FRONTS)
def test_signed_metadata_is_a_jwt_issued_by_the_resource(front_name: str) -> None:
    signer = Keypair.generate("ES256", kid="prm-signer")

    def build(base: str) -> Any:
        metadata = ResourceMetadata(
            base, signing_key=signer.private_key, signing_kid="prm-signer", resource_name="S"
        )
        return api(front_name, jwt_protector(front_name, metadata))

    with served(front_name, build) as base:
        doc = requests.get(base + WELL_KNOWN, timeout=5).json()
    claims = pyjwt.decode(doc["signed_metadata"], signer.public_key, algorithms=["ES256"])
    assert claims["iss"] == base  # the resource vouches for itself
    assert claims["resource"] == base
    assert claims["authorization_servers"] == [ISSUER]
    assert claims["resource_name"] == "S"
    assert "signed_metadata" not in claims
    assert pyjwt.get_unverified_header(doc["signed_metadata"])["kid"] == "prm-signer"


# -- every front x every validator kind (the fronts fixture) ----------------------------------


def test_the_challenge_names_the_document_for_every_kind(make: Any) -> None:
    setup: Setup = make(resource="https://api.example.com")
    url = "https://api.example.com" + WELL_KNOWN
    named = f'resource_metadata="{url}"'
    assert named in setup.client.get("/r").challenge
    assert named in setup.client.get("/r", setup.bearer("nope")).challenge
    expired = setup.backend.mint(exp_in=-60)
    assert named in setup.client.get("/r", setup.bearer(expired)).challenge
    good = setup.backend.mint(scope="profile")
    assert setup.client.get("/r", setup.bearer(good)).status == 200
    forbidden = setup.client.get("/admin", setup.bearer(good))
    assert forbidden.status == 403
    assert named in forbidden.challenge and 'scope="admin"' in forbidden.challenge
    setup.protector.revoke(good)
    assert named in setup.client.get("/r", setup.bearer(good)).challenge
    doc = setup.client.get(WELL_KNOWN)
    assert doc.status == 200
    assert doc.json["resource"] == "https://api.example.com"
    assert {"profile", "admin"} <= set(doc.json["scopes_supported"])


def test_without_resource_the_challenge_is_unchanged(make: Any) -> None:
    setup: Setup = make()
    assert "resource_metadata" not in setup.client.get("/r").challenge
    assert setup.client.get(WELL_KNOWN).status == 404


# -- what §2 and §3.2 forbid ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"jwks_uri": "http://keys.example.com/jwks"}, "https"),
        ({"resource_signing_alg_values_supported": ["ES256", "none"]}, "none"),
        ({"resource": "https://other.example"}, "resource"),
        ({"signed_metadata": "x.y.z"}, "signed_metadata"),
    ],
    ids=["jwks-uri-http", "alg-none", "resource-twice", "signed-by-hand"],
)
def test_members_rfc_9728_forbids_are_refused_at_configuration(
    extra: dict[str, Any], message: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        ResourceMetadata("https://api.example.com", **extra)


def test_members_with_zero_values_are_omitted(front: str) -> None:
    # §3.2: no issuer-bearing validator and no required scope: no empty arrays.
    from .opaquekit import OpaqueValidator

    protector = protector_of(front, resource="https://api.example.com")
    protector.register_token_validator(OpaqueValidator())
    status, _, body = protector.metadata_response("GET")
    doc = json.loads(body)
    assert status == 200
    assert doc == {
        "resource": "https://api.example.com",
        "bearer_methods_supported": ["header"],
        # DPoP is allowed by default (RFC 9449): its algorithms are published.
        "dpop_signing_alg_values_supported": list(protector.guard.sender.proofs.algorithms),
    }


def test_placeholders_for_dpop_and_mtls_are_published_as_configured() -> None:
    metadata = ResourceMetadata(
        "https://api.example.com",
        tls_client_certificate_bound_access_tokens=False,
        dpop_signing_alg_values_supported=["ES256"],
        dpop_bound_access_tokens_required=False,
    )
    protector = ResourceProtector(resource=metadata)
    doc = metadata.document(protector.guard)
    assert doc["tls_client_certificate_bound_access_tokens"] is False
    assert doc["dpop_signing_alg_values_supported"] == ["ES256"]
    # The hook a DPoP implementation fills in overrides the placeholders.
    metadata.dpop_metadata = lambda guard: {"dpop_bound_access_tokens_required": True}
    assert metadata.document(protector.guard)["dpop_bound_access_tokens_required"] is True


def test_authorization_servers_are_the_jwt_and_introspection_issuers_unless_overridden() -> None:
    from bearerguard.validators import IntrospectionTokenValidator

    def doc(**options: Any) -> dict[str, Any]:
        protector = ResourceProtector(resource=ResourceMetadata("https://api.example", **options))
        protector.register_token_validator(JWTBearerTokenValidator(ISSUER, jwks=jwks(KEY)))
        protector.register_token_validator(
            IntrospectionTokenValidator(
                "https://idp.example/introspect",
                "rs",
                "secret-of-the-resource-server",
                issuer="https://idp.example",
                audience="https://api.example",
            )
        )
        return protector.metadata.document(protector.guard)  # type: ignore[no-any-return]

    assert doc()["authorization_servers"] == [ISSUER, "https://idp.example"]
    assert doc(authorization_servers=["https://only.example"])["authorization_servers"] == [
        "https://only.example"
    ]


def test_an_introspection_validator_without_audience_requires_the_resource(serve: Any) -> None:
    # RFC 8707 for opaque tokens: the answer's aud must name this resource.
    from bearerguard.validators import IntrospectionTokenValidator

    from .jwtkit import loopback_client
    from .servers import Reply, Seen

    answers = {"ours": "https://api.example", "theirs": "https://other.example"}

    def introspect(seen: Seen) -> Reply:
        token = seen.body.decode().partition("token=")[2].partition("&")[0]
        aud = answers[token]
        return Reply(200, {"active": True, "aud": aud, "scope": "profile", "exp": 2**40})

    server = serve(introspect)
    http = loopback_client()
    protector = ResourceProtector(resource="https://api.example", cache=None)
    validator = IntrospectionTokenValidator(server.url + "/i", "rs", "a-long-secret-1", http=http)
    protector.register_token_validator(validator)
    from flask import Flask

    app = Flask(__name__)
    protector.init_app(app)
    app.add_url_rule("/", "r", protector("profile")(lambda: {"ok": True}))
    with app.test_client() as web:
        assert web.get("/", headers={"Authorization": "Bearer ours"}).status_code == 200
        refused = web.get("/", headers={"Authorization": "Bearer theirs"})
    http.close()
    assert refused.status_code == 401
    assert "resource_metadata=" in refused.headers["WWW-Authenticate"]
