"""The SuiteQL interpreter on its own: what a query costs (its answers are checked over HTTP in
test_netsuite_sandbox.py)."""

from collections import Counter
from collections.abc import Iterator, Mapping
from decimal import Decimal

from crossledger.plugins.netsuite.sandbox import suiteql


class CountedRow(Mapping[str, suiteql.Value]):
    """A row that counts the reads of its columns in ``reads``."""

    def __init__(self, reads: Counter[str], **values: suiteql.Value) -> None:
        self._reads, self._values = reads, values

    def __getitem__(self, column: str) -> suiteql.Value:
        self._reads[column] += 1
        return self._values[column]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def test_a_keyset_page_reads_the_rows_of_the_page_not_the_table() -> None:
    reads: Counter[str] = Counter()
    table = suiteql.Table("t", ("id", "kind"), [CountedRow(reads, id=Decimal(n), kind="odd" if n % 2 else "even")
                                                for n in range(10_000, 0, -1)])
    query = "SELECT id FROM t WHERE kind = 'odd' AND id > {} ORDER BY id"
    suiteql.select(query.format(0), lambda name: table)

    reads.clear()
    page = suiteql.select(query.format(5000), lambda name: table)

    assert (len(page), page.page(0, 3)) == (2500, [{"id": "5001"}, {"id": "5003"}, {"id": "5005"}])
    assert reads == {"id": 3}  # the page's own rows, rendered
