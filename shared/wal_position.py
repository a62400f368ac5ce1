"""The one rule for a write's commit position: the WAL position the gateway makes a caller's next
reads wait for on a replica (X-Commit-LSN, and GET /wal-position after a write)."""

from __future__ import annotations

# Asked once the COMMIT has returned: the flush position, which a replica can reach (a walsender
# sends flushed WAL only) and which a synchronous commit is within. The insert and write
# positions may lie past records that nobody flushes yet (another session's open transaction on
# a part-filled page, WAL buffers written out early): a read would wait for those, and could give
# up. With synchronous_commit off, the commit record itself may not be flushed yet, and only the
# insert position covers it. taskgate.fastapi spells this again (it runs inside other apps).
COMMITTED_POSITION_SQL = (
    "SELECT (CASE current_setting('synchronous_commit') WHEN 'off'"
    " THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_flush_lsn() END)::text"
)
