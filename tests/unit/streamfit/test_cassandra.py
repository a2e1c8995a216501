"""streamfit.cassandra's pure helpers: how rows become single-partition batches."""

from __future__ import annotations

from cassandra.query import BatchStatement

from streamfit.cassandra import BATCH_BYTES, partition_batches, rows_per_batch
from streamfit.domains import load_domain
from streamfit.featurestore import feature_row_bytes

INSERT = "INSERT INTO ks.t (p, c, v) VALUES (%s, %s, %s)"


def test_each_batch_holds_one_partition_and_at_most_the_rows_asked() -> None:
    rows = [(p, c, float(c)) for p in ("a", "b") for c in range(7)] + [("a", 99, 1.0)]
    batches = partition_batches(INSERT, rows, 3, lambda row: row[0])

    sizes = []
    for batch, params in batches:
        assert isinstance(batch, BatchStatement) and params == ()
        sizes.append(len(batch))
        # a plain query is bound into its text: VALUES ('a', 0, 0.0)
        keys = {query.split("VALUES ('")[1][0]
                for _, query, _ in batch._statements_and_parameters}
        assert len(keys) == 1, keys
    # a: 8 rows -> 3, 3, 2; b: 7 rows -> 3, 3, 1; nothing lost, nothing twice
    assert sorted(sizes) == [1, 2, 3, 3, 3, 3]
    assert sum(sizes) == len(rows)


def test_a_flights_feature_row_batch_stays_under_the_stock_fail_threshold() -> None:
    row = feature_row_bytes(load_domain("flights"))
    per = rows_per_batch(row)
    assert per > 1
    assert per * row <= BATCH_BYTES < 50 * 1024
    assert rows_per_batch(10 * BATCH_BYTES) == 1
