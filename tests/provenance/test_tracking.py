"""Training runs and evaluations: the statements they record, and failure semantics."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import ailedger
from ailedger._provenance import types as ty
from ailedger._provenance.tracking import Run, TrackingWarning, jsonable, packages, track

from ..conftest import PYTHON, cli_env

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    w = ailedger.Workspace.init(tmp_path_factory.mktemp("trk") / "ws", name="t")
    yield w
    w.close()


def statement_at(ws: ailedger.Workspace, index: int) -> dict[str, Any]:
    st, signers = ailedger.verify_envelope(ws.log.get(index), ws.trusted_keys())
    assert signers == (ws.keyid,)
    return st


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def byproduct(st: dict[str, Any], name: str) -> dict[str, Any]:
    for b in st["predicate"]["runDetails"]["byproducts"]:
        if b["name"] == name:
            ann: dict[str, Any] = b["annotations"]
            return ann
    raise AssertionError(name)


def test_successful_run_statement(
    shared_ws: ailedger.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ailedger._provenance.datasets import add_dataset

    script = tmp_path / "train.py"
    script.write_bytes(b"print('training')\n")
    monkeypatch.setattr(sys.modules["__main__"], "__file__", str(script), raising=False)

    data = tmp_path / "iris"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,2\n")
    rec = add_dataset(shared_ws, data, name="iris-t")
    base = tmp_path / "base.bin"
    base.write_bytes(b"base weights")
    model = tmp_path / "model.bin"
    with track("fit", params={"lr": 0.1, "epochs": 3}, workspace=shared_ws) as run:
        dep = run.use("iris-t")
        assert dep is not None and dep["annotations"]["kind"] == "dataset"
        run.use(base, kind="model")
        run.log_params(batch=32)
        for epoch in range(3):
            run.log_metrics({"loss": 1.0 / (epoch + 1), "acc": 0.5 + epoch / 10}, step=epoch)
        model.write_bytes(b"trained weights")
        run.log_model(model)
    assert run.status == "succeeded" and run.errors == [] and run.index is not None
    st = statement_at(shared_ws, run.index)
    assert st == run.statement
    assert st["predicateType"] == ty.TRAINING == "https://slsa.dev/provenance/v1"
    assert st["subject"] == [{"name": "model.bin", "digest": {"sha256": sha(b"trained weights")}}]
    bd = st["predicate"]["buildDefinition"]
    assert bd["buildType"] == ty.TRAINING_BUILD_TYPE
    assert bd["externalParameters"] == {
        "name": "fit",
        "params": {"lr": 0.1, "epochs": 3, "batch": 32},
    }
    ip = bd["internalParameters"]
    assert ip["python"] == ".".join(map(str, sys.version_info[:3]))
    assert ip["packages"]["pytest"] == pytest.__version__ and "platform" in ip
    deps = {d["name"]: d for d in bd["resolvedDependencies"]}
    ds = deps["dataset:iris-t"]
    assert ds["digest"] == {"sha256": rec.manifest_digest}
    assert ds["annotations"]["kind"] == "dataset" and ds["annotations"]["root"] == rec.root
    assert deps["base.bin"] == {
        "name": "base.bin",
        "digest": {"sha256": sha(b"base weights")},
        "annotations": {"kind": "model"},
    }
    # code: this repository's commit, and the running script's digest
    git = deps["git"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert git["digest"] == {"gitCommit": head.strip()}
    assert git["annotations"]["kind"] == "code" and isinstance(git["annotations"]["dirty"], bool)
    code = [d for d in deps.values() if d["annotations"]["kind"] == "code" and d["name"] != "git"]
    assert len(code) == 1 and code[0]["name"].endswith("train.py")
    assert code[0]["digest"] == {"sha256": sha(b"print('training')\n")}
    rd = st["predicate"]["runDetails"]
    assert rd["builder"] == {"id": "https://ailedger.dev/builder/t"}
    md = rd["metadata"]
    assert md["invocationId"] == run.invocation_id
    assert RFC3339.fullmatch(md["startedOn"]) and RFC3339.fullmatch(md["finishedOn"])
    assert md["startedOn"] <= md["finishedOn"]
    m = byproduct(st, "metrics")
    assert m["metrics"] == {"loss": 1.0 / 3, "acc": 0.5 + 2 / 10}
    assert m["steps"] == {"loss": 2, "acc": 2} and m["logged"] == {"loss": 3, "acc": 3}
    assert byproduct(st, "outcome") == {"status": "succeeded"}
    # the receipt verifies
    res = ailedger.verify_receipt(
        run.receipt(), shared_ws.log.get(run.index), shared_ws.verifier_key
    )
    assert res.index == run.index


def test_folder_input_is_registered_once(shared_ws: ailedger.Workspace, tmp_path: Path) -> None:
    from ailedger._provenance.datasets import find_dataset

    data = tmp_path / "corpus"
    data.mkdir()
    (data / "x.txt").write_text("hello")
    with track("a", workspace=shared_ws) as r1:
        d1 = r1.use(data)
    size = shared_ws.log.size
    with track("b", workspace=shared_ws) as r2:
        d2 = r2.use(str(data))
    assert d1 == d2 and d1 is not None and d1["name"] == "dataset:corpus"
    rec = find_dataset(shared_ws, "corpus")
    assert rec is not None and d1["digest"] == {"sha256": rec.manifest_digest}
    assert shared_ws.log.size == size + 1  # only the second run's statement: no new dataset
    assert r2.errors == []


def test_failed_run_recorded_and_exception_reraised(shared_ws: ailedger.Workspace) -> None:
    class DivergedError(RuntimeError):
        pass

    err = DivergedError("loss is NaN")
    with (
        pytest.raises(DivergedError) as info,
        track("boom", params={"lr": 10}, workspace=shared_ws) as run,
    ):
        run.log_metrics({"loss": float("nan")})
        raise err
    assert info.value is err  # the very same exception object
    assert run.status == "failed" and run.index is not None
    st = statement_at(shared_ws, run.index)
    assert byproduct(st, "outcome") == {
        "status": "failed",
        "error": {"type": "DivergedError", "message": "loss is NaN"},
    }
    assert byproduct(st, "metrics")["metrics"] == {"loss": "NaN"}
    # no outputs: the subject names the run, digest = sha256 of the external parameters
    ext = st["predicate"]["buildDefinition"]["externalParameters"]
    assert st["subject"] == [
        {"name": f"run:{run.invocation_id}", "digest": {"sha256": sha(ailedger_canonical(ext))}}
    ]


def ailedger_canonical(obj: Any) -> bytes:
    import rfc8785

    return rfc8785.dumps(obj)


def test_keyboard_interrupt_is_recorded_as_failed(shared_ws: ailedger.Workspace) -> None:
    with pytest.raises(KeyboardInterrupt), track("ctrl-c", workspace=shared_ws) as run:
        raise KeyboardInterrupt
    assert run.index is not None
    assert byproduct(statement_at(shared_ws, run.index), "outcome")["error"]["type"] == (
        "KeyboardInterrupt"
    )


def test_ledger_error_does_not_break_training(
    shared_ws: ailedger.Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(statement: Any) -> int:
        raise ailedger.LogError("disk full")

    monkeypatch.setattr(shared_ws, "record", broken)
    trained = []
    with (
        pytest.warns(TrackingWarning) as caught,
        track("resilient", workspace=shared_ws) as run,
    ):
        assert run.use(tmp_path / "missing.bin") is None  # reported, not raised
        assert run.log_model(tmp_path / "missing-model.bin") is None
        assert run.log_evaluation("sha256:" + "0" * 64, "sha256:" + "1" * 64, {"acc": 1}) is None
        for step in range(5):
            run.log_metrics({"loss": 1 / (step + 1)})
            trained.append(step)
    assert trained == [0, 1, 2, 3, 4]
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 4 and "missing.bin: no such file" in msgs[0] and "disk full" in msgs[3]
    assert all(m.startswith("ailedger: run 'resilient': ") for m in msgs)
    assert {w.filename for w in caught} == {__file__}  # points at the user's line
    assert run.index is None and run.status == "succeeded"
    assert [type(e) for e in run.errors] == [
        ailedger.InputError,
        ailedger.InputError,
        ailedger.LogError,
        ailedger.LogError,
    ]
    with pytest.raises(ailedger.InputError, match="no recorded statement"):
        run.receipt()


def test_ledger_error_with_user_exception_keeps_user_exception(
    shared_ws: ailedger.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        shared_ws, "record", lambda st: (_ for _ in ()).throw(OSError(28, "ENOSPC"))
    )
    for strict in (False, True):
        with (
            pytest.warns(TrackingWarning),
            pytest.raises(ZeroDivisionError),
            track("x", workspace=shared_ws, strict=strict),
        ):
            1 / 0  # noqa: B018


def test_strict_raises_ledger_errors(
    shared_ws: ailedger.Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with (
        pytest.raises(ailedger.InputError, match="no such file"),
        track("s", workspace=shared_ws, strict=True) as run,
    ):
        run.use(tmp_path / "missing.bin")
    monkeypatch.setattr(
        shared_ws, "record", lambda st: (_ for _ in ()).throw(ailedger.LogError("disk full"))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with (
            pytest.raises(ailedger.LogError, match="disk full"),
            track("s2", workspace=shared_ws, strict=True),
        ):
            pass


def test_missing_workspace_does_not_break_training(tmp_path: Path) -> None:
    with (
        pytest.warns(TrackingWarning) as caught,
        track("nows", workspace=tmp_path / "nowhere") as run,
    ):
        run.log_metrics({"a": 1})
        run.use(tmp_path)  # no workspace: nothing to register into (reported)
    assert run.index is None and len(run.errors) == 2
    assert "no ailedger workspace" in str(caught[0].message)
    with (
        pytest.raises(ailedger.WorkspaceError),
        track("nows", workspace=tmp_path / "nowhere", strict=True),
    ):
        pass


def test_workspace_by_path_and_env(
    shared_ws: ailedger.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    with track("by-path", workspace=shared_ws.path) as r1:
        pass
    monkeypatch.setenv("AILEDGER_HOME", str(shared_ws.path))
    with track("by-env") as r2:
        pass
    assert r1.index is not None and r2.index == r1.index + 1
    assert r2.receipt().startswith("c2sp.org/tlog-proof@v1\n")
    assert (
        statement_at(shared_ws, r2.index)["predicate"]["buildDefinition"]["externalParameters"][
            "name"
        ]
        == "by-env"
    )


def test_log_evaluation_links_run(shared_ws: ailedger.Workspace, tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"m")
    test = tmp_path / "test.csv"
    test.write_bytes(b"a,b\n1,2\n")
    with track("fit+eval", workspace=shared_ws) as run:
        run.log_model(model)
        ei = run.log_evaluation(model, test, {"accuracy": 0.93, "f1": 0.9})
    assert ei is not None and run.evaluations == [ei] and run.index == ei + 1
    st = statement_at(shared_ws, ei)
    assert st["predicateType"] == ty.EVALUATION
    assert st["subject"] == [{"name": "m.bin", "digest": {"sha256": sha(b"m")}}]
    p = st["predicate"]
    assert p["model"] == st["subject"][0]
    assert p["dataset"] == {"name": "test.csv", "digest": {"sha256": sha(b"a,b\n1,2\n")}}
    assert p["metrics"] == {"accuracy": 0.93, "f1": 0.9}
    assert p["run"] == run.invocation_id and RFC3339.fullmatch(p["evaluatedAt"])


def test_jsonable_and_packages() -> None:
    np = pytest.importorskip("numpy")
    v = jsonable({"a": np.float32(0.5), "b": np.arange(3), 1: (float("inf"), {2})})
    assert v == {"a": 0.5, "b": [0, 1, 2], "1": ["Infinity", [2]]}
    assert jsonable(object()).startswith("<object")
    pk = packages()
    assert pk["numpy"] == np.__version__ and "ailedger" in pk


def test_run_requires_name() -> None:
    with pytest.raises(ailedger.InputError):
        Run("")


# -- CLI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(shared_ws: ailedger.Workspace) -> Path:
    return shared_ws.path


def cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PYTHON, "-m", "ailedger", *args],
        env=cli_env(home),
        capture_output=True,
        timeout=120,
        cwd=cwd,
    )


def one_line_error(p: subprocess.CompletedProcess[bytes]) -> str:
    err = p.stderr.decode()
    assert p.returncode != 0
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1].startswith("ailedger: error: "), err
    assert sum(line.startswith("ailedger: ") for line in lines) == 1, err
    return lines[-1]


def entry_statement(home: Path, index: int) -> dict[str, Any]:
    p = cli(home, "log", "get", str(index))
    env = json.loads(p.stdout)
    st: dict[str, Any] = json.loads(base64.b64decode(env["payload"]))
    return st


def recorded_index(p: subprocess.CompletedProcess[bytes]) -> int:
    m = re.search(r"entry (\d+)", p.stderr.decode())
    assert m, p.stderr.decode()
    return int(m.group(1))


def test_cli_run_success(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"input data")
    script = (
        "import sys; data = open('in.txt','rb').read(); open('out.bin','wb').write(data[::-1]);"
        " print('trained'); print('warn', file=sys.stderr)"
    )
    p = cli(
        home,
        "run",
        "--name",
        "rev",
        "--input",
        "in.txt",
        "--output",
        "out.bin",
        "--param",
        "lr=0.5",
        "--param",
        "opt=adam",
        "--",
        PYTHON,
        "-c",
        script,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"trained\n"  # the command's stdout, untouched
    assert p.stderr.decode().startswith("warn\nailedger: recorded succeeded run 'rev' as entry")
    st = entry_statement(home, recorded_index(p))
    assert st["subject"] == [{"name": "out.bin", "digest": {"sha256": sha(b"atad tupni")}}]
    bd = st["predicate"]["buildDefinition"]
    assert bd["buildType"] == ty.COMMAND_BUILD_TYPE
    assert bd["externalParameters"] == {
        "name": "rev",
        "params": {"lr": 0.5, "opt": "adam"},
        "command": [PYTHON, "-c", script],
    }
    assert bd["resolvedDependencies"] == [
        {
            "name": "in.txt",
            "digest": {"sha256": sha(b"input data")},
            "annotations": {"kind": "file"},
        },
        {  # the interpreter is an argument that is a file: code
            "name": Path(PYTHON).resolve().as_posix(),
            "digest": {"sha256": sha(Path(PYTHON).read_bytes())},
            "annotations": {"kind": "code"},
        },
    ]
    assert byproduct(st, "outcome") == {"status": "succeeded", "exitCode": 0}


def test_cli_run_failure_keeps_exit_code(home: Path, tmp_path: Path) -> None:
    p = cli(home, "run", "--", PYTHON, "-c", "import sys; sys.exit(7)", cwd=tmp_path)
    assert p.returncode == 7
    assert "Traceback" not in p.stderr.decode()
    st = entry_statement(home, recorded_index(p))
    assert byproduct(st, "outcome") == {
        "status": "failed",
        "exitCode": 7,
        "error": {"type": "ExitCode", "message": "command exited with code 7"},
    }
    assert st["subject"][0]["name"].startswith("run:")


def test_cli_run_missing_output(home: Path, tmp_path: Path) -> None:
    p = cli(home, "run", "--output", "never.bin", "--", PYTHON, "-c", "pass", cwd=tmp_path)
    line = one_line_error(p)
    assert "did not create never.bin" in line and "recorded as failed run" in line
    st = entry_statement(home, recorded_index(p))
    out = byproduct(st, "outcome")
    assert out["status"] == "failed" and out["error"]["type"] == "MissingOutput"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--", "no-such-command-xyz"], "command not found: no-such-command-xyz"),
        (["run", "--input", "missing.txt", "--", "true"], "missing.txt: no such file"),
        (["run", "--param", "novalue", "--", "true"], "--param must be KEY=VALUE"),
        (["run"], "Missing argument"),
        (
            ["eval", "--model", "missing.bin", "--dataset", "x", "--metric", "a=1"],
            "missing.bin: no such file",
        ),
        (
            ["eval", "--model", "sha256:" + "a" * 64, "--dataset", "nope", "--metric", "a=1"],
            "no dataset of that name",
        ),
        (
            ["eval", "--model", "sha256:" + "a" * 64, "--dataset", "x", "--metric", "a"],
            "--metric must be KEY=VALUE",
        ),
    ],
)
def test_cli_bad_input(home: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    assert needle in one_line_error(cli(home, *args, cwd=tmp_path))


def test_cli_eval(home: Path, shared_ws: ailedger.Workspace, tmp_path: Path) -> None:
    from ailedger._provenance.datasets import add_dataset

    d = tmp_path / "holdout"
    d.mkdir()
    (d / "t.jsonl").write_text('{"x": 1}\n')
    rec = add_dataset(shared_ws, d, name="holdout-t")
    model = tmp_path / "model.pkl"
    model.write_bytes(b"pickle")
    p = cli(
        home,
        "eval",
        "--model",
        str(model),
        "--dataset",
        "holdout-t",
        "--metric",
        "accuracy=0.97",
        "--metric",
        "split=test",
        "--run",
        "abc",
    )
    assert p.returncode == 0, p.stderr
    st = entry_statement(home, int(p.stdout))
    assert st["predicateType"] == ty.EVALUATION
    pred = st["predicate"]
    assert pred["model"] == {"name": "model.pkl", "digest": {"sha256": sha(b"pickle")}}
    assert pred["dataset"] == {
        "name": "dataset:holdout-t",
        "digest": {"sha256": rec.manifest_digest},
    }
    assert pred["metrics"] == {"accuracy": 0.97, "split": "test"} and pred["run"] == "abc"


# -- review fixes: large integers, warnings as errors ------------------------------------


def test_large_integers_never_lose_the_run(shared_ws: ailedger.Workspace) -> None:
    np = pytest.importorskip("numpy")
    with track(
        "big", params={"seed": 2**63, "neg": -(2**60), "ok": 2**53 - 1}, workspace=shared_ws
    ) as run:
        run.log_metrics({"tokens": 10**17, "np": np.uint64(2**60), "small": np.int64(3)})
        run.log_metrics({"step-metric": 1.0}, step=2**62)
    assert run.errors == [] and run.index is not None
    st = statement_at(shared_ws, run.index)
    assert st["predicate"]["buildDefinition"]["externalParameters"]["params"] == {
        "seed": "9223372036854775808",
        "neg": "-1152921504606846976",
        "ok": 9007199254740991,
    }
    m = byproduct(st, "metrics")
    assert m["metrics"] == {
        "tokens": "100000000000000000",
        "np": str(2**60),
        "small": 3,
        "step-metric": 1,
    }
    assert m["steps"] == {"step-metric": str(2**62)}
    assert jsonable([2**53, -(2**53), 2**53 - 1, True]) == [
        "9007199254740992",
        "-9007199254740992",
        9007199254740991,
        True,
    ]
    assert jsonable({"\ud800": "a\udcff"}) == {"\\ud800": "a\\udcff"}


def test_warning_as_error_never_escapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trained = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with track("strictwarn", workspace=tmp_path / "nonexistent") as run:
            run.log_metrics({"a": 1})
            trained.append(1)
    assert trained == [1] and run.index is None
    assert len(run.errors) == 1 and isinstance(run.errors[0], ailedger.WorkspaceError)
    err = capsys.readouterr().err
    assert "ailedger: run 'strictwarn': opening the workspace failed" in err


# -- review fixes: registered dataset sources, code of commands, stale outputs -----------


def test_registered_source_path_is_the_dataset(
    shared_ws: ailedger.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ailedger._provenance.datasets import add_dataset, list_datasets

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    csv = tmp_path / "data" / "train.csv"
    csv.write_bytes(b"x,y\n1,2\n3,4\n")
    rec = add_dataset(shared_ws, csv, name="src-train", records=True)
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a")
    frec = add_dataset(shared_ws, folder, name="src-imgs")
    n = len(list_datasets(shared_ws))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matching source warns about nothing
        with track("src", workspace=shared_ws) as run:
            d1 = run.use("data/train.csv")
            d2 = run.use(folder)
    assert d1 is not None and d2 is not None
    assert d1["name"] == "dataset:src-train" and d1["digest"] == {"sha256": rec.manifest_digest}
    assert d1["annotations"]["index"] == rec.index
    assert d2["name"] == "dataset:src-imgs" and d2["digest"] == {"sha256": frec.manifest_digest}
    assert len(list_datasets(shared_ws)) == n  # nothing new registered ("imgs" not added)

    csv.write_bytes(b"x,y\n1,2\n3,5\n")  # changed since registration
    with (
        pytest.warns(TrackingWarning, match="registered source of dataset 'src-train'"),
        track("src2", workspace=shared_ws) as run2,
    ):
        d3 = run2.use(csv)
    assert d3 == {
        "name": "train.csv",
        "digest": {"sha256": sha(b"x,y\n1,2\n3,5\n")},
        "annotations": {"kind": "file"},
    }
    assert run2.errors == [] and run2.index is not None


def test_cli_input_registered_source_and_script_code(
    home: Path, shared_ws: ailedger.Workspace, tmp_path: Path
) -> None:
    from ailedger._provenance.datasets import add_dataset

    (tmp_path / "data").mkdir()
    csv = tmp_path / "data" / "train.csv"
    csv.write_bytes(b"a,b\n1,2\n")
    rec = add_dataset(shared_ws, csv, name="cli-src-train")
    train = tmp_path / "train.py"
    train.write_bytes(b"open('model.pkl', 'wb').write(b'model')\n")
    (tmp_path / "cfg.yaml").write_bytes(b"lr: 1\n")
    args = ["run", "--input", "data/train.csv", "--output", "model.pkl", "--"]
    p = cli(home, *args, PYTHON, "train.py", "--config", "cfg.yaml", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    deps = entry_statement(home, recorded_index(p))["predicate"]["buildDefinition"][
        "resolvedDependencies"
    ]
    assert deps[0] == {
        "name": "dataset:cli-src-train",
        "digest": {"sha256": rec.manifest_digest},
        "annotations": {
            "kind": "dataset",
            "index": rec.index,
            "root": rec.root,
            "leaves": rec.leaves,
            "mode": "files",
        },
    }
    code = {d["name"]: d for d in deps if d["annotations"]["kind"] == "code"}
    assert code["train.py"]["digest"] == {"sha256": sha(train.read_bytes())}
    assert code["cfg.yaml"]["digest"] == {"sha256": sha(b"lr: 1\n")}
    assert "model.pkl" not in code  # an output is not code

    csv.write_bytes(b"a,b\n1,3\n")
    p = cli(home, "run", "--input", "data/train.csv", "--", PYTHON, "-c", "pass", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    err = p.stderr.decode()
    assert "ailedger: warning: data/train.csv is the registered source of dataset" in err
    deps = entry_statement(home, recorded_index(p))["predicate"]["buildDefinition"][
        "resolvedDependencies"
    ]
    assert deps[0]["name"] == "train.csv" and deps[0]["annotations"] == {"kind": "file"}


def test_cli_preexisting_output_not_produced(home: Path, tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"old model")
    p = cli(home, "run", "--output", "model.pkl", "--", PYTHON, "-c", "pass", cwd=tmp_path)
    line = one_line_error(p)
    assert p.returncode == 1
    assert "output not produced by the command: model.pkl" in line, line
    st = entry_statement(home, recorded_index(p))
    out = byproduct(st, "outcome")
    assert out["status"] == "failed" and out["error"]["type"] == "OutputNotProduced"
    assert st["subject"][0]["name"].startswith("run:")  # the stale file is not vouched for
    # rewriting the file (even with identical bytes) is producing it
    rewrite = "open('model.pkl', 'wb').write(b'old model')"
    p = cli(home, "run", "--output", "model.pkl", "--", PYTHON, "-c", rewrite, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    st = entry_statement(home, recorded_index(p))
    assert st["subject"] == [{"name": "model.pkl", "digest": {"sha256": sha(b"old model")}}]


def test_byproducts_are_resource_descriptors(shared_ws: ailedger.Workspace) -> None:
    from ailedger._statements.intoto import canonical

    with track("rd", workspace=shared_ws) as run:
        run.log_metrics({"acc": 0.5}, step=3)
    assert run.index is not None
    bps = statement_at(shared_ws, run.index)["predicate"]["runDetails"]["byproducts"]
    assert [b["name"] for b in bps] == ["metrics", "outcome"]
    for b in bps:
        # in-toto ResourceDescriptor: one of uri, digest, content MUST be set
        assert set(b) == {"name", "digest", "content", "mediaType", "annotations"}
        data = base64.b64decode(b["content"], validate=True)
        assert data == canonical(b["annotations"])
        assert json.loads(data) == b["annotations"]
        assert b["digest"] == {"sha256": sha(data)} and b["mediaType"] == "application/json"
    assert bps[0]["annotations"] == {
        "metrics": {"acc": 0.5},
        "steps": {"acc": 3},
        "logged": {"acc": 1},
    }
    assert bps[1]["annotations"] == {"status": "succeeded"}
