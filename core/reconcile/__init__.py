"""Live reconciliation: do the systems agree, record for record and in total?

This package owns the question operators ask every morning, and the answer's life cycle:

- **Reading** each system through its connector's real API, never a sandbox's files: a connector
  that declares ``Capability.LIST`` names the entity types it ``lists``, pages through them with
  ``records`` (or one page at a time with ``records_page``, filtered by the system to what changed
  since, :class:`~crossledger.plugins.connector.ListsPages`) and reads each one as a small
  :class:`~crossledger.plugins.types.Projection` (``project``), kept in the store page by page: an
  incremental run reads only what changed since the last and lays it over what that run kept, and a
  run that stops resumes at the next page. Third-party connectors take part the same way.
- **Matching** (:mod:`.engine`): for each entity type, the system of record (the owner of the
  entity's key field group, by the ownership rules) is compared with every system the hub routes it
  to. The downstream side is held as a map of projections by canonical id (the record's mark, else
  the hub's cross-reference), the source side streams past it: memory grows with one entity type's
  downstream projections, never with whole records.
- **Classifying** each difference as exactly one of ``missing``, ``duplicate``, ``orphan``,
  ``amount_mismatch``, ``status_mismatch``, ``field_drift`` or ``balance`` (per currency and
  period), with both sides' values, the rule that says which side is right, and a proposed repair.
- **Repairing** (:mod:`.repair`) through the hub's own idempotent effects: a ``deliver`` sends the
  hub's golden record to the system that drifted, as a replay would; a ``recover`` admits the
  event the source system's dropped webhook would have carried. A repair never writes into the
  system of record; a dry run counts and previews, ``apply`` enqueues.
- **Keeping** runs and findings in the store (both backends), and the latest run's counts as the
  ``crossledger_reconciliation_findings{class,system}`` gauge.

The interfaces are thin layers over :class:`~.engine.Reconciler`: ``crossledger reconcile``
(:mod:`crossledger.core.cli.reconcile`) and ``/v1/reconciliations``
(:mod:`crossledger.core.ingress.reconciliations`).
"""

from crossledger.core.reconcile.engine import FINDING_CLASSES, Pair, Reconciler, RunReport, report_json
from crossledger.core.reconcile.repair import Repairs, RepairSummary

__all__ = ["FINDING_CLASSES", "Pair", "Reconciler", "RepairSummary", "Repairs", "RunReport", "report_json"]
