"""On-phone latency and memory sweeps over adb (docs/device.md), plus a host-side reference profile.

Backends (:mod:`device.adb`, :mod:`device.adbcli`, :mod:`device.local`) share :class:`device.base.ShellDevice`;
runners parse tool output (:mod:`device.runners`); :mod:`device.sweep` expands sweep files into jobs;
:mod:`device.orchestrator` runs them; :mod:`device.results` turns records into pandas frames and store rows.
Importing this package imports neither adb_shell nor torch.
"""
