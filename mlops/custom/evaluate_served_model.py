"""test: score the test split and every labeled batch through the running predictor over HTTP."""

import pandas as pd

from mlops.core import config, model_testing

if "custom" not in globals():
    from mage_ai.data_preparation.decorators import custom


@custom
def evaluate_served_model(*args, **kwargs) -> pd.DataFrame:
    settings = config.load(kwargs.get("config"))
    results = model_testing.evaluate_served(settings)
    return model_testing.evaluations_frame(results)
