"""The `propensity` command line (click): `cli.main` holds the group and the entry
point `main()`; one module per stage (data, train, score, serve, privacy) wires its
commands. Nothing runs at import beyond defining the commands."""
