"""prepare: find (or download) and validate the raw file named by the configuration (on compute.engine)."""

import pandas as pd

from mlops.core import config
from mlops.core.data import prepare_pipeline

if "data_loader" not in globals():
    from mage_ai.data_preparation.decorators import data_loader


@data_loader
def load_raw_dataset(*args, **kwargs) -> pd.DataFrame:
    return prepare_pipeline.load_for_checks(config.load())
