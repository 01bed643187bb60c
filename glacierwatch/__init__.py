"""glacierwatch: mountain glacier area change from Landsat imagery.

The package is laid out by pipeline stage (``inventory``, ``imagery``, ``catalog``, ``chips``,
``model``, ``timeseries``, ``trends``, ``report``) plus small shared modules (``config``,
``landsat``, ``grid``, ``io``, ``tasks``, ``errors``, ``ids``).
"""

__version__ = "0.1.0"
