"""Message framing after login: the compiled ``nexus_fast._native.pgframe`` or its pure twin ``_pgframe_py``.

See ``native/pgframe.pyx`` for the contract of ``scan_server``, ``scan_client`` and ``split_messages`` and the
meaning of the ``S_*`` / ``C_*`` flag bits.
"""

from __future__ import annotations

from nexus_fast import _extensions

_impl = _extensions.load("pgframe")

scan_server = _impl.scan_server
scan_client = _impl.scan_client
split_messages = _impl.split_messages

S_ERROR: int = _impl.S_ERROR
S_PARAMETER_STATUS: int = _impl.S_PARAMETER_STATUS
S_NOTIFICATION: int = _impl.S_NOTIFICATION
S_COPY_IN: int = _impl.S_COPY_IN
S_COPY_OUT: int = _impl.S_COPY_OUT
S_PARSE_COMPLETE: int = _impl.S_PARSE_COMPLETE
S_CLOSE_COMPLETE: int = _impl.S_CLOSE_COMPLETE
S_COPY_BOTH: int = _impl.S_COPY_BOTH
S_NOTICE: int = _impl.S_NOTICE
S_OTHER_CONTROL: int = _impl.S_OTHER_CONTROL

C_PARSE: int = _impl.C_PARSE
C_BIND: int = _impl.C_BIND
C_DESCRIBE: int = _impl.C_DESCRIBE
C_CLOSE: int = _impl.C_CLOSE
C_QUERY: int = _impl.C_QUERY
C_SYNC: int = _impl.C_SYNC
C_TERMINATE: int = _impl.C_TERMINATE
C_FUNCTION: int = _impl.C_FUNCTION
C_COPY: int = _impl.C_COPY
C_FLUSH: int = _impl.C_FLUSH
C_EXECUTE: int = _impl.C_EXECUTE
C_UNKNOWN: int = _impl.C_UNKNOWN
