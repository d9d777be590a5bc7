"""Combining models' fold logits: OOF-fitted weights, weighted blends, a stacked combiner, and their scores.

Two combiners, both fitted on out-of-fold logits and Training labels only (MemberLogits carries no test
labels), so test labels cannot leak into them. Used by the ensemble command and the report.
  average  a weighted mean of the models' logits or probabilities (fit_weights, combine)
  stack    a multinomial logistic regression on the models' OOF logits side by side, (n, 7 x models)
           (stack): it can learn that one model is to be trusted on one class only. Its own OOF
           predictions come from cross_val_predict over the OOF rows (STACK_FOLDS stratified folds), so its
           OOF score is as honest as the average's; its test predictions from a fit on every OOF row.

    from competition import artifacts, blending
    models = [artifacts.load_member(n) for n in ("bn_cnn", "resnet_cbam48")]
    weights = blending.fit_weights(models); oof, test = blending.combine(models, weights)
    oof, test = blending.stack(models)  # log-probabilities, on common_oof's rows and the test rows

Refits (a member trained on every Training row, competition.artifacts) have no OOF predictions, so no weight
can be fitted for them. The rule (`with_refit`): a member's test logits become (1 - share) x its folds' mean +
share x its refits' mean, where its folds' mean weighs as one model and each refit as one: n refits (its own and
its refit-only seeds', artifacts.refits_of) take share n/(n + 1) (`refit_share`: ½ for one refit), unless the user
states another share; the member's OOF logits, and so its fitted weight, stay its folds'. The share is a stated
prior, not a fitted number: fitting it would need labels the refits have not seen, and only test labels are left.
(On Training rows none of them saw, fold 0 + two refits of air_fer scored 68.43% by this rule against 67.94% with
the folds' mean at ½: docs/accuracy-per-minute.md.)
"""
import dataclasses

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from competition.artifacts import MemberLogits
from competition.data import FerData
from models.fer import NUM_CLASSES
from competition.errors import SettingsError, UserError

AVERAGES = ("logits", "probs")
COMBINERS = ("average", "stack", "auto")  # auto: whichever of the two has the higher OOF accuracy
STACK_FOLDS = 5  # cross_val_predict folds over the OOF rows for the stacker's own OOF predictions
STACK_SEED = 0  # their shuffle: fixed, so a rerun gives the same OOF score
STACK_C = 1.0  # inverse L2 strength of the logistic regression (sklearn's default; not tuned)
FLOOR = np.log(1e-12)  # log-probability given to a class the stacker never saw in its training labels




class FitError(UserError):
    """The weight fit did not converge; the message says what to use instead."""


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float | None:
    """Accuracy over rows with a known label (>= 0); None when no label is known."""
    known = labels >= 0
    return float((logits[known].argmax(1) == labels[known]).mean()) if known.any() else None


def common_oof(models: list[MemberLogits]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(rows, labels, per-model OOF logits) over the Training rows that every model predicted."""
    rows = models[0].oof_rows
    for m in models[1:]:
        rows = np.intersect1d(rows, m.oof_rows)
    if len(rows) == 0:
        raise SettingsError(f"models {[m.member for m in models]} share no OOF rows (their folds do not overlap).")
    picks = [np.searchsorted(m.oof_rows, rows) for m in models]
    return rows, models[0].oof_labels[picks[0]], [m.oof_logits[p] for m, p in zip(models, picks)]


def refit_share(refits: int) -> float:
    """The refits' share of their member's test logits: the folds' mean weighs as one model, each refit as one."""
    return refits / (refits + 1)


def with_refit(member: MemberLogits, refits: list[np.ndarray], share: float | None = None) -> MemberLogits:
    """The member with its refits' mean test logits (`refits`: artifacts.refit_logits; empty: no finished refit)
    mixed in at `share` (None: `refit_share`'s rule); unchanged without a refit or at share 0."""
    if share is not None and not 0 <= share <= 1:
        raise SettingsError(f"refit share {share}: expected a number in [0, 1]")
    if not refits or share == 0:
        return member
    test_logits, share = mix_refits(member.test_logits, refits, share)
    return dataclasses.replace(member, test_logits=test_logits, refit_share=share)


def mix_refits(folds_mean: np.ndarray, refits: list[np.ndarray], share: float | None = None):
    """(the folds' mean logits with the refits' mean mixed in at `share` (None: `refit_share`'s rule), the share)."""
    share = refit_share(len(refits)) if share is None else share
    return (1 - share) * folds_mean + share * np.mean(refits, axis=0), share


def blend(logits: list[np.ndarray], weights: np.ndarray, average: str) -> np.ndarray:
    """Weighted mean of logits, or log of the weighted mean of softmax probabilities."""
    if average not in AVERAGES:
        raise SettingsError(f"average must be one of {AVERAGES}, got {average!r}")
    stack = np.stack(logits).astype(np.float64)
    if average == "logits":
        return np.tensordot(weights, stack, axes=1)
    return np.log(np.tensordot(weights, softmax(stack, axis=-1), axes=1) + 1e-12)


def _fit_on_oof(oof_logits: list[np.ndarray], oof_labels: np.ndarray, average: str) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise OOF log loss (SLSQP from equal weights)."""
    n = len(oof_logits)
    if n == 1:
        return np.ones(1)
    pick = (np.arange(len(oof_labels)), oof_labels)
    loss = lambda w: -log_softmax(blend(oof_logits, w, average), axis=-1)[pick].mean()
    result = minimize(loss, np.full(n, 1 / n), method="SLSQP", bounds=[(0, 1)] * n,
                      constraints={"type": "eq", "fun": lambda w: w.sum() - 1})
    if not result.success or not np.isfinite(result.x).all():
        raise FitError(f"fitting the ensemble weights on OOF log loss failed ({result.message}). "
                       f"Use --weights equal, or check the models' OOF logits.")
    weights = np.clip(result.x, 0, None)
    return weights / weights.sum()


def fit_weights(models: list[MemberLogits], average: str = "logits") -> np.ndarray:
    """Weights fitted on OOF predictions only (MemberLogits carries no test labels), on rows common to all."""
    _, labels, logits = common_oof(models)
    return _fit_on_oof(logits, labels, average)


def combine(models: list[MemberLogits], weights: np.ndarray, average: str = "logits"):
    """(OOF logits over common_oof's rows, test logits): the weighted ensemble; log-probs when average='probs'."""
    _, _, oof = common_oof(models)
    return blend(oof, weights, average), blend([m.test_logits for m in models], weights, average)


def stacker():
    """Standardised logits -> multinomial logistic regression (lbfgs is deterministic: no seed needed)."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=STACK_C, max_iter=2000))


def _full_log_proba(log_proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(n, len(classes)) -> (n, NUM_CLASSES) log-probabilities, FLOOR for the classes never seen."""
    out = np.full((len(log_proba), NUM_CLASSES), FLOOR)
    out[:, classes] = np.maximum(log_proba, FLOOR)
    return out


def stack(models: list[MemberLogits]) -> tuple[np.ndarray, np.ndarray]:
    """(OOF log-probs over common_oof's rows, test log-probs) of a logistic regression on the models' logits.

    OOF: cross_val_predict, each row predicted by a stacker that did not see it. Test: one stacker fitted on
    every OOF row. Only OOF logits and Training labels are read; test logits are only predicted from."""
    _, labels, oof = common_oof(models)
    features = np.concatenate(oof, axis=1).astype(np.float64)
    test_features = np.concatenate([m.test_logits for m in models], axis=1).astype(np.float64)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.max() < 2:  # StratifiedKFold needs a class with a row in each of 2 folds
        raise SettingsError(f"the stacker needs two classes and 2 OOF rows of one of them; got {len(labels)} "
                            f"rows of {len(classes)} class(es). Use --combiner average.")
    cv = StratifiedKFold(n_splits=min(STACK_FOLDS, int(counts.max())), shuffle=True, random_state=STACK_SEED)
    oof_log_proba = cross_val_predict(stacker(), features, labels, cv=cv, method="predict_log_proba")
    final = stacker().fit(features, labels)
    return (_full_log_proba(oof_log_proba, classes),
            _full_log_proba(final.predict_log_proba(test_features), final.classes_))


def score(oof_logits, oof_labels, test_logits, data: FerData) -> dict[str, float | None]:
    """OOF accuracy, and PublicTest / PrivateTest accuracy where labels are known (else None)."""
    return {"oof": accuracy(oof_logits, oof_labels),
            "public": accuracy(test_logits[data.public], data.test_labels[data.public]),
            "private": accuracy(test_logits[data.private], data.test_labels[data.private])}
