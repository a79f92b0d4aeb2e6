"""mocha.evaluate (see docs/architecture.md)."""
