"""The platform's one configuration: a YAML file plus ``MLOPS_*`` environment overrides.

``dataset`` describes the table (the part that changes from one dataset to the next), ``settings`` every other
section and the paths derived from ``paths.work_dir``, ``loading`` how the file and the environment are read.
Callers import from here: ``config.load()``, ``config.Settings``, ``config.Dataset``.
"""

from mlops.core.config.dataset import Dataset, ExcludedColumn, Leakage, Range, Source, Split, Strict
from mlops.core.config.loading import ENV_PREFIX, ConfigError, config_path, load
from mlops.core.config.settings import (
    PACKAGE_ROOT,
    Demo,
    Deploy,
    Monitoring,
    Orchestration,
    Paths,
    Presentation,
    Search,
    Secrets,
    Serving,
    Settings,
    Stack,
    Stores,
    Threshold,
    Training,
)

__all__ = [
    "ENV_PREFIX",
    "PACKAGE_ROOT",
    "ConfigError",
    "Dataset",
    "Demo",
    "Deploy",
    "ExcludedColumn",
    "Leakage",
    "Monitoring",
    "Orchestration",
    "Paths",
    "Presentation",
    "Range",
    "Search",
    "Secrets",
    "Serving",
    "Settings",
    "Source",
    "Split",
    "Stack",
    "Stores",
    "Strict",
    "Threshold",
    "Training",
    "config_path",
    "load",
]
