"""Import and export of events as JSON Lines: one event per line, streamed both ways.

Import applies exactly the checks the relay applies to an ``EVENT`` (see
:meth:`relay.nostr.session.Session.receive`): the message size, decoding, shape, limits and
time window of ``relay.limits``, the id, NIP-40 expiration, NIP-70 protection and the
signature. Ephemeral events are valid but never stored, so they are counted as rejected.
Everything accepted goes through :meth:`relay.storage.postgres.Store.ingest` in batches, in
file order, so the NIP-01 replace and NIP-09 deletion rules come out exactly as if the file had
been published to the relay one event after the other; each outcome gets the message the relay
would have answered with (:attr:`relay.storage.postgres.IngestStatus.reply`).

Export writes the stored events, raw JSON exactly as stored, in log order (oldest first), in
pages keyed on ``seq`` inside one read-only snapshot, so the output is consistent however long
it takes and however much is written meanwhile. Expired events (NIP-40) are left out.
``import(export(x))`` stores the same events again.
"""

from __future__ import annotations

from relay.archive.exporter import OutputError, export_events, iter_export, parse_export_filter
from relay.archive.importer import (
    EPHEMERAL_REASON,
    Checked,
    ImportReport,
    LineOutcome,
    Reason,
    Rejection,
    Result,
    check_line,
    import_events,
    import_stream,
)

__all__ = [
    "EPHEMERAL_REASON",
    "Checked",
    "ImportReport",
    "LineOutcome",
    "OutputError",
    "Reason",
    "Rejection",
    "Result",
    "check_line",
    "export_events",
    "import_events",
    "import_stream",
    "iter_export",
    "parse_export_filter",
]
