"""PostgreSQL going away under the SQLAlchemy validator, through a real proxy.

Policy under test (documented in the README): an uncached token gets 503
``temporarily_unavailable`` while the database is unreachable, never 500 and
never a cached refusal; tokens already validated keep working until their
cache entry lapses (at most ``ttl``, never past ``exp``); the first request
after the database is back succeeds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, jsonify
from sqlalchemy import create_engine
from sqlalchemy.orm import scoped_session, sessionmaker

from bearerguard import ResourceProtector, current_token
from bearerguard.sqla import create_bearer_token_validator

from .conftest import PG_URL, pg_schema_url
from .models import Base, Token
from .servers import TCPProxy


@pytest.fixture
def proxy() -> Iterator[TCPProxy]:
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    proxy = TCPProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.close()


@pytest.fixture
def app(proxy: TCPProxy) -> Iterator[Flask]:
    schema_urls = pg_schema_url(PG_URL.replace(":5432/", f":{proxy.port}/"))
    url = next(schema_urls)
    engine = create_engine(url, connect_args={"connect_timeout": 2})
    Base.metadata.create_all(engine)
    session = scoped_session(sessionmaker(engine))
    now = int(time.time())
    session.add_all(
        Token(access_token=value, scope="profile", issued_at=now, expires_in=3600)
        for value in ("warm", "cold")
    )
    session.commit()
    session.remove()

    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(create_bearer_token_validator(session, Token)())
    app = Flask(__name__)

    @app.teardown_appcontext
    def remove(_exc: Any) -> None:
        session.remove()

    @app.route("/r")
    @require_oauth("profile")
    def resource() -> Any:
        return jsonify(token_id=current_token.id)

    yield app
    session.remove()
    engine.dispose()
    next(schema_urls, None)


def get(app: Flask, token: str) -> Any:
    return app.test_client().get("/r", headers={"Authorization": f"Bearer {token}"})


def test_database_outage_is_503_then_recovers(
    app: Flask, proxy: TCPProxy, caplog: pytest.LogCaptureFixture
) -> None:
    assert get(app, "warm").status_code == 200
    proxy.down()
    caplog.set_level(logging.DEBUG, logger="bearerguard")
    for _ in range(5):
        response = get(app, "cold")
        assert response.status_code == 503
        assert response.json["error"] == "temporarily_unavailable"
        assert response.headers["Retry-After"]
        assert "cold" not in response.get_data(as_text=True)
    # Policy: what was validated before the outage keeps serving from cache.
    assert get(app, "warm").status_code == 200
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert all("cold" not in r.getMessage() for r in caplog.records)
    proxy.up()
    assert get(app, "cold").status_code == 200


def test_database_down_from_the_start(app: Flask, proxy: TCPProxy) -> None:
    proxy.down()
    assert get(app, "warm").status_code == 503
    proxy.up()
    assert get(app, "warm").status_code == 200
