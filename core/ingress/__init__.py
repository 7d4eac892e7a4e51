"""The HTTP edge: the ASGI app (``app``) and what a refusal is (``refusals``).

Nothing else in the hub speaks HTTP to the outside.
"""
