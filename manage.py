#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storyteller.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A setting read from the environment is missing or wrong: say which, without a
        # traceback that buries it.
        sys.exit(f"Storyteller cannot start: {exc}")


if __name__ == "__main__":
    main()
