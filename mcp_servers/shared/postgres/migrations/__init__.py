"""Ordered schema migrations `NNNN_name.sql`, applied once at start-up by `shared.postgres.migrate`.

Numbering: 0001 foundation (keys, runtime config, audit), 0002 aidb, 0003 hybrid, 0004 ralph, 0005 dashboard,
0006 per-key rates, 0007 ralph verify output;
later changes take the next free number. Never edit an applied file: its checksum is verified at start-up.
"""

__all__: list[str] = []
