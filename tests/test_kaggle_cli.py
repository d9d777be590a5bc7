"""Runs the real kaggle CLI, through competition.kaggle_cli, against the loopback fake in tests/fake_kaggle.py.

    .venv/bin/python -m pytest -q tests/test_kaggle_cli.py

The child sees the user's environment minus every KAGGLE_* and NO_PROXY value, with HOME and
KAGGLE_CONFIG_DIR in a temp folder, KAGGLE_API_ENVIRONMENT=LOCALHOST (the client then calls
http://localhost/api/v1/...) and HTTP_PROXY pointing at the fake. Each CLI call takes about a second.
"""
import base64
import io
import json
import os
import socket
import zipfile
from pathlib import Path

import pytest

from competition import SLUG, kaggle_cli
from competition.kaggle_cli import (
    RULES_URL,
    KaggleError,
    _secrets,
    download_competition,
    find_credentials,
    require_credentials,
    scrub,
    submit,
)
from fake_kaggle import SUBMITTED_MESSAGE, FakeKaggle, FakeKaggleServer

USERNAME = "fer-tester"
KEY = "f3a9c0de5b7e4d21a8c6b0e9d4f71a2c"  # shaped like a real key: 32 hex digits
BASIC = base64.b64encode(f"{USERNAME}:{KEY}".encode()).decode()
DOWNLOAD_URL = "http://localhost/api/v1/competitions.CompetitionApiService/DownloadDataFiles"


def _small_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.csv", "emotion,pixels\n" + "3,0 128 255 64\n" * 500)
        archive.writestr("test.csv", "pixels\n" + "12 34 56 78\n" * 500)
        archive.writestr("example_submission.csv", "0\n" * 500)
    return buffer.getvalue()


ZIP = _small_zip()


def _no_leak(text: str) -> str:
    assert KEY not in text and BASIC not in text
    return text


def _error(call, *args, **kwargs) -> str:
    """The KaggleError message of call(*args), checked to hold no key."""
    with pytest.raises(KaggleError) as caught:
        call(*args, **kwargs)
    return _no_leak(str(caught.value))


def _isolated_env(home: Path, proxy_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_") and k not in ("NO_PROXY", "no_proxy")}
    env.update(
        HOME=str(home),
        KAGGLE_CONFIG_DIR=str(home / ".kaggle"),
        KAGGLE_API_ENVIRONMENT="LOCALHOST",
        HTTP_PROXY=proxy_url,
        http_proxy=proxy_url,
    )
    return env


@pytest.fixture
def server():
    with FakeKaggleServer(FakeKaggle(username=USERNAME, key=KEY, zip_bytes=ZIP)) as running:
        yield running


@pytest.fixture
def fake(server) -> FakeKaggle:
    return server.state


@pytest.fixture
def env(tmp_path, server) -> dict:
    env = _isolated_env(tmp_path / "home", server.url)
    env.update(KAGGLE_USERNAME=USERNAME, KAGGLE_KEY=KEY)
    return env


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "raw"


@pytest.fixture
def submission(tmp_path) -> Path:
    path = tmp_path / "submission.csv"
    path.write_bytes(b"3\n0\n6\n" * 100)
    return path


# --- download ---------------------------------------------------------------------------------------------


def test_download_writes_the_zip_and_replaces_an_old_one(fake, env, dest):
    dest.mkdir()
    (dest / f"{SLUG}.zip").write_bytes(b"an older, shorter download")
    path = download_competition(dest, env)
    assert path == dest / f"{SLUG}.zip"
    assert path.read_bytes() == ZIP
    assert sorted(dest.iterdir()) == [path]  # the staging folder is gone
    first = fake.requests[0]
    assert (first["method"], first["target"]) == ("POST", DOWNLOAD_URL)
    assert first["json"] == {"competitionName": SLUG}
    assert first["headers"]["Authorization"] == f"Basic {BASIC}"


def test_download_without_credentials_names_every_way_and_calls_nothing(fake, env, dest):
    del env["KAGGLE_USERNAME"], env["KAGGLE_KEY"]
    message = _error(download_competition, dest, env)
    for expected in ("kaggle.json", "chmod 600", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN",
                     "access_token", "kaggle auth login", "Create New Token", "./run.sh download --from"):
        assert expected in message
    assert fake.requests == []


def test_download_with_a_wrong_key_says_401(fake, env, dest):
    env["KAGGLE_KEY"] = "0000wrong0000key0000"
    message = _error(download_competition, dest, env)
    assert "401" in message and "rejected" in message and "0000wrong0000key0000" not in message
    assert len(fake.requests) == 1


def test_download_before_accepting_the_rules_points_at_them(fake, env, dest):
    fake.rules_accepted = False
    message = _error(download_competition, dest, env)
    assert RULES_URL in message and "403" in message
    assert list(dest.iterdir()) == []


def test_download_on_server_error(fake, env, dest):
    fake.server_error = True
    message = _error(download_competition, dest, env)
    assert "5xx" in message and "Kaggle's side" in message


def test_download_of_an_unknown_competition_says_404(fake, env, dest):
    fake.competition = "some-other-competition"
    assert "404" in _error(download_competition, dest, env)


def test_download_without_network_suggests_from(tmp_path, dest):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    env = _isolated_env(tmp_path / "home", f"http://127.0.0.1:{closed_port}")
    env.update(KAGGLE_USERNAME=USERNAME, KAGGLE_KEY=KEY)
    message = _error(download_competition, dest, env)
    assert "Could not reach Kaggle" in message and "--from" in message


def test_truncated_zip_is_reported_and_not_kept(fake, env, dest):
    fake.truncate_zip = True
    message = _error(download_competition, dest, env)
    assert "incomplete or corrupt" in message
    assert list(dest.iterdir()) == []


def test_a_download_past_its_time_limit_is_stopped_and_nothing_kept(fake, env, dest, monkeypatch):
    monkeypatch.setattr(kaggle_cli, "DOWNLOAD_TIMEOUT_S", 0.05)  # the client takes about a second to start
    message = _error(download_competition, dest, env)
    assert message.startswith("The download from Kaggle did not finish within 0.05 seconds and was stopped")
    assert "./run.sh download --from PATH" in message
    assert list(dest.iterdir()) == []  # the staging folder is gone


def test_a_submit_past_its_time_limit_says_it_may_have_arrived(fake, env, submission, monkeypatch):
    monkeypatch.setattr(kaggle_cli, "SUBMIT_TIMEOUT_S", 0.05)
    message = _error(submit, submission, "x", env)
    assert message.startswith("kaggle competitions submit did not finish within 0.05 seconds and was stopped")
    assert "may or may not have received" in message and f"still valid locally: {submission}" in message


def test_each_command_runs_under_its_own_time_limit(fake, env, dest, submission, monkeypatch):
    """The other command's limit, made tiny, stops nothing (the two tests above: its own limit stops it)."""
    monkeypatch.setattr(kaggle_cli, "SUBMIT_TIMEOUT_S", 0.05)
    assert download_competition(dest, env).read_bytes() == ZIP
    monkeypatch.setattr(kaggle_cli, "SUBMIT_TIMEOUT_S", 600)
    monkeypatch.setattr(kaggle_cli, "DOWNLOAD_TIMEOUT_S", 0.05)
    assert "Submission ref: 123" in _no_leak(submit(submission, "x", env))


# --- submit -----------------------------------------------------------------------------------------------


def test_submit_sends_the_bytes_and_description_with_a_kaggle_json(fake, env, submission):
    del env["KAGGLE_USERNAME"], env["KAGGLE_KEY"]
    kaggle_json = Path(env["KAGGLE_CONFIG_DIR"]) / "kaggle.json"
    kaggle_json.parent.mkdir(parents=True)
    kaggle_json.write_text(json.dumps({"username": USERNAME, "key": KEY}))
    kaggle_json.chmod(0o600)
    output = _no_leak(submit(submission, "resnet18, 5 folds", env))
    assert "Submission ref: 123" in output and SUBMITTED_MESSAGE in output
    assert fake.submissions == [
        {"competition": SLUG, "bytes": submission.read_bytes(), "description": "resnet18, 5 folds"}
    ]


def test_submit_when_kaggle_no_longer_accepts_submissions(fake, env, submission):
    fake.accepting_submissions = False
    message = _error(submit, submission, "late", env)
    assert "late" in message and "still valid locally" in message and str(submission) in message
    assert fake.submissions == []


def test_submit_when_the_upload_fails(fake, env, submission):
    fake.upload_fails = True
    message = _error(submit, submission, "x", env)
    assert "Could not submit to competition" in message and "no submission" in message


def test_submit_of_a_missing_file_calls_nothing(fake, env, tmp_path):
    assert "not found" in _error(submit, tmp_path / "nope.csv", "x", env)
    assert fake.requests == []


# --- no key in any message or output ----------------------------------------------------------------------


def test_no_output_or_message_contains_the_key_even_with_verbose(fake, env, dest, submission):
    env["VERBOSE"] = "1"  # would make the client print its Authorization header
    _no_leak(str(download_competition(dest, env)))
    _no_leak(submit(submission, "with VERBOSE set", env))
    fake.server_error = True
    assert "Kaggle's side" in _error(submit, submission, "x", env)


def test_scrub_removes_every_known_secret(tmp_path):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "access_token").write_text("file-token-123456\n")
    env = {"HOME": str(home), "KAGGLE_USERNAME": USERNAME, "KAGGLE_KEY": KEY, "KAGGLE_API_TOKEN": "env-token-98765"}
    leaky = f"Authorization: Basic {BASIC}\nkey={KEY} token=env-token-98765 file=file-token-123456"
    cleaned = scrub(leaky, _secrets(env))
    assert _no_leak(cleaned).count("***") == 4
    assert "token" in cleaned  # ordinary words survive


# --- find_credentials: each source the client reads, no subprocess ----------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


KEY_JSON = json.dumps({"username": USERNAME, "key": KEY})
CREDENTIAL_CASES = {
    # name: (environment values, files under HOME, expected description or None)
    "nothing": ({}, {}, None),
    "token in env": ({"KAGGLE_API_TOKEN": KEY}, {}, "KAGGLE_API_TOKEN"),
    "token file named by env": ({"KAGGLE_API_TOKEN": "{home}/tok"}, {"tok": KEY}, "KAGGLE_API_TOKEN file {home}/tok"),
    "access_token": ({}, {".kaggle/access_token": KEY}, "{home}/.kaggle/access_token"),
    "access_token.txt": ({}, {".kaggle/access_token.txt": KEY}, "{home}/.kaggle/access_token.txt"),
    "empty access_token": ({}, {".kaggle/access_token": "\n"}, None),
    "username and key in env": ({"KAGGLE_USERNAME": USERNAME, "KAGGLE_KEY": KEY}, {}, "KAGGLE_USERNAME/KAGGLE_KEY"),
    "key without username": ({"KAGGLE_KEY": KEY}, {}, None),
    "kaggle.json in KAGGLE_CONFIG_DIR": (
        {"KAGGLE_CONFIG_DIR": "{home}/cfg"}, {"cfg/kaggle.json": KEY_JSON}, "{home}/cfg/kaggle.json"
    ),
    "kaggle.json in ~/.kaggle": ({}, {".kaggle/kaggle.json": KEY_JSON}, "{home}/.kaggle/kaggle.json"),
    "kaggle.json in ~/.config/kaggle": (
        {}, {".config/kaggle/kaggle.json": KEY_JSON}, "{home}/.config/kaggle/kaggle.json"
    ),
    "kaggle.json in XDG_CONFIG_HOME": (
        {"XDG_CONFIG_HOME": "{home}/xdg"}, {"xdg/kaggle/kaggle.json": KEY_JSON}, "{home}/xdg/kaggle/kaggle.json"
    ),
    "~/.kaggle hides XDG": ({}, {".kaggle/other": "", ".config/kaggle/kaggle.json": KEY_JSON}, None),
    "username in file, key in env": ({"KAGGLE_KEY": KEY}, {".kaggle/kaggle.json": json.dumps({"username": USERNAME})},
                                     "username from {home}/.kaggle/kaggle.json + KAGGLE_KEY"),
    "broken kaggle.json": ({}, {".kaggle/kaggle.json": "{not json"}, None),
    "oauth credentials.json": ({}, {".kaggle/credentials.json": json.dumps({"refresh_token": KEY})},
                               "{home}/.kaggle/credentials.json (kaggle auth login)"),
    "credentials.json without refresh_token": ({}, {".kaggle/credentials.json": "{}"}, None),
}


@pytest.mark.parametrize("case", CREDENTIAL_CASES)
def test_find_credentials(case, tmp_path):
    values, files, expected = CREDENTIAL_CASES[case]
    home = tmp_path / "home"
    home.mkdir()
    for relative, text in files.items():
        _write(home / relative, text)
    env = {"HOME": str(home), **{k: v.format(home=home) for k, v in values.items()}}
    found = find_credentials(env)
    assert found == (expected.format(home=home) if expected else None)
    if found:
        _no_leak(found)
        assert require_credentials(env) == found
    else:
        _error(require_credentials, env)


UNUSABLE_KAGGLE_JSON = {
    # name: (how to spoil ~/.kaggle/kaggle.json, what the message must say after the path)
    "not JSON": (lambda p: p.write_text('{"username": "fer-tester", "key": '), "is not valid JSON (JSONDecodeError"),
    "not UTF-8": (lambda p: p.write_bytes(b"\xff\xfe{}"), "is not valid JSON"),
    "a folder": (lambda p: p.mkdir(), "exists but cannot be read (Is a directory)"),
    "no key": (lambda p: p.write_text(json.dumps({"username": USERNAME})), 'has no "username" and "key"'),
    "a list": (lambda p: p.write_text("[]"), 'has no "username" and "key"'),
}


@pytest.mark.parametrize("case", UNUSABLE_KAGGLE_JSON)
def test_an_unusable_kaggle_json_is_named_not_reported_as_missing(case, tmp_path):
    spoil, expected = UNUSABLE_KAGGLE_JSON[case]
    path = tmp_path / "home" / ".kaggle" / "kaggle.json"
    path.parent.mkdir(parents=True)
    spoil(path)
    message = _error(require_credentials, {"HOME": str(tmp_path / "home")})
    assert message.startswith(f"{path} {expected}") and "No Kaggle credentials found" not in message
    assert f"chmod 600 {path}" in message and "./run.sh download --from PATH" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_kaggle_json_without_read_permission_is_named(tmp_path):
    path = tmp_path / "home" / ".kaggle" / "kaggle.json"
    _write(path, KEY_JSON)
    path.chmod(0)
    message = _error(require_credentials, {"HOME": str(tmp_path / "home")})
    assert message.startswith(f"{path} exists but cannot be read (Permission denied)")


def test_a_broken_kaggle_json_does_not_hide_other_credentials(tmp_path):
    _write(tmp_path / "home" / ".kaggle" / "kaggle.json", "{not json")  # the client ignores it too
    env = {"HOME": str(tmp_path / "home"), "KAGGLE_USERNAME": USERNAME, "KAGGLE_KEY": KEY}
    assert require_credentials(env) == "KAGGLE_USERNAME/KAGGLE_KEY"
