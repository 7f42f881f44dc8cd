"""prepare: split reference / batches, write them as Parquet with the data and leakage reports."""

import pandas as pd

from mlops.core import config, reporting
from mlops.core.data import prepare_pipeline

if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


@data_exporter
def persist_prepared_data(raw: pd.DataFrame, leakage_report: pd.DataFrame, *args, **kwargs) -> dict:
    settings = config.load()
    folder, report = prepare_pipeline.split_and_persist(raw, settings)
    reporting.write_json(folder / "data_report.json", report)
    reporting.write_json(folder / "leakage_report.json", leakage_report.to_dict("records"))
    reporting.show(reporting.data_table(report))
    return report
