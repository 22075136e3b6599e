"""Load another bench script as a module.

bench/ is not a package, and its scripts drop it from ``sys.path`` first thing, since
bench/http.py would shadow the stdlib's ``http`` package. A script that reuses a sibling imports
this module before that (its folder is ``sys.path[0]`` then) and loads the sibling by file path.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

HERE = os.path.dirname(os.path.realpath(__file__))


def load_sibling(filename: str) -> ModuleType:
    """bench/<filename> as the module ``meet_bench_<stem>`` (registered in ``sys.modules``)."""
    name = "meet_bench_" + filename.removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, filename))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
