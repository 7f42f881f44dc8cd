"""Tree ensembles as numpy arrays, for scoring a few rows without the libraries' per-call cost.

On one record, XGBoost's predict pays ~0.3 ms whatever the row count (it parses its configuration and
rebuilds a view of the model on every call: dmlc/xgboost#12311), and a scikit-learn random forest ~10 ms
(input validation and a joblib dispatch per tree), while walking the trees is a few thousand
comparisons. :class:`CompiledTrees` holds every node of every tree in flat arrays and walks all trees
at once, one level per step, with the arithmetic of the library that fitted them:

- XGBoost (``binary:logistic``): features and split values in float32, ``x < split`` goes left, leaf
  values summed in float32 in tree order onto the base margin, then ``1 / (1 + expf(-margin))`` with the
  C library's ``expf``;
- scikit-learn ``RandomForestClassifier``: features cast to float32, ``x <= threshold`` (float64) goes
  left, each tree's leaf class fractions normalised as ``DecisionTreeClassifier.predict_proba`` does,
  summed in float64 in tree order, then divided by the number of trees;
- scikit-learn ``HistGradientBoostingClassifier`` (binary, numeric splits): float64 ``x <= threshold``,
  leaf values summed in float64 in tree order onto the baseline, then ``scipy.special.expit``.

A missing value (NaN) takes the node's default branch in all three. The result is bit-identical to the
estimator's own probabilities: :meth:`CompiledTrees.matches` checks it, and the scorer uses these
arrays only when it holds. Anything else (categorical splits, several outputs or classes, another
objective) raises :class:`UnsupportedTrees`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

LEAF = -1  # child index of a leaf (XGBoost and scikit-learn trees)
MAX_STEPS = 64  # deeper trees are not walked here (the estimator scores them itself)


class UnsupportedTrees(ValueError):
    """The estimator holds something these arrays do not model; the message says what."""


@dataclass(frozen=True)
class Tree:
    """One tree, nodes numbered from its root 0; ``left[i] == LEAF`` marks a leaf, whose value is ``value[i]``."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    value: np.ndarray


@dataclass(frozen=True)
class Arithmetic:
    """How an ensemble turns a row into a probability (see the module docstring)."""

    strict: bool  # x < threshold goes left (XGBoost); else x <= threshold (scikit-learn)
    feature_dtype: type[np.floating[Any]]  # what the library casts the encoded row to before comparing
    sum_dtype: type[np.floating[Any]]
    start: float  # the base margin / baseline the leaf values are added to
    mean: bool  # divide the sum by the number of trees (a random forest)
    link: Callable[[np.ndarray], np.ndarray]


class CompiledTrees:
    """Every node of every tree in flat arrays; a leaf points to itself, so walking past it stays put."""

    def __init__(self, trees: Sequence[Tree], arithmetic: Arithmetic) -> None:
        if not trees:
            raise UnsupportedTrees("no trees")
        self.arithmetic = arithmetic
        sizes = [len(t.left) for t in trees]
        self.roots = np.cumsum([0, *sizes[:-1]])
        shift = np.repeat(self.roots, sizes)  # a tree's node i is node roots[tree] + i of the whole
        itself = np.arange(sum(sizes))
        leaf = np.concatenate([t.left for t in trees]) == LEAF
        self.left = np.where(leaf, itself, np.concatenate([t.left for t in trees]) + shift)
        self.right = np.where(leaf, itself, np.concatenate([t.right for t in trees]) + shift)
        self.feature = np.where(leaf, 0, np.concatenate([t.feature for t in trees])).astype(np.intp)
        thresholds = np.concatenate([t.threshold for t in trees])
        self.threshold = np.where(leaf, np.inf, thresholds).astype(thresholds.dtype)  # a leaf sends x left: itself
        self.default_left = np.where(leaf, True, np.concatenate([t.default_left for t in trees]).astype(bool))
        self.value = np.concatenate([t.value for t in trees]).astype(arithmetic.sum_dtype)
        self.steps = max(_depth(t.left, t.right) for t in trees)
        if self.steps > MAX_STEPS:
            raise UnsupportedTrees(f"a tree {self.steps} levels deep")

    def probabilities(self, encoded: np.ndarray) -> np.ndarray:
        a = self.arithmetic
        x = np.asarray(encoded).astype(a.feature_dtype).astype(self.threshold.dtype)  # as the library compares
        rows = np.arange(len(x))[:, None]
        node = np.broadcast_to(self.roots, (len(x), len(self.roots)))
        for _ in range(self.steps):
            value = x[rows, self.feature[node]]
            below = value < self.threshold[node] if a.strict else value <= self.threshold[node]
            go_left = np.where(np.isnan(value), self.default_left[node], below)
            node = np.where(go_left, self.left[node], self.right[node])
        # Tree by tree onto the start value, in the library's order and precision: cumsum keeps the order.
        start = np.full((len(x), 1), a.start, dtype=a.sum_dtype)
        total = np.cumsum(np.concatenate([start, self.value[node]], axis=1), axis=1, dtype=a.sum_dtype)[:, -1]
        if a.mean:
            total = total / a.sum_dtype(len(self.roots))
        return a.link(total)

    def matches(self, reference: Callable[[np.ndarray], np.ndarray], encoded: np.ndarray) -> bool:
        """Bit-identical to ``reference`` (the estimator's probabilities of the positive class) on these rows?"""
        expected = np.asarray(reference(encoded))
        return bool(np.array_equal(self.probabilities(encoded).astype(expected.dtype), expected))


def compile_estimator(estimator: Any) -> CompiledTrees:
    """The trees of a fitted XGBoost, random forest or histogram gradient boosting binary classifier."""
    kind = type(estimator).__name__
    if kind == "XGBClassifier":
        return _xgboost(estimator.get_booster())
    if kind == "RandomForestClassifier":
        return _random_forest(estimator)
    if kind == "HistGradientBoostingClassifier":
        return _hist_gradient_boosting(estimator)
    raise UnsupportedTrees(f"{kind} is not a tree ensemble these arrays model")


def _xgboost(booster: Any) -> CompiledTrees:
    model = json.loads(booster.save_raw("json"))
    learner = model["learner"]
    objective = learner.get("objective", {}).get("name")
    if objective != "binary:logistic":
        raise UnsupportedTrees(f"objective {objective!r}")
    params = learner["learner_model_param"]
    if int(params.get("num_target", 1)) != 1 or int(params.get("num_class", 0)) > 1:
        raise UnsupportedTrees("more than one output")
    gbtree = learner["gradient_booster"]
    if gbtree.get("name") != "gbtree":
        raise UnsupportedTrees(f"booster {gbtree.get('name')!r}")
    trees = []
    for t in gbtree["model"]["trees"]:
        if any(t["split_type"]):
            raise UnsupportedTrees("categorical splits")
        conditions = np.asarray(t["split_conditions"], dtype=np.float32)  # a leaf's value is stored here too
        trees.append(
            Tree(
                np.asarray(t["left_children"]),
                np.asarray(t["right_children"]),
                np.asarray(t["split_indices"]),
                conditions,
                np.asarray(t["default_left"]),
                conditions,
            )
        )
    base_score = np.float32(float(str(params["base_score"]).strip("[]")))
    # XGBoost turns its base score (a probability) into a margin in float: -log(1/p - 1).
    margin = float(np.float32(-np.log(np.float32(1) / base_score - np.float32(1))))
    expf = _c_expf()
    link = lambda m: np.float32(1) / (np.float32(1) + expf(-m))  # noqa: E731
    return CompiledTrees(trees, Arithmetic(True, np.float32, np.float32, margin, False, link))


def _random_forest(forest: Any) -> CompiledTrees:
    if forest.n_outputs_ != 1 or len(forest.classes_) != 2:
        raise UnsupportedTrees("not a binary single-output forest")
    trees = []
    for estimator in forest.estimators_:
        t = estimator.tree_
        fractions = t.value[:, 0, :]  # DecisionTreeClassifier.predict_proba normalises them once more
        total = fractions.sum(axis=1)
        total[total == 0.0] = 1.0
        missing_left = getattr(t, "missing_go_to_left", np.zeros(t.node_count, dtype=np.uint8))
        trees.append(
            Tree(t.children_left, t.children_right, t.feature, t.threshold, missing_left, fractions[:, 1] / total)
        )
    return CompiledTrees(trees, Arithmetic(False, np.float32, np.float64, 0.0, True, lambda p: p))


def _hist_gradient_boosting(model: Any) -> CompiledTrees:
    if model.n_trees_per_iteration_ != 1 or len(model.classes_) != 2:
        raise UnsupportedTrees("not a binary classifier")
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise UnsupportedTrees("categorical splits")
        leaf = nodes["is_leaf"].astype(bool)
        left = np.where(leaf, LEAF, nodes["left"].astype(np.int64))
        trees.append(
            Tree(
                left,
                nodes["right"].astype(np.int64),
                nodes["feature_idx"],
                nodes["num_threshold"],
                nodes["missing_go_to_left"],
                nodes["value"],
            )
        )
    baseline = float(np.asarray(model._baseline_prediction).reshape(-1)[0])
    return CompiledTrees(trees, Arithmetic(False, np.float64, np.float64, baseline, False, expit))


def _c_expf() -> Callable[[np.ndarray], np.ndarray]:
    """The C library's expf (what XGBoost calls); numpy's float32 exp differs from it in the last bit."""
    name = ctypes.util.find_library("m")
    if name is None:  # no C maths library to load: float64 exp, rounded once (rarely one ulp off)
        return lambda x: np.exp(x.astype(np.float64)).astype(np.float32)
    expf = ctypes.CDLL(name).expf
    expf.restype, expf.argtypes = ctypes.c_float, [ctypes.c_float]
    return lambda x: np.fromiter((expf(v) for v in x.tolist()), dtype=np.float32, count=len(x))


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Levels below the root (0: the root is a leaf), without recursion."""
    depth, level = 0, [0]
    while True:
        below = [child for node in level if left[node] != LEAF for child in (left[node], right[node])]
        if not below:
            return depth
        depth, level = depth + 1, below
