"""A document's departures from a JSON schema, each as a :class:`Problem`.

Every failure names where it is in the document, the schema keyword that failed and why. A caller
that knows of accepted departures (a spec older than the API version a sandbox speaks, say) passes
``allowed``: problems it accepts are dropped, and a value that must match one of several schemas
(``anyOf``: an id or the expanded object) passes when every problem of one of them is accepted.
What is left is a real departure.
"""

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

Location = tuple[str | int, ...]
"""Where a value is in a document: keys and list indexes from its root."""


@dataclass(frozen=True)
class Problem:
    """One way a document departs from its schema."""

    location: Location
    """Where: for a missing property, the object that lacks it."""
    keyword: str
    """The schema keyword that failed: ``required``, ``type``, ``enum``, ``maxLength``..."""
    message: str = field(compare=False)
    """Why, in the validator's words (two problems differing only in wording are one)."""
    name: str | None = None
    """The property concerned: the missing one for ``required``, else the last key of ``location``."""

    def __str__(self) -> str:
        where = "/".join(map(str, self.location)) or "(root)"
        return f"{where}: {self.message} [{self.keyword}]"


Allowed = Callable[[Any, Problem], bool]
"""Whether a problem (seen in the given whole document) is an accepted departure."""


def nothing_allowed(document: Any, problem: Problem) -> bool:
    return False


def problems(validator: Validator, document: Any, allowed: Allowed = nothing_allowed) -> list[Problem]:
    """The problems ``validator`` finds in ``document`` that ``allowed`` does not accept, each once."""
    found: list[Problem] = []
    for error in validator.iter_errors(document):
        found += _remaining(error, document, allowed)
    return list(dict.fromkeys(found))


def _problems_of(error: ValidationError) -> Iterator[Problem]:
    """The problems one validation error stands for (one per missing property of a ``required``)."""
    location: Location = tuple(error.absolute_path)
    keyword = str(error.validator)
    if keyword == "required" and isinstance(error.instance, Mapping):
        for name in error.validator_value:
            if name not in error.instance:
                yield Problem(location, keyword, f"{name!r} is a required property", name)
        return
    name = next((part for part in reversed(location) if isinstance(part, str)), None)
    yield Problem(location, keyword, error.message, name)


def _remaining(error: ValidationError, document: Any, allowed: Allowed) -> list[Problem]:
    """The problems behind ``error`` that ``allowed`` does not accept.

    An ``anyOf``/``oneOf`` that no branch matched is fine when one branch's problems are all accepted;
    otherwise what is wrong is told by the branch that came closest: one for the instance's type (an
    expanded object is judged as the object, not as the id it could have been), with fewest problems.
    """
    if error.validator in ("anyOf", "oneOf") and error.context:
        here = tuple(error.absolute_path)
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        left = [list(dict.fromkeys(p for sub in subs for p in _remaining(sub, document, allowed)))
                for subs in branches.values()]
        if any(not found for found in left):
            return []
        return min(left, key=lambda found: (any(p.keyword == "type" and p.location == here for p in found),
                                            len(found)))
    return [problem for problem in _problems_of(error) if not allowed(document, problem)]
