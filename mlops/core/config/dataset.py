"""The table a platform is pointed at: its file, columns, target, leaky columns and how it is split.

This is the part of the configuration that changes from one dataset to the next (``dataset:`` in the YAML);
every section's base, ``Strict``, lives here too: unknown keys are refused, and settings are frozen.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Strict):
    path: Path | None = None
    url: str | None = None
    separator: str = ","


class ExcludedColumn(Strict):
    reason: str
    post_outcome: bool = False


Bound = datetime | date | float | str  # a date/time (YAML dates arrive as dates) or a number


class Range(Strict):
    """Rows whose split-column value is at least ``start`` and below ``end`` (either may be left open)."""

    start: Bound | None = None
    end: Bound | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> Range:
        if self.start is None and self.end is None:
            raise ValueError("a range needs `start`, `end` or both")
        return self


class Split(Strict):
    # column: batches by listed values of `column`; range: by ranges of a date or number column;
    # random: batches of random rows
    strategy: Literal["column", "range", "random"] = "random"
    column: str | None = None
    reference: list[str] | Range = Field(default_factory=list)
    # column: batch name -> values of `column`; range: batch name -> range; random: batch name -> share of rows
    batches: dict[str, list[str] | Range | float] = Field(default_factory=dict)
    # range: the rows after the reference, one batch per calendar period (named by it, e.g. 2024-07)
    batch_period: Literal["day", "week", "month", "quarter", "year"] | None = None
    validation_size: float = Field(0.2, gt=0, lt=1)
    test_size: float = Field(0.2, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _check_strategy(self) -> Split:
        if self.validation_size + self.test_size >= 1:
            raise ValueError("validation_size + test_size must be below 1")
        if self.batch_period is not None and self.strategy != "range":
            raise ValueError("batch_period needs strategy 'range'")
        if self.strategy == "column":
            if not self.column or not isinstance(self.reference, list) or not self.reference:
                raise ValueError("strategy 'column' needs `column` and a list of `reference` values")
            for name, values in self.batches.items():
                if not isinstance(values, list):
                    raise ValueError(f"batch {name!r}: strategy 'column' takes a list of values")
        elif self.strategy == "range":
            if not self.column or not isinstance(self.reference, Range):
                raise ValueError("strategy 'range' needs `column` and a `reference` range (start and/or end)")
            for name, bounds in self.batches.items():
                if not isinstance(bounds, Range):
                    raise ValueError(f"batch {name!r}: strategy 'range' takes a range (start and/or end)")
            if self.batch_period is not None and self.batches:
                raise ValueError("strategy 'range' takes `batches` or `batch_period`, not both")
            if self.batch_period is not None and self.reference.end is None:
                raise ValueError("batch_period needs the reference's `end`: the batches are the periods after it")
        else:
            for name, share in self.batches.items():
                if not isinstance(share, float) or not 0 < share < 1:
                    raise ValueError(f"batch {name!r}: strategy 'random' takes a share between 0 and 1")
            if sum(float(share) for share in self.batches.values() if isinstance(share, float)) >= 1:
                raise ValueError("the random batches' shares must leave rows for the reference")
        return self


class Leakage(Strict):
    max_single_feature_auc: float = Field(0.75, gt=0.5, le=1.0)


class Dataset(Strict):
    name: str
    source: Source
    target: str
    positive_label: str
    labels: list[str]
    numerical: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    # numerical columns that may be empty (categorical ones always may: empty is its own category)
    nullable_numerical: list[str] = Field(default_factory=list)
    excluded: dict[str, ExcludedColumn] = Field(default_factory=dict)
    split: Split = Split()
    leakage: Leakage = Leakage()

    @field_validator("positive_label", mode="before")
    @classmethod
    def _label_as_text(cls, value: Any) -> str:
        return str(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, value: Any) -> list[str]:
        return [str(v) for v in value]

    @model_validator(mode="after")
    def _check_columns(self) -> Dataset:
        if self.positive_label not in self.labels:
            raise ValueError(f"positive_label {self.positive_label!r} is not one of labels {self.labels}")
        if len(self.labels) != 2:
            raise ValueError(f"labels must name exactly two classes, got {self.labels}")
        if not self.features:
            raise ValueError("no features: list `numerical` and/or `categorical` columns")
        seen: dict[str, str] = {}
        for group, cols in (
            ("numerical", self.numerical),
            ("categorical", self.categorical),
            ("excluded", list(self.excluded)),
            ("target", [self.target]),
        ):
            for col in cols:
                if col in seen:
                    raise ValueError(f"column {col!r} is listed both as {seen[col]} and as {group}")
                seen[col] = group
        unknown = set(self.nullable_numerical) - set(self.numerical)
        if unknown:
            raise ValueError(f"nullable_numerical names non-numerical columns: {sorted(unknown)}")
        if self.split.strategy in ("column", "range") and self.split.column not in seen:
            raise ValueError(f"split column {self.split.column!r} is not a column of the dataset")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numerical, *self.categorical]

    @property
    def columns(self) -> list[str]:
        """Every column the raw file must have."""
        return [*self.features, *self.excluded, self.target]
