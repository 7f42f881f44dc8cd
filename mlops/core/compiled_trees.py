"""XGBoost's trees as numpy arrays, for scoring a few rows without XGBoost's per-call cost.

XGBoost's predict pays ~0.3 ms per call whatever the row count (it parses its configuration and rebuilds a
view of the model on every call: dmlc/xgboost#12311), while walking 300 depth-5 trees for one row is a
few thousand comparisons. :class:`CompiledTrees` reads the booster's JSON model and walks every tree at
once, level by level, with XGBoost's own arithmetic: features and split values in float32, ``x < split``
goes left, a missing value takes the node's default branch, leaf values summed in float32 in tree order
onto the base margin, then ``1 / (1 + expf(-margin))`` with the C library's ``expf``. The result is
bit-identical to the booster: :meth:`CompiledTrees.matches` checks it on given rows, and the scorer uses
these trees only when it holds. Anything else in the model (categorical splits, several outputs, another
objective) raises :class:`UnsupportedBooster`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from collections.abc import Callable
from typing import Any

import numpy as np

LEAF = -1  # XGBoost's child index of a leaf


class UnsupportedBooster(ValueError):
    """The booster holds something these arrays do not model; the message says what."""


def _c_expf() -> Callable[[np.ndarray], np.ndarray]:
    """The C library's expf (what XGBoost calls); numpy's float32 exp differs from it in the last bit."""
    name = ctypes.util.find_library("m")
    if name is None:  # no C maths library to load: float64 exp, rounded once (rarely one ulp off)
        return lambda x: np.exp(x.astype(np.float64)).astype(np.float32)
    expf = ctypes.CDLL(name).expf
    expf.restype, expf.argtypes = ctypes.c_float, [ctypes.c_float]
    return lambda x: np.fromiter((expf(v) for v in x.tolist()), dtype=np.float32, count=len(x))


class CompiledTrees:
    """Every tree padded to a complete binary tree of the ensemble's depth, stored level by level."""

    def __init__(self, booster: Any) -> None:
        model = json.loads(booster.save_raw("json"))
        learner = model["learner"]
        objective = learner.get("objective", {}).get("name")
        if objective != "binary:logistic":
            raise UnsupportedBooster(f"objective {objective!r}")
        params = learner["learner_model_param"]
        if int(params.get("num_target", 1)) != 1 or int(params.get("num_class", 0)) > 1:
            raise UnsupportedBooster("more than one output")
        gbtree = learner["gradient_booster"]
        if gbtree.get("name") != "gbtree":
            raise UnsupportedBooster(f"booster {gbtree.get('name')!r}")
        trees = gbtree["model"]["trees"]
        if any(any(t["split_type"]) for t in trees):
            raise UnsupportedBooster("categorical splits")
        self.depth = max(_depth(tree) for tree in trees)
        self.inner = 2**self.depth - 1  # split nodes per padded tree (heap order: children of i are 2i+1, 2i+2)
        count = len(trees)
        self.feature = np.zeros((count, self.inner), np.intp)
        self.split = np.full((count, self.inner), np.inf, np.float32)
        self.default_left = np.ones((count, self.inner), bool)
        self.leaf = np.zeros((count, self.inner + 1), np.float32)
        for i, tree in enumerate(trees):
            self._pad(i, tree, node=0, position=0, level=0)
        self.tree_offset = np.arange(count) * self.inner
        self.leaf_offset = np.arange(count) * (self.inner + 1) - self.inner
        base_score = np.float32(float(str(params["base_score"]).strip("[]")))
        # XGBoost turns its base score (a probability) into a margin in float: -log(1/p - 1).
        self.base_margin = np.float32(-np.log(np.float32(1) / base_score - np.float32(1)))
        self._flat = (self.feature.ravel(), self.split.ravel(), self.default_left.ravel(), self.leaf.ravel())
        self._expf = _c_expf()

    def _pad(self, i: int, tree: dict[str, Any], node: int, position: int, level: int) -> None:
        left, right = tree["left_children"][node], tree["right_children"][node]
        if level == self.depth:  # a leaf at full depth
            self.leaf[i, position - self.inner] = tree["split_conditions"][node]
            return
        if left == LEAF:  # a leaf above full depth: both branches below lead to its value
            self._pad(i, tree, node, 2 * position + 1, level + 1)
            self._pad(i, tree, node, 2 * position + 2, level + 1)
            return
        self.feature[i, position] = tree["split_indices"][node]
        self.split[i, position] = tree["split_conditions"][node]
        self.default_left[i, position] = bool(tree["default_left"][node])
        self._pad(i, tree, left, 2 * position + 1, level + 1)
        self._pad(i, tree, right, 2 * position + 2, level + 1)

    def margins(self, encoded: np.ndarray) -> np.ndarray:
        feature, split, default_left, leaf = self._flat
        x = np.asarray(encoded, dtype=np.float32)
        rows = np.arange(len(x))[:, None]
        position = np.zeros((len(x), len(self.tree_offset)), np.intp)
        for _ in range(self.depth):
            flat = position + self.tree_offset
            value = x[rows, feature[flat]]
            go_left = np.where(np.isnan(value), default_left[flat], value < split[flat])
            position = 2 * position + 2 - go_left
        values = leaf[position + self.leaf_offset]
        # XGBoost adds tree by tree onto the base margin in float32; cumsum keeps that order (a sum would not).
        start = np.full((len(x), 1), self.base_margin, np.float32)
        return np.cumsum(np.concatenate([start, values], axis=1), axis=1, dtype=np.float32)[:, -1]

    def probabilities(self, encoded: np.ndarray) -> np.ndarray:
        margins = self.margins(encoded)
        return np.float32(1) / (np.float32(1) + self._expf(-margins))

    def matches(self, booster: Any, encoded: np.ndarray) -> bool:
        """Bit-identical to ``booster`` on these rows?"""
        expected = booster.inplace_predict(encoded, predict_type="value")
        return bool(np.array_equal(self.probabilities(encoded), np.asarray(expected, dtype=np.float32)))


def _depth(tree: dict[str, Any], node: int = 0) -> int:
    left = tree["left_children"][node]
    if left == LEAF:
        return 0
    return 1 + max(_depth(tree, left), _depth(tree, tree["right_children"][node]))
