"""monitor: print what the run found and keep it as JSON beside the other reports."""

from mlops.core import config, reporting
from mlops.core.monitoring import drift_metrics

if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


@data_exporter
def record_drift_metrics(summary: dict, *args, **kwargs) -> dict:
    settings = config.load()
    reporting.show(drift_metrics.summary_table([summary]))
    reporting.write_json(settings.reports_dir / f"monitor-{summary['batch']}.json", summary)
    return summary
