"""The test kit: what the test files share, so that no test imports conftest or another test module.

- env.py          the checkout's paths, the tool environment, the session folder the orphan check scans
- move.py         seeding a pair, snapshots, canonical forms, the engine CLI, verify
- concurrency.py  the write journal of racing movers, the move lock's Lease
- pulumi_cli.py   the real pulumi CLI on a throw-away project
"""
