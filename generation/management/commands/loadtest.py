import asyncio
import json

from django.core.management.base import BaseCommand, CommandError

from generation.management import loadtest


class Command(BaseCommand):
    help = (
        "Drives real websocket clients against a site running on this machine (make run) and prints "
        "JSON: generations completed, messages lost or out of order, time to first token, tokens/s, errors. "
        "Run it with the site's environment: it makes its writers in the site's database."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The site, on this machine.")
        parser.add_argument("--clients", type=int, default=32, help="Clients generating one story after another.")
        parser.add_argument("--idle", type=int, default=100, help="Clients holding an idle socket open.")
        parser.add_argument("--duration", type=float, default=60.0, help="Seconds to keep starting generations.")
        parser.add_argument(
            "--pause", type=float, default=0.0, help="Seconds a client waits between generations (a writer reading)."
        )
        parser.add_argument("--max-new-tokens", type=int, default=64, help="New tokens per generation.")
        parser.add_argument("--keep", action="store_true", help="Keep the load-test writers and their stories.")

    def handle(self, *args, **options):
        if options["clients"] < 1 or options["idle"] < 0 or options["duration"] <= 0 or options["pause"] < 0:
            raise CommandError("--clients must be 1 or more, --idle and --pause 0 or more, --duration above 0.")
        try:
            loadtest.check_loopback(options["url"])
        except loadtest.LoadTestError as exc:
            raise CommandError(str(exc)) from None
        params = {"max_new_tokens": options["max_new_tokens"]}
        try:
            # Inside the try: writers made before one is refused go with the rest.
            writers = loadtest.writers_make(options["clients"])
            result = asyncio.run(
                loadtest.run(
                    options["url"],
                    writers,
                    clients=options["clients"],
                    idle=options["idle"],
                    duration=options["duration"],
                    pause=options["pause"],
                    params=params,
                )
            )
        except loadtest.LoadTestError as exc:
            raise CommandError(str(exc)) from None
        finally:
            if not options["keep"]:
                loadtest.writers_remove()
        self.stdout.write(json.dumps(result, indent=2))
