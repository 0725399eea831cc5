"""An in-process stand-in for Ray actor handles, for runs without a cluster.

``InlineHandle(obj).method.remote(*args)`` calls ``obj.method`` at once and wraps the
value in ``Done``; a ``Done`` passed as an argument is unwrapped first, as Ray resolves
an ``ObjectRef``. Everything runs in order in this process, so the sync modes cannot
differ here: it serves doctests, the CLI without Ray, and the 1-shard baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Done", "InlineHandle", "poll"]


class Done:
    """A finished call's value (the inline counterpart of a ready ``ObjectRef``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Method:
    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def remote(self, *args: Any) -> Done:
        return Done(self._fn(*(a.value if isinstance(a, Done) else a for a in args)))


class InlineHandle:
    """Wraps an object so that ``handle.m.remote(...)`` calls ``obj.m(...)`` now."""

    __slots__ = ("_obj",)

    def __init__(self, obj: object) -> None:
        self._obj = obj

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._obj, name))


def poll(ref: Any) -> tuple[bool, Any]:
    """``(True, value)`` if ``ref`` (a ``Done`` or a Ray ``ObjectRef``) is ready now,
    else ``(False, None)``; never waits."""
    if isinstance(ref, Done):
        return True, ref.value
    import ray

    ready, _ = ray.wait([ref], timeout=0)
    return (True, ray.get(ref)) if ready else (False, None)
