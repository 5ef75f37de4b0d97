"""The Flask app gunicorn serves in the load run: the demo resource server
(``examples/demo.py``, its ``/hello`` the floor and ``/hello/protected``
behind bearerguard) and the limit, ``/hello/limit`` (:mod:`.load_limit`).

``gunicorn 'benchmarks.gunicorn_load_app:create_app()'``, ``examples/`` on the path.
"""

from __future__ import annotations

from typing import Any

from demo import create_app as create_demo
from flask import Flask, abort, jsonify
from flask.globals import _cv_request  # the environ as bearerguard's Flask front reads it

from .load_limit import PATH, known, load_digests


def create_app() -> Flask:
    app = create_demo()
    digests = load_digests()

    @app.get(PATH)
    def hello_limit() -> Any:
        if not known(_cv_request.get().request.environ.get("HTTP_AUTHORIZATION"), digests):
            abort(401)
        return jsonify(hello="world")

    return app
