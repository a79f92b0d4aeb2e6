"""mocha.personalize (see docs/architecture.md)."""
