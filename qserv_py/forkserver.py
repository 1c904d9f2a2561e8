"""A warm fork server for the command line: ``qserv-py query`` and ``qserv-py load``
without paying Python's imports every time.

A ``qserv-py query`` process spent ~0.9 s before it asked the cluster anything, most of it
importing psycopg, pyarrow, numpy, sqlglot and pydantic; the query itself takes
milliseconds. So the first ``query`` or ``load`` of a user also starts, beside itself, a
fork server: a background process that has imported all that once, listens on a Unix
socket of its own, and forks a child for each later ``query`` or ``load``. The command
line hands the child its arguments, working directory, environment and umask, and its
standard input, output and error themselves (the file descriptors, ``SCM_RIGHTS``): the
child runs :func:`qserv_py.cli.main` as the command line would have, reads and writes
where it would have, and its exit status is the command's. SIGINT, SIGTERM and SIGHUP
of the command line are passed on to the child (Ctrl-C cancels the query).

The server

- serves its own user only (the peer's uid, ``SO_PEERCRED``), on a socket in a
  directory only that user may enter (``$XDG_RUNTIME_DIR``, else
  ``/tmp/qserv-py-<uid>``), one server per Python interpreter and qserv_py install;
- answers "stale" and exits once a module it imported changed on disk since it started
  (an upgrade, an edit): that command runs in its own process, the next starts a new
  server;
- exits after ``QSERV_PY_FORKSERVER_IDLE_S`` seconds (default 900) without a command.

``QSERV_PY_FORKSERVER=off`` (or 0, no, false) runs every command in its own process, as
before; ``verbose`` says on standard error which commands a server ran. Anything that
keeps a command from reaching the server (no server yet, a socket that refuses, a closed
standard stream) runs it in its own process too.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence

#: the commands a server runs (commands that start servers or own processes run as before)
COMMANDS = frozenset({"query", "load"})
ENV_SWITCH = "QSERV_PY_FORKSERVER"
ENV_IDLE = "QSERV_PY_FORKSERVER_IDLE_S"
IDLE_S = 900.0
_HEADER = struct.Struct("!I")
_OFF = ("off", "0", "no", "false")


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``qserv-py argv`` names (None for an option such as ``--help`` first).

    >>> command_of(["--cluster", "query", "load", "x"]), command_of(["-h"])
    ('load', None)
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--cluster":
            i += 2
        elif arg.startswith("--cluster="):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def socket_path() -> str | None:
    """This user's socket for this interpreter and install; None if its directory is not
    this user's alone."""
    import zlib

    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/qserv-py-{os.getuid()}"
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        info = os.stat(base)
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    key = zlib.crc32(f"{sys.executable}\0{here}".encode()) & 0xFFFFFFFF
    return os.path.join(base, f"qserv-py-{key:08x}.sock")


# --- the command line's side ------------------------------------------------------------


def forward(argv: Sequence[str]) -> int | None:
    """Run ``qserv-py argv`` in a child of this user's server: its exit status, or None
    if it must run in this process (see the module)."""
    if (
        os.environ.get(ENV_SWITCH, "").strip().lower() in _OFF
        or command_of(argv) not in COMMANDS
        or not sys.platform.startswith("linux")  # (SO_PEERCRED)
    ):
        return None
    path = socket_path()
    if path is None:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        mask = os.umask(0)
        os.umask(mask)
        payload = json.dumps(
            {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ), "umask": mask}
        ).encode()
        fds = array.array("i", [0, 1, 2])
        conn.sendmsg(
            [_HEADER.pack(len(payload)) + payload],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())],
        )
        reader = conn.makefile("rb")
        first = reader.readline().split()
    except OSError:
        conn.close()
        _start_server(path)
        return None
    if len(first) != 2 or first[0] != b"pid":  # "stale": that server is going away
        conn.close()
        _start_server(path)
        return None
    child = int(first[1])
    if os.environ.get(ENV_SWITCH, "").strip().lower() == "verbose":
        print(f"qserv-py: run by the fork server (process {child})", file=sys.stderr)

    def pass_on(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.kill(child, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, pass_on)
    try:
        last = reader.readline().split()
    finally:
        reader.close()
        conn.close()
    if len(last) == 2 and last[0] == b"exit":
        return int(last[1])
    print("qserv-py: error: the command's process ended without a status", file=sys.stderr)
    return 1


def _start_server(path: str) -> None:
    """Start a server for ``path`` in the background (a second one exits at once)."""
    import subprocess

    # from /, with no directory of the command line's on its path (-P), but able to
    # import this qserv_py as the command line did (a source checkout, say)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [here, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    with contextlib.suppress(OSError):
        subprocess.Popen(
            [sys.executable, "-P", "-m", "qserv_py.forkserver", path],
            cwd="/",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )


# --- the server ---------------------------------------------------------------------------


def _preload() -> None:
    """Import what ``query`` and ``load`` import (each one is optional)."""
    import importlib

    for name in (
        "psycopg",
        "pyarrow",
        "pyarrow.csv",
        "pyarrow.parquet",
        "sqlglot",
        "qserv_py.cli",
        "qserv_py.config",
        "qserv_py.client",
        "qserv_py.exec.arrow",
        "qserv_py.exec.pools",
        "qserv_py.loaders.load",
        "qserv_py.loaders.publish",
    ):
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _sources() -> list[str]:
    return [
        path
        for module in list(sys.modules.values())
        if (path := getattr(module, "__file__", None) or "")
        and path.endswith(".py")
        and os.path.isfile(path)
    ]


def _stale(sources: list[str], started: float) -> bool:
    for path in sources:
        try:
            if os.stat(path).st_mtime > started:
                return True
        except OSError:
            return True
    return False


def serve(path: str) -> None:
    """Serve ``path`` until idle for ``QSERV_PY_FORKSERVER_IDLE_S`` or stale."""
    import fcntl

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no thread pools before a fork
    lock = open(f"{path}.lock", "w")  # noqa: SIM115  (held while the server lives)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server has it
    started = time.time()
    _preload()
    sources = _sources()
    idle = float(os.environ.get(ENV_IDLE) or IDLE_S)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(16)
    listener.settimeout(idle)
    with open(f"{path}.pid", "w") as pid_file:
        pid_file.write(f"{os.getpid()}\n")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped as they end
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave no socket behind
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                return
            if _serve_one(conn, sources, started):
                return
    finally:
        for leftover in (path, f"{path}.pid"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def _serve_one(conn: socket.socket, sources: list[str], started: float) -> bool:
    """Fork a child for one command; True if the server is stale (and must exit)."""
    fds: list[int] = []
    try:
        conn.settimeout(10)
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        request, fds = _receive(conn)
        if uid != os.getuid() or len(fds) != 3:
            return False
        if _stale(sources, started):
            conn.sendall(b"stale\n")
            return True
        if os.fork() == 0:
            _child(conn, request, fds)  # never returns
        return False
    except (OSError, ValueError, struct.error):  # a peer that went away, a bad request
        return False
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, ancillary, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(3 * 4))
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    (size,) = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]
    while len(body) < size:
        more = conn.recv(size - len(body))
        if not more:
            raise ValueError("request cut short")
        body += more
    return json.loads(body), list(fds)


def _child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """Run the command as the command line would have, then exit with its status."""
    import io

    code: int = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in set(fds) - {0, 1, 2}:
            os.close(fd)
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
        for name, fd in (("stdout", 1), ("stderr", 2)):
            tty = os.isatty(fd)
            stream = io.TextIOWrapper(
                io.BufferedWriter(io.FileIO(fd, "w", closefd=False)),
                line_buffering=tty or fd == 2,
                errors="backslashreplace" if fd == 2 else "strict",
            )
            setattr(sys, name, stream)
        argv = list(request["argv"])
        sys.argv = ["qserv-py", *argv]
        conn.sendall(f"pid {os.getpid()}\n".encode())
        from qserv_py.cli import main

        code = main(argv)
    except SystemExit as exc:  # argparse: --help, a bad option
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for name in ("stdout", "stderr"):
            with contextlib.suppress(OSError, ValueError):
                getattr(sys, name).flush()
        with contextlib.suppress(OSError):
            conn.sendall(f"exit {int(code)}\n".encode())
        os._exit(int(code) & 0xFF)


if __name__ == "__main__":
    serve(sys.argv[1])
