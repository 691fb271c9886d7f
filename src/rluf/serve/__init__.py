"""The production end of the loop: `rluf serve` (an A/B gateway that logs turns and reactions) and
`rluf export` (its database as canonical Parquet logs). See docs/serve.md. Exports load lazily."""

from rluf.lazy import lazy_exports

_EXPORTS = {"create_app": "app", "serve": "app", "ServeConfig": "config", "export": "export"}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
