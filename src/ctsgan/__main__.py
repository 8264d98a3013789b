from __future__ import annotations

from ctsgan.cli import main

if __name__ == "__main__":
    main()
