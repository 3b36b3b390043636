"""SQL text helpers for exported paths: literal normalisation and the Go agent's keyword filter.

`normalize()` replaces string and number literals with `?`, so that `SELECT * FROM t WHERE id =
42` and `... id = 7` become one path (bounded cardinality, no values leaked). It is a pure text
pass (one compiled regex, no parser): comments, quoted identifiers and placeholders (`$1`, `?`,
`:name`) are kept, and so are NULL, TRUE and FALSE. It is off unless the caller uses it.

`has_sql_keyword()` is the Go agent's filter for simple and text queries: rows whose upper-cased
text contains none of its keywords are dropped there. The parsers emit every statement; callers
that want Go's behaviour apply this filter.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["SQL_KEYWORDS", "has_sql_keyword", "normalize"]

SQL_KEYWORDS: Final = (
    "SELECT",
    "INSERT INTO",
    "UPDATE",
    "DELETE FROM",
    "CREATE TABLE",
    "ALTER TABLE",
    "DROP TABLE",
    "TRUNCATE TABLE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "CREATE INDEX",
    "DROP INDEX",
    "CREATE VIEW",
    "DROP VIEW",
    "GRANT",
    "REVOKE",
    "EXECUTE",
)

# Alternatives, tried left to right at each position: what to keep comes first (comments,
# quoted identifiers, placeholders, words that contain digits), then the literals; a prefixed
# string (E'..') goes before everything, or its prefix would be taken for an identifier.
_TOKENS: Final = re.compile(
    r"""
    (?P<plit>(?:[EeNnBbXx]|[Uu]&)'(?:[^'\\]|\\.|'')*')   # E'..', N'..', X'ff', B'01' first:
                                                            # the prefix is not an identifier
  | (?P<keep>
        --[^\n]*                          # line comment
      | /\*.*?\*/                         # block comment
      | `(?:[^`]|``)*`                    # MySQL quoted identifier
      | \$\d+                             # PostgreSQL placeholder $1
      | [A-Za-z_][\w$]*                   # identifier or keyword (t1, col_2)
    )
  | (?P<dq>"(?:[^"]|"")*")                # "identifier" (a string in MySQL's default mode)
  | (?P<lit>
        '(?:[^'\\]|\\.|'')*'                      # 'string' (backslash escapes: MySQL, E'')
      | \$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)?\$  # $$dollar$$ or $fn$ ... $fn$
      | 0[xX][0-9a-fA-F]+                           # 0xff
      | (?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?        # 42, 4.2, .5, 1e9
    )
    """,
    re.VERBOSE | re.DOTALL,
)


def normalize(sql: str, *, double_quoted_strings: bool = False) -> str:
    """`sql` with every string and number literal replaced by `?`.

    `double_quoted_strings` treats "..." as a string literal (MySQL without ANSI_QUOTES);
    by default it is a quoted identifier (PostgreSQL, standard SQL) and kept.
    """

    def repl(m: re.Match[str]) -> str:
        if m.group("keep") is not None:
            return m.group(0)
        if m.group("dq") is not None:
            return "?" if double_quoted_strings else m.group(0)
        return "?"

    return _TOKENS.sub(repl, sql)


def has_sql_keyword(text: str) -> bool:
    """Whether the Go agent would keep a row with this SQL (a substring keyword match)."""
    upper = text.upper()
    return any(k in upper for k in SQL_KEYWORDS)
