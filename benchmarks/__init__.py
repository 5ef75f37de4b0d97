"""bearerguard's benchmark suite: ``make bench`` (``python -m benchmarks``).

Measures the cost of a protected Flask request against the unprotected floor,
side by side with Authlib, flask-jwt-extended and hand-written references, in
one process with interleaved rounds; then growth curves, memory per cached
token, and a real HTTP load run under gunicorn. See ``python -m benchmarks -h``.

``python -m benchmarks.instructions`` counts instructions per request under
callgrind instead (floor, hit, the hit's limit, miss, raw verify): what a change
to the hot path costs, unmoved by the machine's neighbours.
``python -m benchmarks.bytecodes`` counts the bytecodes of a request by
function (``sys.settrace``): bearerguard's share, and where it goes.
``python -m benchmarks.interference`` times what a signature check and a Flask
request cost each other when run back to back (the same instructions, cold):
the part of a miss's limit that no Python code can remove.
"""
