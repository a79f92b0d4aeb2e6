"""mocha.student (see docs/architecture.md)."""
