#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_portal.settings")
    if "SECRET_KEY" not in os.environ:
        # Local commands in a bare checkout (makemigrations, shell) need no configuration.
        # The web and worker processes (wsgi.py, celery.py) never take this default, and an
        # explicit DJANGO_DEBUG=false still demands SECRET_KEY.
        os.environ.setdefault("DJANGO_DEBUG", "true")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
