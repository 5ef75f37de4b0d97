"""The metadata document's DPoP members follow the protector's DPoP mode (RFC 9728 §2)."""

from __future__ import annotations

import pytest
from flask import Flask

from bearerguard import ResourceProtector
from bearerguard.core.dpop import ProofChecker

RESOURCE = "https://api.example.com"


def document(**options: object) -> dict[str, object]:
    protector = ResourceProtector(resource=RESOURCE, **options)  # type: ignore[arg-type]
    app = Flask(__name__)
    protector.init_app(app)
    response = app.test_client().get("/.well-known/oauth-protected-resource")
    assert response.status_code == 200
    body: dict[str, object] = response.json
    return body


@pytest.mark.parametrize(
    ("mode", "algs", "required"),
    [("allowed", True, False), ("required", True, True), ("disabled", False, False)],
)
def test_dpop_members_follow_the_mode(mode: str, algs: bool, required: bool) -> None:
    doc = document(dpop=mode, dpop_proofs=ProofChecker(algorithms=["ES256", "EdDSA"]))
    assert ("dpop_signing_alg_values_supported" in doc) is algs
    if algs:
        assert doc["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert doc.get("dpop_bound_access_tokens_required", False) is required
