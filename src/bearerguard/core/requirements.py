"""What a view requires of a token: scopes, and RFC 9068 authorization claims.

Compiled once when the decorator is applied, so the per-request check is a
frozenset comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import InsufficientScopeError
from .hooks import call_hook
from .tokeninfo import TokenInfo
from .values import values_of

__all__ = ["AUTHORIZATION_CLAIMS", "Requirement", "ScopeOperator", "compile_requirement"]

ScopeOperator = Callable[[set[str], set[str]], bool]
#: RFC 9068 §2.2.3.1: claims a view can require, any one listed value sufficing.
AUTHORIZATION_CLAIMS = ("groups", "roles", "entitlements")


class Requirement:
    """A compiled check: ``requirement.missing(info)`` is None when the token suffices."""

    __slots__ = ("claims", "hook_claims", "hook_scopes", "hooks_decide_scope", "scope", "scopes_ok")

    def __init__(
        self,
        scopes_ok: Callable[[frozenset[str]], bool] | None,
        scope: str | None,
        claims: tuple[tuple[str, frozenset[str]], ...],
        hook_scopes: list[str] | None = None,
        hooks_decide_scope: bool = True,
    ) -> None:
        self.scopes_ok = scopes_ok
        #: The scope text for ``WWW-Authenticate: ... scope="..."`` on a 403.
        self.scope = scope
        self.claims = claims
        #: What Authlib 1.x's hooks receive as ``scopes``: a list of scope
        #: strings, any one of which suffices; None when none is required.
        self.hook_scopes = hook_scopes
        #: False for a callable operator, which Authlib's form cannot express.
        self.hooks_decide_scope = hooks_decide_scope
        #: The ``groups=``/``roles=``/``entitlements=`` keywords for validate_token.
        self.hook_claims: dict[str, Any] = {name: sorted(values) for name, values in claims}

    def missing(self, info: TokenInfo) -> str | None:
        """None when ``info`` suffices, else what is missing ("scope", "roles", ...)."""
        if self.scopes_ok is not None and not self.scopes_ok(info.scopes):
            return "scope"
        # The loop of missing_claims, inline: a method call here is on every cache hit.
        for name, wanted in self.claims:
            if not wanted & _claim_values(info, name):
                return name
        return None

    def missing_claims(self, info: TokenInfo) -> str | None:
        """The first of ``groups``/``roles``/``entitlements`` the token lacks, or None."""
        for name, wanted in self.claims:
            if not wanted & _claim_values(info, name):
                return name
        return None

    def refusal(self, missing: str) -> InsufficientScopeError:
        """The 403 for what :meth:`missing` found lacking."""
        description = None if missing == "scope" else f"token lacks a required {missing} value"
        return InsufficientScopeError(description, scope=self.scope)


def _claim_values(info: TokenInfo, name: str) -> frozenset[str]:
    source = info.claims
    value = source.get(name) if isinstance(source, Mapping) else getattr(info.token, name, None)
    return values_of(value)


def _values(name: str, value: Any) -> frozenset[str]:
    if isinstance(value, str):
        values = frozenset(value.split())
    elif isinstance(value, Iterable):
        values = frozenset(value)
    else:
        raise TypeError(f"{name}= takes a string or a list of strings")
    if not values or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{name}= takes a non-empty string or list of strings")
    return values


def _one(
    required: frozenset[str], operator: str | ScopeOperator
) -> Callable[[frozenset[str]], bool]:
    if callable(operator):
        user_check = operator  # the user's code: behind the guard, as every hook
        return lambda scopes: bool(call_hook(user_check, set(scopes), set(required)))
    if operator == "AND":
        return required.issubset
    return lambda scopes: not required.isdisjoint(scopes)


def compile_requirement(
    scope: str | Iterable[str] | None, operator: str | ScopeOperator, claims: Mapping[str, Any]
) -> Requirement:
    """Compile the decorator's arguments; raise TypeError/ValueError when they are wrong.

    ``scope`` is a space-separated string, or (Authlib 1.x) a list of them meaning
    any one of them: ``['a b', 'c']`` is (a AND b) OR c. ``operator`` joins the
    scopes of one string: ``'AND'`` (default), ``'OR'``, or a callable
    ``(token_scopes: set, resource_scopes: set) -> bool``.
    """
    if not callable(operator):
        if not isinstance(operator, str) or operator.upper() not in ("AND", "OR"):
            raise ValueError("operator must be 'AND', 'OR' or a callable")
        operator = operator.upper()
    unknown = set(claims) - set(AUTHORIZATION_CLAIMS)
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")
    checks = tuple((name, _values(name, v)) for name, v in claims.items() if v is not None)
    if scope is None or scope == "" or scope == []:
        return Requirement(None, None, checks)
    alternatives = [scope] if isinstance(scope, str) else list(scope)
    if not all(isinstance(a, str) for a in alternatives):
        raise TypeError("scope must be a string or a list of strings")
    sets = [frozenset(a.split()) for a in alternatives if a.split()]
    if not sets:
        return Requirement(None, None, checks)
    one = [_one(s, operator) for s in sets]
    ok = one[0] if len(one) == 1 else (lambda scopes: any(check(scopes) for check in one))
    first = next(a for a in alternatives if a.split())
    hook_scopes = [" ".join(a.split()) for a in alternatives if a.split()]
    if operator == "OR":  # any one scope of any string: Authlib's list of single scopes
        hook_scopes = list(dict.fromkeys(s for a in hook_scopes for s in a.split()))
    return Requirement(ok, " ".join(first.split()), checks, hook_scopes, not callable(operator))
