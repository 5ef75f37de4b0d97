"""The framework-neutral core: what a front hands over and what decides.

* :mod:`~bearerguard.core.credentials`: ``Credentials`` (a request as plain
  values) and the token read out of them; token digests.
* :mod:`~bearerguard.core.guard`: ``Guard``, the decision (registry,
  routing, cache hit and miss, deny-list, counters).
* :mod:`~bearerguard.core.revoking`: the guard's revocation methods.
* :mod:`~bearerguard.core.front`: what every front shares (settings, ``scopes=``).
* :mod:`~bearerguard.core.requirements`: what a view requires of a token.
* :mod:`~bearerguard.core.hooks`: the user's hooks and the one guard they run behind.
* :mod:`~bearerguard.core.routing`: what may be registered; which validator a token goes to.
* :mod:`~bearerguard.core.tokeninfo`: ``TokenInfo``, what the cache keeps.
* :mod:`~bearerguard.core.binding`: sender-constrained tokens, the ``cnf`` checks.
* :mod:`~bearerguard.core.certificates`: client certificates (RFC 8705) and their readers.
* :mod:`~bearerguard.core.proxies`: ``TrustedProxies``, whose headers are believed.
* :mod:`~bearerguard.core.connection`: the peer, proxy headers and TLS
  certificate read out of a WSGI environ or an ASGI scope, for the fronts.
* :mod:`~bearerguard.core.stats`: ``GuardStats``, the shape of ``stats()``.
* :mod:`~bearerguard.core.values`, :mod:`~bearerguard.core.frozen`: claim
  values read one way everywhere; read-only claims.
* :mod:`~bearerguard.core.shared`: the values cached tokens repeat, kept once.

Nothing here imports Flask, Werkzeug or Starlette. The submodules are not
imported by this package (validators import the core, and the guard imports
validators): import them by name.
"""
