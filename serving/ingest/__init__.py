"""Real-time ingest: events sent to `POST /events` or read from a Redis Stream
are checked by the data contract (`batch`), appended to the event log (`log`)
and their customers' online-store rows refreshed (`live`); docs/ingest.md."""
