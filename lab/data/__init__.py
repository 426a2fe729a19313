"""The seed data: the real CRDs, the still-life objects of a metal3-dev-env site, the inputs of a live one."""
