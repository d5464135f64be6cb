"""The `docker` a sandboxed build.sh sees: it sends its argv over the gate's unix socket and
replays what comes back. It holds no rights of its own: the gate decides and runs.

Standard library only; the sandbox runner installs it with the system Python's shebang.
Protocol (one JSON object per line): request ``{"argv", "cwd", "env", "stdin"}``; replies
``{"out": b64}`` and ``{"err": b64}`` as output arrives, finally ``{"exit": n}``.
"""

import base64
import json
import os
import socket
import sys

GATE = os.environ.get("GRADER_GATE", "/run/grader/gate.sock")
#: Environment variables docker and buildx read that the gate may pass on.
PASSED_ENV = (
    "BUILDX_NO_DEFAULT_ATTESTATIONS",
    "BUILDKIT_PROGRESS",
    "BUILDX_BUILDER",
    "DOCKER_BUILDKIT",
    "DOCKER_DEFAULT_PLATFORM",
    "SOURCE_DATE_EPOCH",
)
MAX_STDIN = 64 * 1024


def main() -> int:
    argv = sys.argv[1:]
    request = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": {k: os.environ[k] for k in PASSED_ENV if k in os.environ},
    }
    if "--password-stdin" in argv:
        request["stdin"] = sys.stdin.read(MAX_STDIN)
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(GATE)
        conn.sendall(json.dumps(request).encode() + b"\n")
    except OSError as e:
        print(f"docker: the grading gate is not reachable ({e})", file=sys.stderr)
        return 1
    out, err = sys.stdout.buffer, sys.stderr.buffer
    code = 1
    with conn, conn.makefile("rb") as replies:
        for line in replies:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "out" in msg:
                out.write(base64.b64decode(msg["out"]))
                out.flush()
            elif "err" in msg:
                err.write(base64.b64decode(msg["err"]))
                err.flush()
            elif "exit" in msg:
                code = int(msg["exit"])
                break
    return code


if __name__ == "__main__":
    sys.exit(main())
