"""A batch read compactly (its categories as pandas categoricals, for the monitor's large batches) holds the same
values as the plain read, and the model's input built from it encodes to the very same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.core import config
from mlops.core.data import features, preparation, validation
from mlops.testing import loop, tables


@pytest.mark.parametrize("name", ["claims", "fair"])  # heavy missing values; coded categories stored as numbers
@pytest.mark.parametrize("encoding", ["onehot", "native"])
def test_a_compact_read_is_the_same_table_and_encodes_alike(name: str, encoding: str, tmp_path: Path) -> None:
    table = tables.by_name(name)
    config_file = loop.write_config(table, tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    settings = config.load(config_file, environ=loop.clean_environment(config_file, tmp_path))
    dataset = settings.dataset
    path = tmp_path / "batch.parquet"
    frame = validation.read_validated(table.write_csv(tmp_path), dataset)
    frame.to_parquet(path, index=False)
    plain = preparation.read_part(path)
    compact = preparation.read_part(path, [*dataset.categorical, dataset.target])
    text = [c for c in dataset.categorical if plain[c].dtype == object]
    assert text and all(isinstance(compact[c].dtype, pd.CategoricalDtype) for c in text)
    pd.testing.assert_frame_equal(compact.astype({c: object for c in compact.columns}), plain.astype(object))
    assert (preparation.labels(compact, settings) == preparation.labels(plain, settings)).all()
    fitted = features.preprocessor(dataset, "xgboost", encoding).fit(features.normalise(plain, dataset))
    np.testing.assert_array_equal(
        fitted.transform(features.normalise(compact, dataset)), fitted.transform(features.normalise(plain, dataset))
    )
