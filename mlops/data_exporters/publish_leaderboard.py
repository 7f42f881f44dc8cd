"""train: print the leaderboard and keep it as JSON under the reports folder."""

import pandas as pd

from mlops.core import config, reporting

if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


@data_exporter
def publish_leaderboard(leaderboard: pd.DataFrame, *args, **kwargs) -> dict:
    settings = config.load()
    reporting.show(reporting.leaderboard_table(leaderboard, settings.training.selection_metric))
    records = leaderboard.to_dict("records")
    reporting.write_json(settings.reports_dir / "leaderboard.json", records)
    return {"leaderboard": records}
