"""``layerprof.pytest_plugin``: the name pytest knows the plugin by (entry point ``pytest11``, ``-p``).

The plugin itself is :mod:`layerprof.integrations.pytest_plugin`; pytest registers this module, so
it carries the plugin's hooks and fixture. It imports nothing heavy (see the plugin's docstring).
"""

from __future__ import annotations

from layerprof.integrations.pytest_plugin import (
    AuditLog,
    LayerprofAudit,
    layerprof_audit,
    pytest_addoption,
    pytest_configure,
)

__all__ = [
    "AuditLog",
    "LayerprofAudit",
    "layerprof_audit",
    "pytest_addoption",
    "pytest_configure",
]
