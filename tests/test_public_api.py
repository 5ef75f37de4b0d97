"""The public surface: exact import paths, exports, typing marker."""

from __future__ import annotations

import importlib.resources
import inspect

import bearerguard
import bearerguard.errors
import bearerguard.validators


def test_documented_import_paths() -> None:
    from bearerguard import ResourceProtector, current_token  # noqa: F401
    from bearerguard.sqla import create_bearer_token_validator  # noqa: F401
    from bearerguard.validators import (  # noqa: F401
        BearerTokenValidator,
        IntrospectionTokenValidator,
        JWTBearerTokenValidator,
    )


def test_every_public_error_is_exported_from_the_package() -> None:
    errors = {
        name
        for name, obj in vars(bearerguard.errors).items()
        if inspect.isclass(obj) and issubclass(obj, bearerguard.BearerGuardError)
    }
    assert errors == set(bearerguard.errors.__all__)
    assert errors <= set(bearerguard.__all__)
    for name in errors:
        assert getattr(bearerguard, name) is getattr(bearerguard.errors, name)


def test_error_names_end_in_error_and_know_their_status() -> None:
    for name in bearerguard.errors.__all__:
        cls = getattr(bearerguard.errors, name)
        assert name.endswith("Error")
        assert cls.status_code in (400, 401, 403, 503)


def test_all_names_resolve() -> None:
    for module in (bearerguard, bearerguard.validators):
        for name in module.__all__:
            assert hasattr(module, name), name


def test_py_typed_is_shipped() -> None:
    assert importlib.resources.files("bearerguard").joinpath("py.typed").is_file()


def test_errors_are_authlib_errors_for_ported_code() -> None:
    from authlib.oauth2 import OAuth2Error

    assert issubclass(bearerguard.BearerGuardError, OAuth2Error)
