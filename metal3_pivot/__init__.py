"""metal3-pivot's move engine: plain Python, no Pulumi import (docs/architecture.md)."""
