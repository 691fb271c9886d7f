"""The production end of the loop: `rluf serve` (an A/B gateway that logs turns and reactions) and
`rluf export` (its database as canonical Parquet logs). See docs/serve.md."""

from rluf.serve.app import create_app, serve
from rluf.serve.config import ServeConfig
from rluf.serve.export_logs import export

__all__ = ["ServeConfig", "create_app", "export", "serve"]
