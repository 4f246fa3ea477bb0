"""`isrf serve`: the engine as a loopback HTTP service that the Blender add-on drives.

- `jobs.py`: the shared compute device (interactive calls first) and the long-job worker;
- `workspace.py`: the open scenes and what each request does to them (`Scene` calls);
- `schemas.py`: request bodies, validated with their limits;
- `app.py`: the FastAPI routes (HTTP <-> workspace, nothing else), token and body limits;
- `main.py`: start-up (port, token file, ready line), parent watch, shutdown.
"""

API_VERSION = 1
"""Bumped on any incompatible change of the routes or their bodies (the add-on checks it)."""
