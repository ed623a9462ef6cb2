"""Type stub of the compiled PostgreSQL framer (``native/pgframe.pyx``; pure twin ``nexus_fast.postgres._pgframe_py``)."""

MAX_MESSAGE: int
S_ERROR: int
S_PARAMETER_STATUS: int
S_NOTIFICATION: int
S_COPY_IN: int
S_COPY_OUT: int
S_PARSE_COMPLETE: int
S_CLOSE_COMPLETE: int
S_COPY_BOTH: int
S_NOTICE: int
S_OTHER_CONTROL: int
C_PARSE: int
C_BIND: int
C_DESCRIBE: int
C_CLOSE: int
C_QUERY: int
C_SYNC: int
C_TERMINATE: int
C_FUNCTION: int
C_COPY: int
C_FLUSH: int
C_EXECUTE: int
C_UNKNOWN: int

def scan_server(buf: bytes | bytearray | memoryview, start: int = 0) -> tuple[int, int, int, int]: ...
def scan_client(buf: bytes | bytearray | memoryview, start: int = 0) -> tuple[int, int, int, int]: ...
def split_messages(buf: bytes | bytearray | memoryview, start: int = 0) -> tuple[list[tuple[int, int, int]], int]: ...
