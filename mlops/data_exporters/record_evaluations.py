"""test: record the served model's metrics in MLflow (under its version) and in store.evaluations."""

import pandas as pd

from mlops.core import config, reporting
from mlops.core.lifecycle import model_testing

if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


@data_exporter
def record_evaluations(evaluations: pd.DataFrame, *args, **kwargs) -> dict:
    settings = config.load()
    results = model_testing.from_frame(evaluations)
    run_id = model_testing.record(settings, results)
    reporting.show(model_testing.evaluations_table(results))
    reporting.write_json(settings.reports_dir / "evaluations.json", evaluations.to_dict("records"))
    return {"mlflow_run_id": run_id, "evaluations": evaluations.to_dict("records")}
