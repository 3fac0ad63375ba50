"""Step-type registry: the built-ins plus plug-ins from the ``stepwatch.step_types`` entry points.

A plug-in entry point names a ``StepType`` subclass, or a zero-argument factory
returning a ``StepType`` instance. A plug-in cannot replace a built-in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import entry_points

from .base import Child, DocumentPut, OptionError, StepContext, StepFailed, StepType
from .filter_tags import FilterTags
from .scan_files import ScanFiles
from .shell import Shell
from .summarize import Summarize

__all__ = ["Child", "DocumentPut", "OptionError", "StepContext", "StepFailed", "StepType", "load_step_types"]

ENTRY_POINT_GROUP = "stepwatch.step_types"
BUILTINS: tuple[type[StepType], ...] = (ScanFiles, Summarize, FilterTags, Shell)
log = logging.getLogger(__name__)


def builtin_step_types() -> dict[str, StepType]:
    return {cls.name: cls() for cls in BUILTINS}


def load_step_types() -> Mapping[str, StepType]:
    types = builtin_step_types()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in types:
            log.warning("plug-in step type %r ignored: a built-in has that name", ep.name)
            continue
        obj = ep.load()
        instance = obj() if callable(obj) else obj
        if not isinstance(instance, StepType):
            log.warning("plug-in %r is not a StepType (got %r); ignored", ep.name, instance)
            continue
        types[ep.name] = instance
    return types
