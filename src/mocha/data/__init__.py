"""mocha.data (see docs/architecture.md)."""
