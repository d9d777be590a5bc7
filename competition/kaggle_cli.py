"""The one place that talks to Kaggle: runs the real `kaggle` CLI (kaggle==2.2.5), turning failures into clear messages.

    from competition.kaggle_cli import KaggleError, download_competition, submit
    zip_path = download_competition(paths.raw_dir())        # -> data/raw/<SLUG>.zip
    print(submit(Path("submissions/x.csv"), "resnet18, 5 folds"))

Why a subprocess and never `import kaggle`: the import authenticates, prints help, may call exit(),
creates a config folder and can make a network call. In a child process all that is harmless, and its
exit code, stdout and stderr say everything we need. The strings we key on are the client's own
(kaggle/cli.py, kaggle/api/kaggle_api_extended.py).

Credentials are looked for in plain Python first (find_credentials), in the client's own order, so a
missing key gets our message rather than the client's. No message ever holds a key: every secret we
can find is scrubbed from the CLI output before it is shown, and VERBOSE (which makes the client print
its Authorization header) is removed from the child's environment.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

from competition import SLUG
from competition.errors import UserError

COMPETITION_URL = f"https://www.kaggle.com/competitions/{SLUG}"
RULES_URL = f"{COMPETITION_URL}/rules"
SUBMIT_URL = f"{COMPETITION_URL}/submit"
SETTINGS_URL = "https://www.kaggle.com/settings"
FROM_HINT = "If you already have the competition zip (or its files), skip Kaggle: ./run.sh download --from PATH"
DOWNLOAD_TIMEOUT_S = 3600  # the zip is about 90 MB: an hour allows 25 kB/s; past that the CLI is stopped
SUBMIT_TIMEOUT_S = 600  # a 14 kB file

# Markers in the CLI's output, most specific first. Each is the client's own text.
_MARKERS = [
    ("no-client", ("No module named",)),  # kaggle (or its undeclared dependency six) not installed
    ("auth", ("Authentication required", "401 Client Error", "_introspect_token")),  # 401; a rejected token crashes
    ("rules", ("You must accept this competition's rules",)),  # Kaggle's 403 body for the download
    ("server", ("This is a problem on Kaggle's side", "Server Error")),  # CLI hint for any 5xx / raise_for_status
    ("incomplete", ("does not match expected size", "Connection broken", "IncompleteRead")),
    ("network", ("ConnectionPool", "Max retries exceeded", "Failed to establish", "Connection refused",
                 "NameResolutionError", "ProxyError", "Connection aborted", "timed out")),
    ("forbidden", ("You don't have access to this resource",)),  # CLI hint added to every 403
    ("not-found", ("The resource was not found", "Could not find competition")),  # CLI hints for 404
    ("rate", ("You have been rate limited",)),  # 429
    ("upload", ("Could not submit to competition",)),  # the PUT of the file to storage failed
]


class KaggleError(UserError):
    """A Kaggle operation failed; str() is a complete message saying what happened and what to do."""


# --- where the client looks for credentials ---------------------------------------------------------------


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def kaggle_json_path(env: Mapping[str, str] = os.environ) -> Path:
    """The kaggle.json the client reads: $KAGGLE_CONFIG_DIR, else ~/.kaggle if it exists, else XDG (on Linux)."""
    if env.get("KAGGLE_CONFIG_DIR"):
        return Path(env["KAGGLE_CONFIG_DIR"]) / "kaggle.json"
    legacy = _home(env) / ".kaggle"
    if legacy.exists() or not sys.platform.startswith("linux"):
        return legacy / "kaggle.json"
    return Path(env.get("XDG_CONFIG_HOME") or _home(env) / ".config") / "kaggle" / "kaggle.json"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (OSError, ValueError):
        return None


def _token_env_file(env: Mapping[str, str]) -> Path | None:
    """KAGGLE_API_TOKEN holds a token or a path to a file with it; the path, if it is one."""
    value = env.get("KAGGLE_API_TOKEN") or ""
    try:
        return Path(value) if value and Path(value).exists() else None
    except OSError:  # a long token is not a valid file name
        return None


def _token_source(env: Mapping[str, str]) -> str | None:
    notebook_file = env.get("KAGGLE_API_V1_TOKEN")
    in_notebook = env.get("KAGGLE_KERNEL_RUN_TYPE") and env.get("KAGGLE_DATA_PROXY_URL")
    if in_notebook and notebook_file and _read_token(Path(notebook_file)):
        return f"KAGGLE_API_V1_TOKEN file {notebook_file}"
    if env.get("KAGGLE_API_TOKEN"):
        token_file = _token_env_file(env)
        if token_file is None:
            return "KAGGLE_API_TOKEN"
        if _read_token(token_file):
            return f"KAGGLE_API_TOKEN file {token_file}"
    for name in ("access_token", "access_token.txt"):
        path = _home(env) / ".kaggle" / name
        if _read_token(path):
            return str(path)
    return None


def _api_key_source(env: Mapping[str, str]) -> str | None:
    path = kaggle_json_path(env)
    in_file = _read_json(path)
    username_env, key_env = env.get("KAGGLE_USERNAME"), env.get("KAGGLE_KEY")
    if not (username_env or in_file.get("username")) or not (key_env or in_file.get("key")):
        return None
    if username_env and key_env:
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if username_env:
        return f"KAGGLE_USERNAME + key from {path}"
    if key_env:
        return f"username from {path} + KAGGLE_KEY"
    return str(path)


def _oauth_source(env: Mapping[str, str]) -> str | None:
    path = _home(env) / ".kaggle" / "credentials.json"
    return f"{path} (kaggle auth login)" if _read_json(path).get("refresh_token") else None


def find_credentials(env: Mapping[str, str] = os.environ) -> str | None:
    """Where the client would find credentials, in its own order, described without the secret; None if nowhere."""
    return _token_source(env) or _api_key_source(env) or _oauth_source(env)


def require_credentials(env: Mapping[str, str] = os.environ) -> str:
    """find_credentials, or a KaggleError listing every way to provide them."""
    source = find_credentials(env)
    if source:
        return source
    _check_kaggle_json(kaggle_json_path(env))
    config_dir = env.get("KAGGLE_CONFIG_DIR")
    kaggle_json = Path(config_dir) / "kaggle.json" if config_dir else "~/.kaggle/kaggle.json"
    raise KaggleError(
        "No Kaggle credentials found, so nothing can be downloaded from or submitted to Kaggle.\n"
        "Provide them in one of these ways:\n"
        f"  1. API key file: at {SETTINGS_URL} click 'Create New Token' (section API); save the downloaded\n"
        f"     kaggle.json as {kaggle_json} and run: chmod 600 {kaggle_json}\n"
        "  2. Environment: export KAGGLE_USERNAME=<your username> KAGGLE_KEY=<the key from kaggle.json>\n"
        f"  3. API token ('Generate New Token' at {SETTINGS_URL}/api): export KAGGLE_API_TOKEN=<token>,\n"
        "     or save the token in ~/.kaggle/access_token\n"
        "  4. Browser login: .venv/bin/kaggle auth login\n"
        f"{FROM_HINT}"
    )


def _check_kaggle_json(path: Path) -> None:
    """A kaggle.json that is there but unusable gets its own message (the client ignores it silently)."""
    fix = (f"Save a new kaggle.json from {SETTINGS_URL} ('Create New Token') as {path} and run: chmod 600 {path}\n"
           f"{FROM_HINT}")
    try:
        if not path.exists():
            return
        data = json.loads(path.read_text())
    except OSError as err:
        raise KaggleError(f"{path} exists but cannot be read ({err.strerror or err}), so it gives no credentials. "
                          f"As the user running this, check its permissions (chmod 600 {path}), or:\n{fix}") from None
    except ValueError as err:  # not JSON, or not UTF-8; the message never quotes the content (it may hold the key)
        raise KaggleError(f"{path} is not valid JSON ({type(err).__name__} at {_where(err)}), so it gives no "
                          f"credentials.\n{fix}") from None
    if not isinstance(data, dict) or not data.get("username") or not data.get("key"):
        raise KaggleError(f"{path} has no \"username\" and \"key\" (expected "
                          f"{{\"username\": ..., \"key\": ...}}), so it gives no credentials.\n{fix}")


def _where(err: ValueError) -> str:
    return f"line {err.lineno}, column {err.colno}" if isinstance(err, json.JSONDecodeError) else "its bytes"


# --- secrets, so no message ever shows one ----------------------------------------------------------------


def _secrets(env: Mapping[str, str]) -> set[str]:
    """Every key or token the client could use, plus the Basic-auth encoding of username:key."""
    found = {env.get("KAGGLE_KEY"), env.get("KAGGLE_API_TOKEN")}
    in_file = _read_json(kaggle_json_path(env))
    keys = {env.get("KAGGLE_KEY"), in_file.get("key")}
    usernames = {env.get("KAGGLE_USERNAME"), in_file.get("username")}
    found |= keys
    found |= {
        base64.b64encode(f"{user}:{key}".encode()).decode()
        for user in usernames
        for key in keys
        if isinstance(user, str) and isinstance(key, str)
    }
    kaggle_dir = _home(env) / ".kaggle"
    token_files = [_token_env_file(env), kaggle_dir / "access_token", kaggle_dir / "access_token.txt"]
    if env.get("KAGGLE_API_V1_TOKEN"):
        token_files.append(Path(env["KAGGLE_API_V1_TOKEN"]))
    found |= {_read_token(path) for path in token_files if path is not None}
    oauth = _read_json(kaggle_dir / "credentials.json")
    found |= {oauth.get("refresh_token"), oauth.get("access_token")}
    if _token_env_file(env) is not None:
        found.discard(env.get("KAGGLE_API_TOKEN"))  # a path, not a secret
    return {s for s in found if isinstance(s, str) and len(s) >= 4}


def scrub(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# --- running the CLI --------------------------------------------------------------------------------------


def _run_cli(args: list[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Runs `python -m kaggle ARGS` in the user's environment; stdout and stderr come back scrubbed.
    Past `timeout` seconds the CLI is killed and subprocess.TimeoutExpired raised."""
    child_env = {k: v for k, v in env.items() if k not in ("VERBOSE", "VERBOSE_OUTPUT")}
    result = subprocess.run(
        [sys.executable, "-m", "kaggle", *args],
        env=child_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
    )
    secrets = _secrets(env)
    result.stdout, result.stderr = scrub(result.stdout, secrets), scrub(result.stderr, secrets)
    return result


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} seconds"


def _failure_kind(result: subprocess.CompletedProcess) -> str:
    text = f"{result.stdout}\n{result.stderr}"
    for kind, markers in _MARKERS:
        if any(marker in text for marker in markers):
            return kind
    return "other"


def _said(result: subprocess.CompletedProcess, max_lines: int = 12) -> str:
    """What the CLI said, without progress bars, indented, for the end of a message."""
    lines = [line.strip() for line in f"{result.stderr}\n{result.stdout}".replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line and "B/s]" not in line and "%|" not in line]
    if not lines:
        return f"(kaggle exited with status {result.returncode} and printed nothing)"
    return "\n".join("    " + line for line in lines[:max_lines])


def _common_error(kind: str, result: subprocess.CompletedProcess, source: str, action: str) -> KaggleError | None:
    """The messages shared by download and submit; None for kinds that depend on the action."""
    if kind == "no-client":
        return KaggleError(
            f"The kaggle client could not start, so we could not {action}. Install the harness requirements:\n"
            f"    {sys.executable} -m pip install -r requirements.txt   (kaggle==2.2.5 also needs six)\n"
            f"kaggle said:\n{_said(result)}"
        )
    if kind == "auth":
        return KaggleError(
            f"Kaggle rejected the credentials from {source} (HTTP 401 Unauthorized), so we could not {action}.\n"
            f"The username or key is wrong, or the token was revoked or expired. At {SETTINGS_URL} click\n"
            "'Create New Token', save the new kaggle.json as ~/.kaggle/kaggle.json (chmod 600) or set\n"
            "KAGGLE_USERNAME and KAGGLE_KEY from it, remove any stale KAGGLE_API_TOKEN, and try again."
        )
    if kind == "server":
        return KaggleError(
            f"Kaggle's servers answered with an error (HTTP 5xx), so we could not {action}. The problem is on\n"
            f"Kaggle's side: try again later.\nkaggle said:\n{_said(result, 3)}"
        )
    if kind == "rate":
        return KaggleError(
            f"Kaggle rate-limited these requests (HTTP 429), so we could not {action}. "
            "Wait a few minutes and try again."
        )
    return None


# --- download ---------------------------------------------------------------------------------------------


def _download_error(result: subprocess.CompletedProcess, source: str) -> KaggleError:
    kind = _failure_kind(result)
    common = _common_error(kind, result, source, "download the competition files")
    if common is not None:
        return KaggleError(f"{common}\n{FROM_HINT}")
    if kind in ("rules", "forbidden"):
        reason = "this account has not accepted the competition rules" if kind == "rules" else "access was denied"
        return KaggleError(
            f"Kaggle refused the download (HTTP 403): {reason}.\n"
            f"Open {RULES_URL} signed in as the account of these credentials ({source}),\n"
            "accept the rules ('I Understand and Accept'), then run the download again.\n"
            f"{FROM_HINT}"
        )
    if kind == "not-found":
        return KaggleError(
            f"Kaggle does not know the competition '{SLUG}' (HTTP 404). Check {COMPETITION_URL}.\n{FROM_HINT}"
        )
    if kind == "network":
        return KaggleError(
            "Could not reach Kaggle: the network is unreachable or the connection failed. Check the internet\n"
            "connection and any HTTP(S)_PROXY settings, then try again. Without internet, copy the competition\n"
            f"zip from a machine that has it and run: ./run.sh download --from PATH\nkaggle said:\n{_said(result, 3)}"
        )
    if kind == "incomplete":
        return _incomplete_error(_said(result, 3))
    return KaggleError(
        f"kaggle competitions download failed (exit {result.returncode}).\nkaggle said:\n{_said(result)}\n{FROM_HINT}"
    )


def _incomplete_error(detail: str) -> KaggleError:
    return KaggleError(
        "The download from Kaggle was incomplete or corrupt, so nothing was kept:\n"
        f"{detail}\n"
        "Run the download again. If it keeps failing, download the zip in a browser from\n"
        f"{COMPETITION_URL}/data and run: ./run.sh download --from PATH"
    )


def _check_zip(path: Path) -> None:
    if not path.is_file():
        raise _incomplete_error(f"    kaggle reported success but wrote no {path.name}")
    if not zipfile.is_zipfile(path):
        raise _incomplete_error(f"    {path.name} ({path.stat().st_size} bytes) is not a zip file")
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise _incomplete_error(f"    {path.name} cannot be read as a zip: {error}") from None
    if bad_member is not None:
        raise _incomplete_error(f"    {path.name}: member {bad_member} fails its CRC check")


def download_competition(dest_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """Downloads the competition zip to dest_dir/<SLUG>.zip (replacing it atomically) and returns its path.

    The CLI writes into a temporary folder inside dest_dir; only a complete, valid zip is moved out of it,
    so a failed download never leaves a half-written file in dest_dir.
    """
    env = dict(os.environ if env is None else env)
    source = require_credentials(env)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kaggle-download-", dir=dest_dir))
    try:
        args = ["competitions", "download", "-c", SLUG, "-p", str(staging), "--force", "-q"]
        try:
            result = _run_cli(args, env, DOWNLOAD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise KaggleError(
                f"The download from Kaggle did not finish within {_duration(DOWNLOAD_TIMEOUT_S)} and was stopped, so "
                "nothing was kept. The connection or Kaggle is too slow right now: try again later, or download\n"
                f"the zip in a browser from {COMPETITION_URL}/data and run: ./run.sh download --from PATH"
            ) from None
        if result.returncode != 0:
            raise _download_error(result, source)
        downloaded = staging / f"{SLUG}.zip"
        _check_zip(downloaded)
        target = dest_dir / downloaded.name
        os.replace(downloaded, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- submit -----------------------------------------------------------------------------------------------


def _submit_error(result: subprocess.CompletedProcess, source: str, file: Path) -> KaggleError:
    kind = _failure_kind(result)
    still_valid = f"The file is still valid locally: {file}"
    common = _common_error(kind, result, source, "submit")
    if common is not None:
        return KaggleError(f"{common}\n{still_valid}")
    if kind in ("rules", "forbidden"):
        return KaggleError(
            "Kaggle refused the submission (HTTP 403). The account of these credentials may not have accepted\n"
            f"the rules at {RULES_URL}, or may not be allowed to submit yet (phone verification at\n"
            f"{SETTINGS_URL}).\n{still_valid}"
        )
    if kind == "network":
        return KaggleError(
            "Could not reach Kaggle: the network is unreachable or the connection failed, so nothing was\n"
            f"submitted. Check the internet connection and proxy settings and try again, or upload the file\n"
            f"by hand at {SUBMIT_URL}.\n{still_valid}\nkaggle said:\n{_said(result, 3)}"
        )
    if kind == "upload":
        return KaggleError(
            "Uploading the file to Kaggle's storage failed ('Could not submit to competition'), so no submission\n"
            f"was made. Try again later, or upload it by hand at {SUBMIT_URL}.\n{still_valid}"
        )
    # 400 or 404 from StartSubmissionUpload/CreateSubmission: the CLI prints only the server's message.
    return KaggleError(
        "Kaggle did not accept the submission. This competition ended in 2013 and may no longer accept (late)\n"
        f"submissions, or today's submission limit may be used up.\n{still_valid}\n"
        f"kaggle said:\n{_said(result)}"
    )


def submit(file: Path, message: str, env: Mapping[str, str] | None = None) -> str:
    """Submits file to the competition with description message; returns the CLI's report (ref, message)."""
    env = dict(os.environ if env is None else env)
    file = Path(file)
    if not file.is_file():
        raise KaggleError(f"Submission file not found: {file}. Write it first (python -m competition.submit).")
    source = require_credentials(env)
    try:
        args = ["competitions", "submit", "-c", SLUG, "-f", str(file), "-m", message]
        result = _run_cli(args, env, SUBMIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise KaggleError(
            f"kaggle competitions submit did not finish within {_duration(SUBMIT_TIMEOUT_S)} and was stopped; "
            f"Kaggle may or may not have received the file.\nCheck {COMPETITION_URL}/submissions before "
            f"submitting again (each try counts against the daily limit).\nThe file is still valid locally: {file}"
        ) from None
    if result.returncode != 0:
        raise _submit_error(result, source, file)
    return result.stdout.strip()
