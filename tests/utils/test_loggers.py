import socket

import pytest

from dsc.utils.loggers import wandb_mode


@pytest.fixture
def no_login(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def closed_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_auto_is_offline_without_login(no_login):
    assert wandb_mode("auto") == "offline"


def test_auto_is_offline_with_login_but_unreachable_server(no_login, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_local_port()}")
    assert wandb_mode("auto") == "offline"


def test_auto_is_online_with_netrc_login_and_reachable_server(no_login, monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        (no_login / ".netrc").write_text("machine 127.0.0.1 login user password " + "x" * 40 + "\n")
        (no_login / ".netrc").chmod(0o600)
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
        assert wandb_mode("auto") == "online"
        monkeypatch.setenv("WANDB_MODE", "offline")
        assert wandb_mode("auto") == "offline"


def test_explicit_modes_and_bad_mode(no_login):
    assert wandb_mode("online") == "online"
    assert wandb_mode("offline") == "offline"
    with pytest.raises(ValueError, match="auto, online or offline"):
        wandb_mode("sometimes")
