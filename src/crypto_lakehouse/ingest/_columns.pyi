# Types of the compiled module built from _columns.pyx (see that file and rows.convert_column).
from typing import Any

import pyarrow as pa

def convert(typ: pa.DataType, values: list[Any], decimal: bool) -> pa.Array[Any] | None: ...
