"""Render one of the project's synthetic scenes: `engine/data/synthetic_scene.py` (the code
lives in the engine, so an installed `isrf demo` can make the default scene too).

Usage: .venv/bin/python scripts/make_default_scene.py --out scenes/default [--help]
       .venv/bin/python scripts/make_default_scene.py --scene room --out scenes/room
"""

from engine.data.synthetic_scene import main

if __name__ == "__main__":
    main()
