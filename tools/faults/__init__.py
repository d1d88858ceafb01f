"""`rtm faults`: a simulated cohort uploads through the real gateway while the broker, the
database, a worker and the gateway are stopped or killed, and while devices misbehave; after each
fault the harness checks that every acknowledged event is stored exactly once and that the
derived tables equal those of a clean run. See docs/faults.md.

Modules: `stack` (the private stack and how to break it), `load` (the devices and their uploads),
`injectors` (the faults), `checks` (what is compared), `report` (the table and JSON line),
`main` (the command)."""
