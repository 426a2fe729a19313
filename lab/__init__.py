"""The local lab: real management clusters on loopback, the real CRDs, metal3-dev-env-like seed data.

Test and demo infrastructure only; the engine (metal3_pivot) never imports it.
"""
