"""Adapters between models and parameter mappings.

* scikit-learn linear models (anything with ``coef_`` and ``intercept_``: ``SGDClassifier``,
  ``LogisticRegression``, ``LinearRegression``, ``Ridge``, ``SGDRegressor``…):
  parameters ``{"coef": coef_, "intercept": intercept_}`` (float64, a scalar intercept as a
  0-d array).
* PyTorch ``state_dict``s: every floating tensor, ``.detach().cpu().numpy()``; torch is
  imported only when tensors have to be created (:func:`params_to_state_dict`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .params import Params, normalise

__all__ = ["get_params", "params_to_state_dict", "set_params", "state_dict_to_params"]


def get_params(model: Any) -> Params:
    """The parameters of a fitted scikit-learn linear model.

    @param model: an estimator with ``coef_`` and ``intercept_``.
    @return: ``{"coef": ..., "intercept": ...}`` as float64 copies.
    @raise InputError: the model is not fitted or is not a linear model.
    """
    coef = getattr(model, "coef_", None)
    if coef is None or not hasattr(model, "intercept_"):
        raise InputError(
            f"{type(model).__name__} has no coef_/intercept_: fit it first or call set_params"
        )
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    return normalise(
        {"coef": np.array(coef, dtype=np.float64), "intercept": intercept.copy()}
    )


def _is_classifier(model: Any) -> bool:
    try:
        from sklearn.base import is_classifier
    except ImportError:  # not a scikit-learn model: judge by its attributes
        return hasattr(model, "classes_")
    return bool(is_classifier(model))


def set_params(
    model: Any, params: Mapping[str, Any], *, classes: Sequence[Any] | None = None
) -> Any:
    """Load parameters into a scikit-learn linear model, fitted or not.

    Sets ``coef_``, ``intercept_`` (a float if the model's is scalar, e.g.
    ``LinearRegression`` on a 1-D target), ``n_features_in_`` and, for classifiers,
    ``classes_`` (from ``classes``, else the model's own; an unfitted classifier needs it).
    Enough for ``predict``/``score`` and for ``partial_fit``/``warm_start`` to continue
    from these values.

    @param model: the estimator; modified in place and returned.
    @param params: ``{"coef": ..., "intercept": ...}``.
    @param classes: class labels, in the order of ``coef_``'s rows.
    @raise InputError: missing tensors, shapes that do not fit, or a classifier without
        classes.
    """
    p = normalise(params)
    if set(p) != {"coef", "intercept"}:
        raise InputError(f"a linear model takes tensors coef and intercept, got {list(p)}")
    coef = p["coef"].astype(np.float64)
    intercept = p["intercept"].astype(np.float64)
    if coef.ndim not in (1, 2):
        raise InputError(f"coef must be 1-D or 2-D, got shape {list(coef.shape)}")
    rows = 1 if coef.ndim == 1 else coef.shape[0]
    if intercept.ndim > 1 or (intercept.ndim == 1 and intercept.shape[0] != rows):
        raise InputError(
            f"intercept shape {list(intercept.shape)} does not fit coef shape {list(coef.shape)}"
        )
    is_classifier = _is_classifier(model)
    if classes is not None:
        cls = np.asarray(classes)
        if cls.ndim != 1 or len(np.unique(cls)) != len(cls) or len(cls) < 2:
            raise InputError("classes must be a 1-D sequence of at least two distinct labels")
        want = 1 if len(cls) == 2 else len(cls)
        if rows != want:
            raise InputError(
                f"{len(cls)} classes need coef with {want} row(s), got {rows}"
            )
        model.classes_ = cls
    elif is_classifier and not hasattr(model, "classes_"):
        raise InputError(f"{type(model).__name__} is not fitted: pass classes=[...]")
    model.coef_ = coef
    model.intercept_ = float(intercept) if intercept.ndim == 0 else intercept
    model.n_features_in_ = coef.shape[-1]
    return model


def state_dict_to_params(state_dict: Mapping[str, Any], *, floats_only: bool = False) -> Params:
    """A PyTorch ``state_dict`` (or any mapping of tensor-likes) as parameters.

    Each value goes through ``.detach().cpu().numpy()`` when it has those methods, else
    ``numpy.asarray``; torch itself is not imported.

    @param state_dict: ordered name -> tensor.
    @param floats_only: skip integer and boolean entries (e.g. BatchNorm's
        ``num_batches_tracked``) instead of refusing them. Floating tensors of another
        precision are refused either way: skipping them would silently leave weights out.
    @raise InputError: a float tensor that is not float32/float64 (bfloat16/float16:
        convert first), a complex tensor, or a tensor that cannot be read as an array.
    """
    out: dict[str, Any] = {}
    for name, value in state_dict.items():
        v = value
        if hasattr(v, "detach"):
            v = v.detach()
        if hasattr(v, "cpu"):
            v = v.cpu()
        try:
            arr = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        except (TypeError, RuntimeError, ValueError) as e:
            # torch refuses .numpy() for dtypes numpy lacks (bfloat16, float8, ...)
            raise InputError(
                f"state_dict entry {name!r} cannot be read as an array "
                f"({getattr(v, 'dtype', type(v).__name__)}): convert it to float32 first ({e})"
            ) from None
        if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
            if floats_only and arr.dtype.kind in "biu":
                continue
            raise InputError(
                f"state_dict entry {name!r} has dtype {arr.dtype}; only float32/float64 are "
                "exchanged (convert other floats first; floats_only=True skips integer "
                "buffers)"
            )
        out[name] = np.array(arr, copy=True)
    return normalise(out)


def params_to_state_dict(
    params: Mapping[str, Any], like: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Parameters as a PyTorch ``state_dict`` (imports torch).

    @param params: ordered name -> array.
    @param like: a reference ``state_dict``: names and shapes must match and each tensor
        takes its dtype and device (use with ``module.load_state_dict(..., strict=False)``
        when ``like`` has non-float buffers that were skipped).
    @return: name -> ``torch.Tensor``.
    @raise InputError: torch is not installed, or names/shapes do not match ``like`` (a
        floating tensor of ``like`` missing from ``params`` included).
    """
    try:
        torch = importlib.import_module("torch")
    except ImportError as e:
        raise InputError("PyTorch is not installed: pip install torch") from e
    p = normalise(params)
    if like is not None:
        # Every floating tensor of the model MUST come back: with strict=False a missing
        # weight would otherwise keep its old value without a word.
        lost = [k for k, v in like.items() if k not in p and _is_float_tensor(v)]
        if lost:
            raise InputError(f"the parameters lack the model's tensors {lost}")
    out: dict[str, Any] = {}
    for name, arr in p.items():
        t = torch.from_numpy(arr.copy())
        if like is not None:
            if name not in like:
                raise InputError(f"tensor {name!r} is not in the reference state_dict")
            ref = like[name]
            if tuple(ref.shape) != arr.shape:
                raise InputError(
                    f"tensor {name!r} has shape {list(arr.shape)}, the model's is "
                    f"{list(ref.shape)}"
                )
            t = t.to(dtype=ref.dtype, device=ref.device)
        out[name] = t
    return out


def _is_float_tensor(v: Any) -> bool:
    f = getattr(v, "is_floating_point", None)
    if callable(f):
        return bool(f())
    return np.asarray(v).dtype.kind == "f"
