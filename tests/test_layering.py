"""The framework stays at the edge: only the fronts import a web framework.

Each check runs in a fresh interpreter, since this test process has Flask
loaded long before any test runs.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import bearerguard

#: Modules that are a web framework's front, or an app built on one.
FRONTS = {
    "bearerguard.protector",  # Flask
    "bearerguard.starlette",  # Starlette, FastAPI
    "bearerguard.demo",  # a Flask app (moving to examples/)
    "bearerguard.__main__",  # runs the CLI when imported
}
FRAMEWORKS = ("flask", "werkzeug", "starlette")

PROBE = """
import importlib, json, sys
found = {}
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
    if loaded:
        found[name] = loaded
        break
print(json.dumps(found))
"""


def _neutral_modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(bearerguard.__path__, "bearerguard.")
        if info.name not in FRONTS
    ]
    return ["bearerguard", *sorted(names)]


def _probe(modules: list[str]) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules), json.dumps(FRAMEWORKS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: dict[str, list[str]] = json.loads(done.stdout)
    return found


def test_no_neutral_module_loads_a_web_framework() -> None:
    modules = _neutral_modules()
    assert {"bearerguard.validators.jwt", "bearerguard.core.guard", "bearerguard.sqla"} <= set(
        modules
    )
    assert _probe(modules) == {}, "this module loads a web framework"


def test_the_flask_front_loads_on_first_use() -> None:
    code = (
        "import sys, bearerguard\n"
        "assert 'flask' not in sys.modules\n"
        "assert 'ResourceProtector' in dir(bearerguard)\n"
        "from bearerguard import ResourceProtector, current_token, token_authenticated\n"
        "from bearerguard.protector import ResourceProtector as Direct\n"
        "assert ResourceProtector is Direct and 'flask' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
