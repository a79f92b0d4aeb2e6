"""mocha.export (see docs/architecture.md)."""
