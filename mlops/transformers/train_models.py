"""train: tune and log every configured model family (on compute.engine); register the best as `challenger`.

A transformer, not a `custom` block: Mage's in-process execute_sync skips a custom root block silently.
"""

import pandas as pd

from mlops.core import config
from mlops.core.training import registry, train_pipeline

if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer


@transformer
def train_models(*args, **kwargs) -> pd.DataFrame:
    settings = config.load()
    result = train_pipeline.train_prepared(settings)
    if url := registry.run_url(settings, registry.configure(settings), result.run_id):
        print(f"MLflow run: {url}")
    return result.leaderboard.assign(registered_version=result.registered.version)
