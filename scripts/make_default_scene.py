"""Render the project's default scene: `engine/data/default_scene.py` (the code lives in
the engine, so an installed `isrf demo` can make it too).

Usage: .venv/bin/python scripts/make_default_scene.py --out scenes/default [--help]
"""

from engine.data.default_scene import main

if __name__ == "__main__":
    main()
