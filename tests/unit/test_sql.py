"""sql.normalize() and has_sql_keyword(): literals out, structure and placeholders kept."""

from __future__ import annotations

import pytest

from alaz.protocols.sql import has_sql_keyword, normalize


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM t1 WHERE id = 42", "SELECT * FROM t1 WHERE id = ?"),
        (
            "SELECT * FROM t WHERE name = 'o''brien' AND x > 4.5e3",
            "SELECT * FROM t WHERE name = ? AND x > ?",
        ),
        (
            "INSERT INTO items VALUES (1, 'apple', 1.50), (2, 'pear', -2.25)",
            "INSERT INTO items VALUES (?, ?, ?), (?, ?, -?)",
        ),
        ("SELECT $1, $2 FROM t WHERE a = $3", "SELECT $1, $2 FROM t WHERE a = $3"),
        ("SELECT $$it's$$, $fn$ x $fn$, E'a\\'b', x'ff', 0xFF, .5", "SELECT ?, ?, ?, ?, ?, ?"),
        ('SELECT "Col 1", col_2, t.v3 FROM "Tab 9"', 'SELECT "Col 1", col_2, t.v3 FROM "Tab 9"'),
        ("SELECT 1 -- note 7\n/* 8 */ FROM `t 2`", "SELECT ? -- note 7\n/* 8 */ FROM `t 2`"),
        ("SELECT 'it\\'s', NULL, TRUE FROM y LIMIT 10", "SELECT ?, NULL, TRUE FROM y LIMIT ?"),
    ],
)
def test_normalize_replaces_literals_only(sql: str, expected: str) -> None:
    assert normalize(sql) == expected


def test_double_quotes_are_strings_only_when_asked() -> None:
    sql = 'SELECT * FROM t WHERE b = "s" AND c = 3'
    assert normalize(sql) == 'SELECT * FROM t WHERE b = "s" AND c = ?'
    assert normalize(sql, double_quoted_strings=True) == "SELECT * FROM t WHERE b = ? AND c = ?"


def test_normalize_is_idempotent_and_leaves_no_value() -> None:
    sql = "UPDATE accounts SET balance = 1000, owner = 'ada' WHERE id IN (7, 8)"
    once = normalize(sql)
    assert normalize(once) == once
    assert not any(v in once for v in ("1000", "ada", "7", "8"))


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("select 1", True),
        ("Insert into t values (1)", True),
        ("SET NAMES utf8mb4", False),
        ("SHOW TABLES", False),
        ("begin", True),
        ("EXECUTE _pg3_0 *values*", True),
    ],
)
def test_keyword_filter_matches_the_go_agent(text: str, kept: bool) -> None:
    assert has_sql_keyword(text) is kept
