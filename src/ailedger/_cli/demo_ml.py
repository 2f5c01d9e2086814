"""The second half of ``ailedger demo``: a real model's audit trail, end to end.

A scikit-learn classifier is trained on a dataset that ships inside scikit-learn (no
download). The dataset, the training run, the evaluation and the predictions are
recorded; the model's lineage is exported as a bundle and verified from a fresh
folder; then one byte of the model and one row of the training set are changed,
and verification names what broke.
"""

from __future__ import annotations

import csv
import pickle
import shutil
from pathlib import Path
from typing import Any

from .. import Workspace
from .._provenance.bundle import dumps, export_bundle, load_bundle
from .._provenance.datasets import add_dataset
from .._provenance.lineage import lineage
from .._provenance.predictions import PredictionLogger
from .._provenance.tracking import track
from .._provenance.verify import VerifyReport, verify_artifact
from ..errors import Error, InputError
from .demo import DemoFailedError, _caught, _ok, _step, console
from .lineage import draw


def _write_csv(path: Path, header: list[str], rows: Any, target: Any) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*header, "target"])
        for x, y in zip(rows, target, strict=True):
            w.writerow([f"{v:.6g}" for v in x] + [int(y)])


def _read_csv(path: Path) -> tuple[list[list[float]], list[int]]:
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        xs, ys = [], []
        for row in r:
            xs.append([float(v) for v in row[:-1]])
            ys.append(int(row[-1]))
    return xs, ys


def _report(report: VerifyReport, expect_ok: bool, what: str) -> None:
    if report.ok != expect_ok:
        raise DemoFailedError(f"{what}: verification gave {report.summary()}")
    if expect_ok:
        _ok(f"{what}: {report.summary()}")
    else:
        for c in report.failures[:2]:
            _caught(f"{what}: {c.check} — {c.detail}")


def run_ml_story(tmp: Path) -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError as e:
        raise InputError(
            "the model half of the demo needs scikit-learn: pip install 'ailedger[ml]'"
        ) from e
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _step("9. A real model: data → training → model → evaluation → predictions")
    ws = Workspace.init(tmp / "lab", name="oncology-ml")
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    data_dir = tmp / "data"
    data_dir.mkdir()
    header = [str(n) for n in data.feature_names]
    _write_csv(data_dir / "train.csv", header, x_train, y_train)
    _write_csv(data_dir / "test.csv", header, x_test, y_test)
    origin = "UCI Breast Cancer Wisconsin (Diagnostic), the copy bundled in scikit-learn"
    train = add_dataset(ws, data_dir / "train.csv", name="wdbc-train", license="CC-BY-4.0",
                        origin=origin, preparation=["stratified 75/25 split, seed 0"],
                        records=True)
    test = add_dataset(ws, data_dir / "test.csv", name="wdbc-test", license="CC-BY-4.0",
                       origin=origin, preparation=["stratified 75/25 split, seed 0"],
                       records=True)
    _ok(f"dataset wdbc-train: {train.leaves} records, root {train.root[:16]}… (log {train.index})")
    _ok(f"dataset wdbc-test:  {test.leaves} records, root {test.root[:16]}… (log {test.index})")

    model_path = tmp / "model.pkl"
    params = {"C": 1.0, "max_iter": 500, "solver": "lbfgs"}
    with track("wdbc-logistic-regression", params=params, workspace=ws) as run:
        run.use("wdbc-train")
        xs, ys = _read_csv(data_dir / "train.csv")  # train on exactly the registered bytes
        model = make_pipeline(StandardScaler(), LogisticRegression(**params))
        model.fit(xs, ys)
        run.log_metrics({"train_accuracy": float(accuracy_score(ys, model.predict(xs)))})
        model_path.write_bytes(pickle.dumps(model))
        run.log_model(model_path, name="model.pkl")
        tx, ty = _read_csv(data_dir / "test.csv")
        metrics = {
            "accuracy": round(float(accuracy_score(ty, model.predict(tx))), 4),
            "roc_auc": round(float(roc_auc_score(ty, model.predict_proba(tx)[:, 1])), 4),
        }
        run.log_evaluation(model_path, "wdbc-test", metrics)
    if run.errors:
        raise DemoFailedError(f"tracking reported errors: {run.errors}")
    _ok(f"training run recorded as SLSA provenance (log {run.index}); test metrics {metrics}")

    with PredictionLogger(ws, model_path, batch_size=50) as predictions:
        for row in tx:
            predictions.log(row, int(model.predict([row])[0]))
    _ok(f"{len(tx)} predictions logged in {len(predictions.batches)} batches, each provable alone")
    anchored = ws.anchor()
    _ok(f"everything anchored in one transaction (block {anchored.block_number})")

    g = lineage(ws, model_path)
    _ok(f"lineage of model.pkl: {len(g.nodes)} statements (`ailedger lineage model.pkl`):")
    console.print(draw(g))

    _step("10. An auditor, on another machine, verifies the model from a bundle")
    bundle = dumps(export_bundle(ws, model_path))
    auditor = tmp / "auditor"
    auditor.mkdir()
    (auditor / "bundle.json").write_bytes(bundle)
    shutil.copy(model_path, auditor / "model.pkl")
    console.print(f"  bundle: {len(bundle):,} bytes; the verifier key comes out of band")
    dep = ws.path / "deployment.json"
    report = verify_artifact(
        load_bundle((auditor / "bundle.json").read_bytes()), auditor / "model.pkl",
        verifier_key=ws.verifier_key, chain=str(ws.path / "chain.sqlite"), contracts=str(dep),
    )
    _report(report, True, "bundle + model.pkl, anchor checked on chain")

    _step("11. Change one byte of the model, then one row of the training set")
    tampered = bytearray((auditor / "model.pkl").read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    (auditor / "model.pkl").write_bytes(bytes(tampered))
    report = verify_artifact(
        load_bundle((auditor / "bundle.json").read_bytes()), auditor / "model.pkl",
        verifier_key=ws.verifier_key, offline=True,
    )
    _report(report, False, "model changed by one byte")
    lines = (data_dir / "train.csv").read_text().splitlines(keepends=True)
    flip = {",1\n": ",0\n", ",0\n": ",1\n"}
    lines[7] = lines[7][:-3] + flip[lines[7][-3:]]  # one label flipped
    (data_dir / "train.csv").write_text("".join(lines))
    try:
        report = verify_artifact(ws, model_path, offline=True)
    except Error as e:
        _caught(f"training set with one row changed: {e}")
    else:
        _report(report, False, "training set with one row changed")
    ws.close()
