"""Hold the sandboxes to their vendors' published API descriptions.

A sandbox is only as useful as it is faithful: a connector tested against a sandbox that answers
``null`` where the API always gives a string, or an error body the API never sends, passes here and
fails in production. These modules read the vendors' own documents and say where an answer departs
from them, in one vocabulary:

- :mod:`.documents` reads a description from disk (JSON, gzipped JSON or YAML);
- :mod:`.problems`: a departure is a :class:`~.problems.Problem` (where, which schema keyword, why),
  found by any JSON Schema validator;
- :mod:`.openapi`: an OpenAPI 3.0 description, which finds the operation a request was and checks
  a response against the schema it documents for that status;
- :mod:`.answers`: :class:`~.answers.Recorder` wraps a sandbox's ASGI app and hands every exchange
  to a vendor's :data:`~.answers.Check`, so a test sees the departures of every call made through
  any client (an official SDK, the connectors);
- one small module per vendor with what only that vendor needs: :mod:`.stripe` (the API-version
  drift between Stripe's spec and the version the sandbox speaks), :mod:`.zendesk` (Zendesk's error
  shape and the errata of its description), :mod:`.salesforce` (describe results and Salesforce's
  error shape), :mod:`.business_central` (v2.0 answers held to the only published description,
  v1.0's, with the differences as errata).

The bundled descriptions, and where each comes from, are in ``tests/fixtures/specs/README.md``.
"""
