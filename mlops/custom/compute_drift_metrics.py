"""monitor: Evidently drift and quality of one batch (runtime variable `batch`, or a prediction-log window)."""

from mlops.core import config, monitoring

if "custom" not in globals():
    from mage_ai.data_preparation.decorators import custom


@custom
def compute_drift_metrics(*args, **kwargs) -> dict:
    settings = config.load(kwargs.get("config"))
    result = monitoring.monitor_from_variables(settings, kwargs)
    return result.summary()
