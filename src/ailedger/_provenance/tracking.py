"""Training runs and evaluations: ``with track("name") as run: ...`` (DESIGN §5).

A run collects what it used (datasets, base models, code, files), what it made
(models), its parameters, metrics and environment, and on exit records ONE SLSA
provenance v1 statement (:data:`types.TRAINING`) in the workspace log. An
evaluation is its own statement (:data:`types.EVALUATION`), linked to the run by
the run's ``invocationId``.

Failure semantics (docs/tracking.md):

- an exception raised inside the ``with`` block records the run as *failed*
  (error type and message) and is re-raised unchanged;
- a ledger error (any :class:`ailedger.Error`, ``OSError`` or ``sqlite3.Error``
  raised by ailedger while recording) never breaks the user's training unless
  ``strict=True``: it is reported with :func:`warnings.warn`
  (:class:`TrackingWarning`) and kept in ``run.errors``, and the run goes on.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import math
import os
import platform
import sqlite3
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ..errors import Error, InputError
from . import types as ty

if TYPE_CHECKING:
    from .._workspace import Workspace

__all__ = [
    "MAX_SAFE_INTEGER",
    "Run",
    "TrackingWarning",
    "byproduct",
    "evaluation_statement",
    "file_digest",
    "git_state",
    "jsonable",
    "packages",
    "record_evaluation",
    "resolve_artifact",
    "rfc3339",
    "track",
]

_LEDGER_ERRORS = (Error, OSError, sqlite3.Error)
_CHUNK = 1 << 20


_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _caller_level() -> int:
    """The warnings stack level of the first frame outside ailedger and contextlib,
    so a warning points at the user's line, not at ours."""
    f = sys._getframe(1)
    level = 1
    while f is not None and (
        f.f_code.co_filename.startswith(_HERE) or f.f_code.co_filename == contextlib.__file__
    ):
        f = f.f_back  # type: ignore[assignment]
        level += 1
    return level


class TrackingWarning(UserWarning):
    """A ledger error that tracking reported instead of raising (``strict=False``)."""


def _warn(msg: str, stacklevel: int) -> None:
    """Emit a :class:`TrackingWarning` that can never raise.

    Under ``warnings.simplefilter("error")`` (pytest's ``filterwarnings = error``)
    ``warnings.warn`` raises the warning, which would escape the user's ``with`` block
    and stop training: exactly what non-strict tracking promises not to do. Then the
    message goes to stderr instead.
    """
    try:
        warnings.warn(msg, TrackingWarning, stacklevel=stacklevel + 1)
    except Exception:  # any filter action or a broken showwarning hook
        with contextlib.suppress(Exception):
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()


# -- small helpers (shared with the CLI and predictions) -----------------------------


def rfc3339(ts: float | None = None) -> str:
    """UTC RFC 3339 timestamp with microseconds, e.g. ``2026-11-25T13:43:15.123456Z``."""
    t = time.time() if ts is None else ts
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_digest(path: str | os.PathLike[str]) -> str:
    """Lowercase hex SHA-256 of a file's bytes, streamed in 1 MiB chunks.

    :raises InputError: missing, a folder, or unreadable.
    """
    p = Path(path)
    h = hashlib.sha256()
    try:
        with open(p, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except FileNotFoundError as e:
        raise InputError(f"{p}: no such file") from e
    except IsADirectoryError as e:
        raise InputError(
            f"{p} is a folder; pass a file (a folder of data is used as a dataset)"
        ) from e
    except OSError as e:
        raise InputError(f"cannot read {p}: {e.strerror}") from e
    return h.hexdigest()


# RFC 8785 serialises numbers as IEEE 754 doubles: an integer beyond this loses digits,
# so the canonicaliser refuses it (and with it the whole statement).
MAX_SAFE_INTEGER = 2**53 - 1


def _text(s: str) -> str:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        # lone surrogates (e.g. undecodable bytes of a file name or argv): RFC 8785 needs
        # valid UTF-8, so keep them visible as \udcXX escapes instead of losing the run
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def jsonable(v: Any, _depth: int = 0) -> Any:
    """Turn ``v`` into something RFC 8785 can serialise.

    numpy scalars and arrays become Python numbers and lists, tuples and sets
    lists, non-finite floats the strings ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"`` (RFC 8785 has no such numbers), integers (Python or numpy)
    outside ±(2^53−1) their decimal strings (``2**63`` → ``"9223372036854775808"``;
    RFC 8785 numbers are doubles), strings that are not valid Unicode (lone
    surrogates) their ``\\uXXXX``-escaped text, mapping keys strings, and anything
    else its ``str()``.
    """
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, str):
        return _text(v)
    if isinstance(v, int):
        return int(v) if -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER else str(int(v))
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if _depth > 32:
        return str(v)
    if isinstance(v, Mapping):
        return {_text(str(k)): jsonable(x, _depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        items = sorted(v, key=repr) if isinstance(v, (set, frozenset)) else v
        return [jsonable(x, _depth + 1) for x in items]
    for attr in ("item", "tolist"):  # numpy scalars / arrays, torch tensors
        fn = getattr(v, attr, None)
        if callable(fn):
            try:
                return jsonable(fn(), _depth + 1)
            except (TypeError, ValueError, RuntimeError):
                continue
    if isinstance(v, os.PathLike):
        return jsonable(os.fspath(v), _depth + 1)
    return _text(str(v))


def packages() -> dict[str, str]:
    """Installed distributions on ``sys.path``: normalised name → version.

    Read from the ``*.dist-info`` / ``*.egg-info`` folder names, which takes
    well under a millisecond where ``importlib.metadata`` takes ~100 ms.
    """
    out: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            for suffix in (".dist-info", ".egg-info"):
                if n.endswith(suffix):
                    name, _, ver = n[: -len(suffix)].partition("-")
                    if name and ver:
                        out.setdefault(name.lower().replace("_", "-"), ver.partition("-")[0])
    return dict(sorted(out.items()))


def git_state(cwd: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """``{commit, dirty, remote?}`` of the git repository around ``cwd``, or None.

    None when git is not installed, ``cwd`` is not in a repository, or it has no
    commit yet.
    """

    def git(*args: str) -> str | None:
        try:
            p = subprocess.run(
                ["git", *args],
                cwd=cwd,
                capture_output=True,
                timeout=10,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return p.stdout.decode(errors="replace").strip() if p.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit or len(commit) not in (40, 64):
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    out: dict[str, Any] = {"commit": commit, "dirty": bool(status)}
    remote = git("config", "--get", "remote.origin.url")
    if remote and "@" not in remote.split("://", 1)[-1].split("/", 1)[0]:
        out["remote"] = remote  # never record credentials embedded in a remote URL
    return out


def _code_dependencies(script: str | None, cwd: str | None = None) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    g = git_state(cwd)
    if g is not None:
        alg = "gitCommit" if len(g["commit"]) == 40 else "sha256"
        dep: dict[str, Any] = {
            "name": "git",
            "digest": {alg: g["commit"]},
            "annotations": {"kind": ty.KIND_CODE, "dirty": g["dirty"]},
        }
        if "remote" in g:
            dep["uri"] = f"git+{g['remote']}@{g['commit']}"
        deps.append(dep)
    if script:
        p = Path(script)
        if p.is_file():
            with contextlib.suppress(InputError):  # an unreadable script is not recorded
                deps.append(
                    {
                        "name": _display_path(p),
                        "digest": ty.digest(file_digest(p)),
                        "annotations": {"kind": ty.KIND_CODE},
                    }
                )
    return deps


def _display_path(p: Path) -> str:
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.resolve().as_posix()


def _main_script() -> str | None:
    main = sys.modules.get("__main__")
    f = getattr(main, "__file__", None)
    if isinstance(f, str) and os.path.isfile(f):
        return f
    a = sys.argv[0] if sys.argv else ""
    return a if a and os.path.isfile(a) else None


_HEX64 = frozenset("0123456789abcdef")


def _is_hex64(s: str) -> bool:
    return len(s) == 64 and set(s) <= _HEX64


def resolve_artifact(
    ws: Workspace | None,
    x: str | os.PathLike[str],
    *,
    kind: str | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """A resolved dependency / descriptor ``{name, digest, annotations{kind,...}}`` for ``x``.

    Resolution order: ``kind="dataset"`` or a ``str`` naming a registered dataset
    (``find_dataset``) → the dataset (digest = its manifest's sha256); a path that is the
    registered source of a dataset (same absolute path) **and** whose data still has the
    registered fingerprint root → that dataset; a folder → registered as a dataset named
    after it (``add_dataset``; an identical latest version is reused); a file → its
    sha256 (kind ``model`` / ``code`` if asked, else ``file``); ``sha256:<hex>`` → that
    digest. A file that is a registered source whose content changed since is recorded
    as a file, with a warning through ``on_warning`` (default: a :class:`TrackingWarning`).

    :raises InputError: nothing matches, or a folder / unreadable file.
    """
    if isinstance(x, str) and ws is not None and kind in (None, ty.KIND_DATASET):
        from .datasets import find_dataset

        rec = find_dataset(ws, x)
        if rec is not None:
            return _dataset_dep(rec)
    changed: Any = None
    if ws is not None and kind in (None, ty.KIND_DATASET) and Path(x).exists():
        rec, changed = _registered_source(ws, x)
        if rec is not None:
            return _dataset_dep(rec)
    if ws is not None and kind in (None, ty.KIND_DATASET) and Path(x).is_dir():
        from .datasets import add_dataset

        # A folder is a dataset: register it (name = folder name). add_dataset returns
        # the latest version unchanged when the data is identical, so re-runs add nothing.
        return _dataset_dep(add_dataset(ws, x))
    if kind == ty.KIND_DATASET:
        raise InputError(
            f"no dataset named {os.fspath(x)!r} in this workspace:"
            " register it with `ailedger data add PATH --name NAME`"
        )
    s = os.fspath(x)
    if s.startswith("sha256:") and _is_hex64(s[7:]):
        ann = {"kind": kind or ty.KIND_FILE}
        return {"name": s, "digest": ty.digest(s[7:]), "annotations": ann}
    p = Path(s)
    if not p.exists():
        raise InputError(
            f"{s}: no such file, and no dataset of that name"
            " (register data with `ailedger data add PATH --name NAME`)"
        )
    dep = {
        "name": _display_path(p) if kind == ty.KIND_CODE else p.name,
        "digest": ty.digest(file_digest(p)),
        "annotations": {"kind": kind or ty.KIND_FILE},
    }
    if changed is not None:
        msg = (
            f"{s} is the registered source of dataset {changed.name!r} (version"
            f" {changed.version}) but its content changed since it was registered"
            f" (root {changed.root[:12]}…); recorded as a plain file. Register the new"
            f" data with `ailedger data add {s} --name {changed.name}` to use it as a dataset"
        )
        if on_warning is not None:
            on_warning(msg)
        else:
            _warn(f"ailedger: {msg}", _caller_level())
    return dep


def _registered_source(ws: Workspace, x: str | os.PathLike[str]) -> tuple[Any, Any]:
    """``(dataset, None)`` when ``x`` is the registered source path of a dataset version
    whose fingerprint root equals the data's current root (the latest such version);
    ``(None, latest version with that source)`` when it is a registered source whose
    content changed; ``(None, None)`` when no dataset was registered from ``x``.

    Files mode re-uses the datasets stat cache, so unchanged files are not read again.
    """
    from .datasets import _db, list_datasets
    from .fingerprint import StatCache, fingerprint

    want = {os.path.abspath(x), os.path.realpath(x)}
    recs = [
        r
        for r in list_datasets(ws)
        if r.path is not None and {r.path, os.path.realpath(r.path)} & want
    ]
    if not recs:
        return None, None
    recs.sort(key=lambda r: r.index, reverse=True)  # the latest registration first
    roots: dict[str, str | None] = {}
    db = _db(ws)
    try:
        for r in recs:
            if r.mode not in roots:
                try:
                    fp = fingerprint(
                        Path(x), records=r.mode == "records", cache=StatCache(db), exclude=[ws.path]
                    )
                    roots[r.mode] = fp.root
                except InputError:  # e.g. no longer readable as records: not that dataset
                    roots[r.mode] = None
            if roots[r.mode] == r.root:
                return r, None
    finally:
        db.close()
    return None, recs[0]


def byproduct(name: str, annotations: Mapping[str, Any]) -> dict[str, Any]:
    """A run byproduct as an in-toto ResourceDescriptor.

    A ResourceDescriptor MUST have one of ``uri``, ``digest`` or ``content``, so the
    annotations (which readers use) are also carried as ``content``: the base64 of their
    RFC 8785 JSON, with ``mediaType: application/json`` and that JSON's sha256 as
    ``digest``. ``annotations`` must already be :func:`jsonable`.
    """
    import base64

    from .._statements.intoto import canonical

    data = canonical(dict(annotations))
    return {
        "name": name,
        "digest": ty.digest(hashlib.sha256(data).hexdigest()),
        "content": base64.b64encode(data).decode("ascii"),
        "mediaType": "application/json",
        "annotations": dict(annotations),
    }


def _dataset_dep(rec: Any) -> dict[str, Any]:
    return {
        "name": ty.dataset_subject_name(rec.name),
        "digest": ty.digest(rec.manifest_digest),
        "annotations": {
            "kind": ty.KIND_DATASET,
            "index": rec.index,
            "root": rec.root,
            "leaves": rec.leaves,
            "mode": rec.mode,
        },
    }


# -- evaluations ----------------------------------------------------------------------


def evaluation_statement(
    model: Mapping[str, Any],
    dataset: Mapping[str, Any],
    metrics: Mapping[str, Any],
    *,
    run: str | None = None,
    evaluated_at: str | None = None,
) -> dict[str, Any]:
    """The EVALUATION statement: subject the model, predicate per ``types.py``."""
    from .._statements.intoto import statement

    m = {"name": str(model["name"]), "digest": dict(model["digest"])}
    d = {"name": str(dataset["name"]), "digest": dict(dataset["digest"])}
    pred = {
        "model": m,
        "dataset": d,
        "metrics": jsonable(dict(metrics)),
        "run": run,
        "evaluatedAt": evaluated_at or rfc3339(),
    }
    return statement([m], ty.EVALUATION, pred)


def record_evaluation(
    ws: Workspace,
    model: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    metrics: Mapping[str, Any],
    *,
    run: str | None = None,
) -> int:
    """Record that ``model`` (a file or ``sha256:<hex>``) scored ``metrics`` on ``dataset``.

    ``dataset`` is a registered dataset name, else a file. Returns the log index.
    """
    if not metrics:
        raise InputError("an evaluation needs at least one metric")
    m = resolve_artifact(None, model, kind=ty.KIND_MODEL)
    d = resolve_artifact(ws, dataset)
    return ws.record(evaluation_statement(m, d, metrics, run=run))


# -- runs -----------------------------------------------------------------------------


class Run:
    """One training run; made by :func:`track`. Use it as a context manager.

    After exit, ``index`` is the log index of the run's statement (None if it
    could not be recorded), ``statement`` the statement, ``status``
    ``"succeeded"`` or ``"failed"``, and ``errors`` the ledger errors reported.
    ``on_warning`` receives notices that are not errors (a registered dataset file whose
    content changed); by default they are :class:`TrackingWarning` warnings.
    """

    def __init__(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        workspace: Workspace | str | os.PathLike[str] | None = None,
        strict: bool = False,
        build_type: str = ty.TRAINING_BUILD_TYPE,
        command: list[str] | None = None,
        script: str | None = None,
        capture_packages: bool = True,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InputError("a run needs a non-empty name")
        self.name = name
        self.strict = strict
        self.invocation_id = str(uuid.uuid4())
        self.params: dict[str, Any] = dict(params or {})
        self.errors: list[Exception] = []
        self.index: int | None = None
        self.statement: dict[str, Any] | None = None
        self.status: str | None = None
        self.evaluations: list[int] = []
        self._workspace_arg = workspace
        self._ws: Workspace | None = None
        self._ws_path: Path | None = None
        self._owns_ws = False
        self._build_type = build_type
        self._command = command
        self._script = script
        self._capture_packages = capture_packages
        self._on_warning = on_warning
        self._deps: list[dict[str, Any]] = []
        self._outputs: list[dict[str, Any]] = []
        self._metrics: dict[str, Any] = {}
        self._steps: dict[str, int] = {}
        self._counts: dict[str, int] = {}
        self._started = 0.0
        self._env: dict[str, Any] = {}
        self._exit_code: int | None = None
        self._active = False

    # -- error policy -------------------------------------------------------------

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except _LEDGER_ERRORS as e:
            if self.strict:
                raise
            self._report(what, e)

    def _report(self, what: str, e: Exception) -> None:
        self.errors.append(e)
        msg = (
            f"ailedger: run {self.name!r}: {what} failed and was not recorded:"
            f" {type(e).__name__}: {e} (training continues; pass strict=True to make this"
            " an error)"
        )
        _warn(msg, _caller_level())

    def _notice(self, msg: str) -> None:
        """A warning that is not an error (the run records what it can)."""
        if self._on_warning is not None:
            self._on_warning(msg)
        else:
            _warn(f"ailedger: run {self.name!r}: {msg}", _caller_level())

    @property
    def workspace(self) -> Workspace | None:
        """The workspace this run records into (None if it could not be opened)."""
        return self._ws

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self) -> Run:
        self._started = time.time()
        self._active = True
        with self._guard("opening the workspace"):
            self._ws = self._open()
        with self._guard("capturing the environment"):
            self._env = {
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
                "platform": platform.platform(),
                "packages": packages() if self._capture_packages else {},
            }
            script = self._script if self._script is not None else _main_script()
            self._deps.extend(_code_dependencies(script or None))
        return self

    def _open(self) -> Workspace:
        from .._workspace import Workspace, resolve_home

        w = self._workspace_arg
        if isinstance(w, Workspace):
            self._ws_path = w.path
            return w
        path = resolve_home(w)
        ws = Workspace.open(path)
        self._ws_path, self._owns_ws = path, True
        return ws

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        error = None
        if exc is not None:
            error = {"type": exc_type.__name__ if exc_type else "Exception", "message": str(exc)}
        self.finish(error=error, _user_exc=exc is not None)
        return False  # never swallow the user's exception

    def finish(
        self,
        *,
        error: Mapping[str, Any] | None = None,
        exit_code: int | None = None,
        _user_exc: bool = False,
    ) -> int | None:
        """Record the run's statement (once); returns its log index or None."""
        if not self._active:
            return self.index
        self._active = False
        self._exit_code = exit_code
        self.status = "failed" if error is not None else "succeeded"
        try:
            if self._ws is None:
                return None
            with self._guard("recording the run"):
                st = self.build_statement(error=error, finished=time.time())
                self.statement = st
                self.index = self._ws.record(st)
        except _LEDGER_ERRORS as e:
            if not _user_exc:
                raise
            # strict, but the user's own exception is already on its way: never mask it
            self._report("recording the run", e)
        finally:
            if self._owns_ws and self._ws is not None:
                self._ws.close()
        return self.index

    def build_statement(
        self, *, error: Mapping[str, Any] | None = None, finished: float | None = None
    ) -> dict[str, Any]:
        """The SLSA provenance v1 statement of this run as it stands."""
        from .._statements.intoto import canonical, statement

        ext: dict[str, Any] = {"name": self.name, "params": jsonable(self.params)}
        if self._command is not None:
            ext["command"] = jsonable(list(self._command))
        outcome: dict[str, Any] = {"status": "failed" if error is not None else "succeeded"}
        if error is not None:
            outcome["error"] = jsonable(dict(error))
        if self._exit_code is not None:
            outcome["exitCode"] = self._exit_code
        metrics_ann: dict[str, Any] = {"metrics": jsonable(self._metrics)}
        if self._steps:
            metrics_ann["steps"] = jsonable(self._steps)
        metrics_ann["logged"] = jsonable(self._counts)
        builder = self._ws.name if self._ws is not None else "unknown"
        predicate = {
            "buildDefinition": {
                "buildType": self._build_type,
                "externalParameters": ext,
                "internalParameters": jsonable(self._env),
                "resolvedDependencies": jsonable(self._deps),
            },
            "runDetails": {
                "builder": {"id": f"https://ailedger.dev/builder/{builder}"},
                "metadata": {
                    "invocationId": self.invocation_id,
                    "startedOn": rfc3339(self._started),
                    "finishedOn": rfc3339(finished),
                },
                "byproducts": [byproduct("metrics", metrics_ann), byproduct("outcome", outcome)],
            },
        }
        subjects = jsonable(self._outputs)
        if not subjects:
            subjects = [
                {
                    "name": f"run:{self.invocation_id}",
                    "digest": ty.digest(hashlib.sha256(canonical(ext)).hexdigest()),
                }
            ]
        return statement(subjects, ty.TRAINING, predicate)

    # -- what the run used and made -----------------------------------------------

    def use(self, x: str | os.PathLike[str], *, kind: str | None = None) -> dict[str, Any] | None:
        """Declare an input: a registered dataset name, a folder (registered as a dataset
        named after it), a file (``kind="model"`` for a base model), or ``sha256:<hex>``.
        A file or folder that is the registered source of a dataset, with unchanged data,
        is that dataset (see :func:`resolve_artifact`); a changed registered file is a
        plain file plus a warning (``on_warning``, default a :class:`TrackingWarning`).

        Returns the resolved dependency, or None if it could not be resolved (reported).
        """
        with self._guard(f"use({os.fspath(x)!r})"):
            dep = resolve_artifact(self._ws, x, kind=kind, on_warning=self._notice)
            if dep not in self._deps:
                self._deps.append(dep)
            return dep
        return None

    def log_params(self, params: Mapping[str, Any] | None = None, **kw: Any) -> None:
        """Add hyperparameters (``externalParameters.params``)."""
        if params:
            self.params.update(params)
        self.params.update(kw)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record metric values; cheap (in memory). The last value of each metric, its
        last step and how many times it was logged go into the statement."""
        self._metrics.update(metrics)
        c = self._counts
        for k in metrics:
            c[k] = c.get(k, 0) + 1
        if step is not None:
            self._steps.update(dict.fromkeys(metrics, step))

    def log_model(
        self, path: str | os.PathLike[str], name: str | None = None
    ) -> dict[str, Any] | None:
        """Declare an output model file (a subject of the statement), hashed now."""
        with self._guard(f"log_model({os.fspath(path)!r})"):
            sha = file_digest(path)
            subj = {"name": name or Path(path).name, "digest": ty.digest(sha)}
            if subj not in self._outputs:
                self._outputs.append(subj)
            return subj
        return None

    def log_output(
        self, path: str | os.PathLike[str], name: str | None = None
    ) -> dict[str, Any] | None:
        """Alias of :meth:`log_model` for outputs that are not models."""
        return self.log_model(path, name)

    def log_evaluation(
        self,
        model: str | os.PathLike[str],
        dataset: str | os.PathLike[str],
        metrics: Mapping[str, Any],
    ) -> int | None:
        """Record an EVALUATION statement now, linked to this run; returns its index."""
        with self._guard("log_evaluation"):
            if self._ws is None:
                raise InputError("no workspace is open for this run")
            i = record_evaluation(self._ws, model, dataset, metrics, run=self.invocation_id)
            self.evaluations.append(i)
            return i
        return None

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return list(self._outputs)

    @property
    def dependencies(self) -> list[dict[str, Any]]:
        return list(self._deps)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self._metrics)

    def receipt(self) -> str:
        """A tlog-proof@v1 receipt for the run's statement (after exit)."""
        from .._workspace import Workspace

        if self.index is None:
            raise InputError(f"run {self.name!r} has no recorded statement (yet)")
        if self._ws is not None and not self._owns_ws:
            return self._ws.receipt(self.index)
        if self._ws_path is None:
            raise InputError("no workspace")
        with Workspace.open(self._ws_path) as ws:
            return ws.receipt(self.index)


def track(
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    strict: bool = False,
) -> Run:
    """Track a training run: ``with track("resnet", params={...}) as run: ...``.

    :param name: the run's name (``externalParameters.name``).
    :param params: hyperparameters (``externalParameters.params``).
    :param workspace: a :class:`Workspace` or its folder; default ``$AILEDGER_HOME`` or
        ``./.ailedger``. A workspace passed in stays open; one opened here is closed on exit.
    :param strict: raise ledger errors instead of reporting them as warnings.
    :returns: the :class:`Run` (enter it with ``with``).
    """
    return Run(name, params=params, workspace=workspace, strict=strict)
