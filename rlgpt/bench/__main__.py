"""`python -m rlgpt.bench`: the same options as `rlgpt bench`."""

from rlgpt.bench.cli import main

raise SystemExit(main())
