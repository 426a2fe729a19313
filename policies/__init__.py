"""metal3-pivot's CrossGuard policy pack: validators.py (pure rules), __main__.py (the pack)."""
