"""Opening the configured ledger: the one place that picks a backend (SQLite or PostgreSQL)."""

from proxy.accounting.ledger import BatchedLedger, Ledger
from proxy.accounting.ledger_read import LedgerReader, open_readonly
from proxy.control.config import LedgerConfig


def open_ledger(config: LedgerConfig) -> BatchedLedger:
    """The ledger a LedgerConfig names, for the proxy."""
    if config.backend == "postgres":
        from proxy.accounting.ledger_postgres import PostgresLedger

        return PostgresLedger(config)
    return Ledger(config.path)


def open_reader(config: LedgerConfig, path: str | None = None) -> LedgerReader:
    """The CLI's reader: the file at `path`, else the ledger the config names (PostgreSQL: the fleet's)."""
    if path is None and config.backend == "postgres":
        from proxy.accounting.ledger_postgres import PostgresReader

        return PostgresReader(config)
    return open_readonly(path or config.path)
