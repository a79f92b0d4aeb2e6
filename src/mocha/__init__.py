"""MOCHA: few-shot personalized object detection by distilling a vision-language teacher into YOLO.

Public face: the `mocha` CLI (`mocha.cli`) and the Python API `mocha.personalize.Personalizer`.
Heavy modules (torch, ultralytics, transformers) are imported lazily by the code that needs them,
so `import mocha` stays fast.
"""

from mocha._env import set_offline_env

__version__ = "0.1.0"

set_offline_env()

__all__ = ["__version__", "set_offline_env"]
