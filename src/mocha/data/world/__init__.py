"""mochaworld: the generated, deterministic benchmark world (coarse base split + disjoint personal instances)."""

from mocha.data.world.generate import SIZES, YAML_NAME, ensure_world, generate_world

__all__ = ["SIZES", "YAML_NAME", "ensure_world", "generate_world"]
