"""The entry-point skeleton: user errors as one line with exit code 2, the traceback on request."""

import os
import subprocess
import sys

from hydra.errors import InstantiationException

from dsc.contracts import InvalidInputError, MissingFileError, user_error_of


def run_export(tmp_path, **env):
    return subprocess.run(
        [sys.executable, "-m", "dsc.export", f"ckpt_path={tmp_path / 'missing.ckpt'}",
         f"output={tmp_path / 'model.onnx'}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
    )  # fmt: skip


def test_a_user_error_prints_one_line_and_exits_2(tmp_path):
    result = run_export(tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if "error: " in line]
    assert len(errors) == 1 and "missing.ckpt does not exist" in errors[0]
    assert "Traceback" not in output
    assert not (tmp_path / "model.onnx").exists()


def test_hydra_full_error_shows_the_traceback(tmp_path):
    result = run_export(tmp_path, HYDRA_FULL_ERROR="1")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "MissingFileError" in result.stderr


def test_user_errors_are_found_inside_hydras_wrapping():
    mistake = MissingFileError("no such file")
    try:
        try:
            raise mistake
        except MissingFileError as error:
            raise InstantiationException("Error in call to target") from error
    except InstantiationException as wrapped:
        assert user_error_of(wrapped) is mistake
    assert user_error_of(RuntimeError("a bug")) is None
    assert isinstance(InvalidInputError("x"), ValueError) and isinstance(mistake, FileNotFoundError)


def test_a_second_start_in_a_folder_keeps_the_first_hydra_record(tmp_path):
    run_export(tmp_path)
    first = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    run_export(tmp_path)
    assert (tmp_path / "run" / ".hydra" / "config.yaml").read_text() == first
    (later,) = (path for path in (tmp_path / "run" / ".hydra").iterdir() if path.is_dir())
    assert (later / "config.yaml").is_file()


def test_epochs_done_reads_the_newest_epoch_line(tmp_path):
    from dsc.training.callbacks import epochs_done

    log_file = tmp_path / "train.log"
    assert epochs_done(log_file) is None
    log_file.write_text(
        "[…][dsc.training.callbacks][INFO] - epoch 1/6 validated: val/pairwise_fg_f1 0.9012\n"
        "[…][dsc.training.callbacks][INFO] - epoch 2/6 validated: val/pairwise_fg_f1 0.9500\n"
    )
    assert epochs_done(log_file) == (2, 6)


def test_a_failed_child_is_named_with_its_exit_code_and_stderr(tmp_path):
    import pytest

    from dsc.cli.entry_point import run_entry_point

    with pytest.raises(RuntimeError, match=r"(?s)training the thing failed \(exit code 1\).*No module named"):
        run_entry_point(
            "dsc.no_such_module", [], "training the thing", tmp_path / "train.log", follow_epochs=True
        )
    assert run_entry_point("json.tool", ["--help"], "reading json", tmp_path / "none.log") >= 0
