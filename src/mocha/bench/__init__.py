"""Speed and memory benchmarks: `mocha bench <name>` prints a table and writes runs/bench/<name>.json.

Each benchmark is a function `run(out_dir: Path, **options) -> BenchResult` registered in `BENCHMARKS`
as "module:function", imported only when asked for.
"""

from mocha.bench.core import BENCHMARKS, BenchResult, run_benchmark

__all__ = ["BENCHMARKS", "BenchResult", "run_benchmark"]
