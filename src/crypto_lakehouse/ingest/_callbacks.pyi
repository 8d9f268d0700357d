# Types of the compiled module built from _callbacks.pyx (see that file and compiled.py).
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from crypto_lakehouse.ingest.rows import ColumnBuffer

class _Done(tuple[()]):
    def __await__(self) -> Iterator[Any]: ...

class TradeCallback:
    TABLE: ClassVar[str]
    LAYOUT: ClassVar[tuple[str, ...]]
    def __init__(self, buf: ColumnBuffer) -> None: ...
    def __call__(self, t: Any, receipt: float) -> _Done: ...

class TickerCallback:
    TABLE: ClassVar[str]
    LAYOUT: ClassVar[tuple[str, ...]]
    def __init__(self, buf: ColumnBuffer, channel: str) -> None: ...
    def __call__(self, t: Any, receipt: float) -> _Done: ...

class BookDeltaCallback:
    TABLE: ClassVar[str]
    LAYOUT: ClassVar[tuple[str, ...]]
    def __init__(self, buf: ColumnBuffer, whole: Callable[[Any, float], None], updates: Iterator[int]) -> None: ...
    def __call__(self, b: Any, receipt: float) -> _Done: ...
