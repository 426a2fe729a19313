"""metal3-pivot's minimal Pulumi language host for Python (see host.py for why it exists)."""
