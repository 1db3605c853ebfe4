"""The site's processes as the tests start them: a real Celery worker and a real Daphne
server, each in its own process on the test database."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def _database_url(settings_dict) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    return "postgres://{USER}:{PASSWORD}@{HOST}:{PORT}/{NAME}".format(**settings_dict)


def subprocess_env() -> dict:
    """This process's environment, pointed at the test database."""
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = _database_url(connection.settings_dict)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ChildProcess:
    """A child process whose output is kept and searched for a readiness line."""

    def __init__(self, argv, env, ready: str | None = None, port: int | None = None, timeout: float = 120):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self._ready = threading.Event()
        threading.Thread(target=self._read, args=(re.compile(ready or "^$(?!)"),), daemon=True).start()
        if port is not None:
            threading.Thread(target=self._wait_for_port, args=(port, timeout), daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"{argv[:3]} did not get ready:\n" + "".join(self.lines[-40:]))

    def _read(self, ready):
        for line in self.proc.stdout:
            self.lines.append(line)
            if ready.search(line):
                self._ready.set()

    def _wait_for_port(self, port, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.1)
            else:
                self._ready.set()
                return

    def output(self) -> str:
        return "".join(self.lines)

    def pause(self):
        """SIGSTOP: the process holds still (takes no task, reports nothing) until resume()."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self):
        """SIGKILL: the process gets no chance to say or save anything."""
        self.proc.kill()
        self.proc.wait(timeout=15)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_worker(env: dict, concurrency: int = 4, ready: str = r"Loaded model") -> ChildProcess:
    """A real Celery worker process, threads pool, ready once its model has loaded (or
    once it logs `ready`)."""
    return ChildProcess(
        [sys.executable, "-m", "celery", "-A", "storyteller", "worker", "--pool", "threads"]
        + ["--concurrency", str(concurrency)]
        + ["-Q", "generation", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env,
        ready=ready,
    )


def start_training_worker(env: dict) -> ChildProcess:
    """The worker of the `training` queue, as `make run` starts it: concurrency 1."""
    return ChildProcess(
        [sys.executable, "-m", "celery", "-A", "storyteller", "worker", "--pool", "threads", "--concurrency", "1"]
        + ["-Q", "training", "-n", "training@%h", "--loglevel", "INFO"]
        + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
        env,
        ready=r"training@\S+ ready\.",
    )


def start_web(env: dict) -> tuple[ChildProcess, str]:
    """Daphne serving the site on a free port; (process, base URL)."""
    port = free_port()
    env = {**env, "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    server = ChildProcess(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "1", "storyteller.asgi:application"],
        env,
        port=port,
        timeout=60,
    )
    return server, f"http://127.0.0.1:{port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
