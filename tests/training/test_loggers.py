"""W&B goes offline, with one warning line, on any failure to reach or use its server. The servers
here listen on the loopback interface only."""

import socket
import time

import pytest
from local_servers import http_server, silent_server

from dsc.training.loggers import flat_config, run_name, wandb_logger, wandb_mode


@pytest.fixture
def no_login(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def login(no_login, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    return no_login


def closed_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_auto_is_offline_without_login(no_login):
    assert wandb_mode("auto") == "offline"


def test_auto_is_offline_with_login_but_unreachable_server(login, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_local_port()}")
    assert wandb_mode("auto") == "offline"
    assert "cannot be used" in caplog.text and "wandb sync" in caplog.text


def test_auto_is_offline_when_the_server_accepts_but_never_answers(login, monkeypatch, caplog):
    with silent_server() as url:
        monkeypatch.setenv("WANDB_BASE_URL", url)
        started = time.monotonic()
        assert wandb_mode("auto", timeout_s=1.0) == "offline"
        assert time.monotonic() - started < 10
    assert "timed out" in caplog.text


@pytest.mark.parametrize("status", [500, 401, 404])
def test_auto_is_offline_when_the_server_answers_with_an_error(login, monkeypatch, caplog, status):
    with http_server(probe_status=status) as url:
        monkeypatch.setenv("WANDB_BASE_URL", url)
        assert wandb_mode("auto", timeout_s=5) == "offline"
    assert f"HTTP {status}" in caplog.text


def test_auto_is_offline_when_tls_fails(login, monkeypatch, caplog):
    with http_server(probe_status=200) as url:  # plain HTTP where TLS is expected
        monkeypatch.setenv("WANDB_BASE_URL", url.replace("http://", "https://"))
        assert wandb_mode("auto", timeout_s=5) == "offline"
    assert "SSL" in caplog.text


def test_auto_is_online_with_netrc_login_and_a_server_that_answers(no_login, monkeypatch):
    with http_server(probe_status=200) as url:
        (no_login / ".netrc").write_text("machine 127.0.0.1 login user password " + "x" * 40 + "\n")
        (no_login / ".netrc").chmod(0o600)
        monkeypatch.setenv("WANDB_BASE_URL", url)
        assert wandb_mode("auto") == "online"
        monkeypatch.setenv("WANDB_MODE", "offline")
        assert wandb_mode("auto") == "offline"


@pytest.mark.slow
def test_a_run_that_fails_to_start_online_falls_back_to_offline(login, monkeypatch, caplog):
    import wandb

    wandb.teardown()  # W&B keeps the settings of its first start in a process: start afresh
    with http_server(probe_status=200, other_status=500) as url:
        monkeypatch.setenv("WANDB_BASE_URL", url)
        logger = wandb_logger(mode="auto", timeout_s=2, project="dsc", save_dir=str(login))
        try:
            assert logger.experiment is not None
            assert logger._offline
            assert list((login / "wandb").glob("offline-run-*"))
        finally:
            wandb.finish()
            wandb.teardown()  # W&B keeps the settings of its first start per process otherwise
    assert "the online run did not start" in caplog.text


def test_explicit_modes_and_bad_values(no_login):
    assert wandb_mode("online") == "online"
    assert wandb_mode("offline") == "offline"
    with pytest.raises(ValueError, match="auto, online or offline"):
        wandb_mode("sometimes")
    with pytest.raises(ValueError, match=r"timeout_s must be in \(0, 30\]"):
        wandb_mode("auto", timeout_s=60)


@pytest.mark.parametrize(
    ("output_dir", "name"),
    [
        ("logs/train/runs/2026-12-03_17-00-00", "train/2026-12-03_17-00-00"),
        ("logs/train/multiruns/2026-12-03_17-00-00/3", "train/2026-12-03_17-00-00/3"),
        ("/scratch/my_run", "train/my_run"),
    ],
)
def test_runs_are_named_after_the_task_and_the_date(output_dir, name):
    assert run_name(output_dir, "train") == name


def test_flat_config_keeps_what_the_hparams_tab_shows():
    config = {"model": {"embed_dim": 16, "optimizer": {"lr": 0.01}}, "tags": ["a", "b"], "ckpt_path": None}
    assert flat_config(config) == {
        "model.embed_dim": 16, "model.optimizer.lr": 0.01, "tags": "['a', 'b']", "ckpt_path": "None",
    }  # fmt: skip
