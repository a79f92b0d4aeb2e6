"""mocha.distill (see docs/architecture.md)."""
