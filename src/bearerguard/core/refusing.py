"""Refusals, as the guard makes them: counted, logged by their rendered text,
stamped with their challenge attributes, rendered to the same bytes for every
front; and the ``Authorization`` header split into validator and credentials.

A mix-in of :class:`~bearerguard.core.guard.Guard`: what a refusal carries
does not depend on how the token was decided.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

from authlib.oauth2 import OAuth2Error

from .._log import logger
from ..errors import BearerGuardError, MissingTokenError, UnsupportedTokenTypeError
from ..validators.base import TokenValidator
from .credentials import parse_authorization
from .hooks import RequestCheck, adopted
from .metadata import ResourceMetadata
from .routing import scheme_credentials

__all__ = ["Refusing"]


class Refusing:
    """``stamp``, ``render``, ``validator_for`` and ``split_authorization``."""

    realm: str | None
    metadata: ResourceMetadata | None
    max_token_length: int
    _schemes: dict[str, list[TokenValidator]]
    _others: dict[str, list[RequestCheck]]
    _outcomes: Counter[str]
    _outcomes_lock: threading.Lock

    @property
    def validators(self) -> list[TokenValidator]:
        raise NotImplementedError  # the guard's

    def validator_for(self, token_type: str) -> TokenValidator:
        """The first validator registered for ``token_type``, else a stamped
        :class:`UnsupportedTokenTypeError`."""
        validators = self._schemes.get(token_type.lower())
        if not validators:
            raise self.stamp(UnsupportedTokenTypeError())
        return validators[0]

    def split_authorization(self, header: str | None) -> tuple[TokenValidator, str]:
        """``(validator, credentials)`` for an ``Authorization`` header value.

        Raises :class:`MissingTokenError` or :class:`UnsupportedTokenTypeError`;
        a malformed Bearer header is a 400 (all stamped, none counted).
        """
        if not header:
            raise self.stamp(MissingTokenError())
        try:
            found = scheme_credentials(header, self._others, self.max_token_length)
            if found is None:
                found = ("bearer", parse_authorization(header, self.max_token_length))
        except BearerGuardError as error:
            raise self.stamp(error) from None
        return self.validator_for(found[0]), found[1]

    # -- refusals -------------------------------------------------------------------

    def _refused(self, error: BearerGuardError) -> BearerGuardError:
        """Count and log a refusal, and give it its challenge attributes."""
        # No exception chain goes out with it: a hook's refusal raised while
        # handling a driver's error (whose text quotes the token) carries it.
        error.__cause__ = error.__context__ = None
        outcome = "missing_token" if isinstance(error, MissingTokenError) else error.error
        with self._outcomes_lock:
            self._outcomes[outcome or "refused"] += 1
        # The rendered description: a hook's own text may hold CR/LF (log injection).
        logger.debug("refused: %s %s", error.status_code, error.get_error_description())
        return self.stamp(error)

    def stamp(
        self, error: BearerGuardError, validator: TokenValidator | None = None
    ) -> BearerGuardError:
        """``error`` with the realm and extra attributes of ``validator`` (default:
        the first registered, as Authlib's ``_default_realm``), else this
        guard's realm; what an error already carries is kept."""
        if validator is None:
            bearer = self._schemes.get("bearer") or self.validators
            validator = bearer[0] if bearer else None
        realm = getattr(validator, "realm", None)
        if error.realm is None:
            error.realm = realm if realm is not None else self.realm
        extra = getattr(validator, "extra_attributes", None)
        if extra and not error.extra_attributes:
            error.extra_attributes = extra
        if self.metadata is not None and error.resource_metadata is None:
            error.resource_metadata = self.metadata.url  # RFC 9728 §5.1, refusals only
        return error

    def render(self, error: OAuth2Error) -> tuple[int, list[tuple[str, str]], bytes]:
        """``(status, headers, body)`` of the response to a refusal, the same
        bytes for every front; a foreign ``OAuth2Error`` is adopted first."""
        refusal = self.stamp(adopted(error))
        body = json.dumps(dict(refusal.get_body())).encode()
        return refusal.status_code, refusal.get_headers(), body
