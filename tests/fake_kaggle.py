"""A loopback imitation of the Kaggle API, so tests can run the real `kaggle` CLI with no internet.

The CLI reaches it as an HTTP proxy: set KAGGLE_API_ENVIRONMENT=LOCALHOST (the client then calls
http://localhost/api/v1/...) and HTTP_PROXY=server.url, with NO_PROXY unset. The proxy sends
absolute-form request lines (`POST http://localhost/api/v1/...`); plain `/api/v1/...` works too.

    state = FakeKaggle(zip_bytes=b"PK...")
    with FakeKaggleServer(state) as server:
        env["HTTP_PROXY"] = server.url
        ...
    state.requests[0]["path"], state.submissions[-1]["bytes"]

What it imitates (what kaggle/api/kaggle_api_extended.py sends and expects): JSON POSTs checked with HTTP Basic auth;
DownloadDataFiles answers 302 to a blob URL ending in .zip; submissions go StartSubmissionUpload ->
PUT createUrl -> CreateSubmission. Errors are `{"code": N, "message": ...}` with status N.
"""
import base64
import json
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from competition import SLUG

SERVICE = "/api/v1/competitions.CompetitionApiService/"
RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."
CLOSED_MESSAGE = "Submission not allowed: this competition does not accept late submissions."
SUBMITTED_MESSAGE = "Successfully submitted to Challenges in Representation Learning: Facial Expression Recognition"
LAST_MODIFIED = formatdate(1_370_000_000, usegmt=True)  # 2013: any fixed date in the client's format works


@dataclass
class FakeKaggle:
    """What the fake serves, how it misbehaves, and what it received."""

    username: str = "fer-tester"
    key: str = "0123456789abcdef-test-key"
    competition: str = SLUG  # requests for any other competition get 404
    zip_bytes: bytes = b""
    rules_accepted: bool = True  # False: DownloadDataFiles answers Kaggle's 403 rules message
    server_error: bool = False  # True: every API call answers 500
    accepting_submissions: bool = True  # False: CreateSubmission answers 400
    truncate_zip: bool = False  # True: the blob is the first half of the zip, with a matching Content-Length
    upload_fails: bool = False  # True: the PUT of the submission file answers 400
    requests: list = field(default_factory=list)  # dicts: method, target, path, headers, body, json
    submissions: list = field(default_factory=list)  # dicts: competition, bytes, description
    uploads: dict = field(default_factory=dict)  # upload number -> bytes received by PUT

    def served_zip(self) -> bytes:
        # A cut zip with an honest Content-Length: the client then ends with exit 0 and a bad zip.
        # (A short body under a larger Content-Length makes the client retry for ~60 s instead.)
        return self.zip_bytes[: len(self.zip_bytes) // 2] if self.truncate_zip else self.zip_bytes


class _Handler(BaseHTTPRequestHandler):
    state: FakeKaggle  # set on a subclass per server
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    # --- request plumbing -------------------------------------------------------------------
    def _record(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = {
            "method": self.command,
            "target": self.path,
            "path": urlsplit(self.path).path,
            "headers": dict(self.headers.items()),
            "body": body,
            "json": parsed,
        }
        self.state.requests.append(request)
        return request

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"code": status, "message": message})

    def _authorized(self) -> bool:
        expected = base64.b64encode(f"{self.state.username}:{self.state.key}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

    # --- verbs ------------------------------------------------------------------------------
    def do_POST(self):
        request = self._record()
        if not request["path"].startswith("/api/v1/"):
            return self._error(404, "Not found")
        if not self._authorized():
            return self._error(401, "Unauthenticated")
        if self.state.server_error:
            return self._error(500, "Internal server error")
        body = request["json"] or {}
        if body.get("competitionName", self.state.competition) != self.state.competition:
            return self._error(404, "Competition not found")
        method = request["path"].removeprefix(SERVICE)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return self._error(404, f"Unknown method {request['path']}")
        return handler(body)

    def do_GET(self):
        request = self._record()
        if request["path"] != f"/blob/{self.state.competition}.zip":
            return self._error(404, "No such blob")
        data = self.state.served_zip()
        headers = {
            "Content-Type": "application/zip",
            "Last-Modified": LAST_MODIFIED,
            "ETag": f'"{len(self.state.zip_bytes)}"',
        }
        self._send(200, data, headers)

    def do_PUT(self):
        request = self._record()
        number = request["path"].removeprefix("/upload/")
        if self.state.upload_fails or not number.isdigit():
            return self._error(400, "Upload rejected")
        self.state.uploads[int(number)] = request["body"]
        self._json(200, {})

    # --- API methods ------------------------------------------------------------------------
    def _api_DownloadDataFiles(self, body):
        if not self.state.rules_accepted:
            return self._error(403, RULES_MESSAGE)
        self._send(302, headers={"Location": f"http://localhost/blob/{self.state.competition}.zip"})

    def _api_StartSubmissionUpload(self, body):
        number = len(self.state.uploads) + 1
        self._json(200, {"token": f"blob-token-{number}", "createUrl": f"http://localhost/upload/{number}"})

    def _api_CreateSubmission(self, body):
        if not self.state.accepting_submissions:
            return self._error(400, CLOSED_MESSAGE)
        number = int(body.get("blobFileTokens", "blob-token-0").rsplit("-", 1)[-1])
        if number not in self.state.uploads:
            return self._error(400, "Unknown blob token")
        self.state.submissions.append(
            {
                "competition": body["competitionName"],
                "bytes": self.state.uploads[number],
                "description": body.get("submissionDescription", ""),
            }
        )
        self._json(200, {"message": SUBMITTED_MESSAGE, "ref": 122 + len(self.state.submissions)})

    def _api_GetSubmissionLimits(self, body):
        used = len(self.state.submissions)
        self._json(200, {"numToday": used, "numTotal": used, "numAllowedNow": 5 - used, "limitedByTotal": False})


class FakeKaggleServer:
    """Serves a FakeKaggle on 127.0.0.1 (a free port) in a daemon thread; use as a context manager."""

    def __init__(self, state: FakeKaggle):
        handler = type("Handler", (_Handler,), {"state": state})
        self.state = state
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeKaggleServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
