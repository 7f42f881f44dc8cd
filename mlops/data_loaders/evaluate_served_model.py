"""test: score the test split and every labeled batch through the running predictor over HTTP."""

import pandas as pd

from mlops.core import config
from mlops.core.lifecycle import model_testing

if "data_loader" not in globals():
    from mage_ai.data_preparation.decorators import data_loader


@data_loader  # a loader (not custom): Mage's in-process execute_sync only starts at loader-like roots
def evaluate_served_model(*args, **kwargs) -> pd.DataFrame:
    settings = config.load()
    results = model_testing.evaluate_served(settings)
    return model_testing.evaluations_frame(results)
