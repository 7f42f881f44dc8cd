"""monitor: Evidently drift and quality of one batch (runtime variable `batch`, or a prediction-log window).

A transformer, not a `custom` block: Mage's in-process execute_sync skips a custom root block silently.
"""

from mlops.core import config
from mlops.core.monitoring import drift_metrics

if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer


@transformer
def compute_drift_metrics(*args, **kwargs) -> dict:
    settings = config.load()
    result = drift_metrics.monitor_from_variables(settings, kwargs)
    return result.summary()
