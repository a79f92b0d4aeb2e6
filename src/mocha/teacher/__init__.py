"""mocha.teacher (see docs/architecture.md)."""
