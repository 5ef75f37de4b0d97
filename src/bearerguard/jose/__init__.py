"""JOSE for access tokens, in the steps joserfc names: decode, then validate.

- :mod:`~bearerguard.jose.jws`: the strict compact parse, the header policy,
  the signature check with a configured key;
- :mod:`~bearerguard.jose.claims`: the claims policy (``iss``, times, ``aud``,
  types, required and custom rules);
- :mod:`~bearerguard.jose.keys`: JWKS documents parsed into verifiers, one
  algorithm per key;
- :mod:`~bearerguard.jose.fetch`: an issuer's key set, fetched, refreshed and
  discovered;
- :mod:`~bearerguard.jose.claimset`: verified claims as ``current_token``
  serves them.

:class:`bearerguard.validators.JWTBearerTokenValidator` is configuration plus
these steps; ``bearerguard verify`` runs them one by one to explain a verdict.
"""
