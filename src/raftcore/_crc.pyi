from typing import Literal

from typing_extensions import Buffer

IMPLEMENTATION: Literal["compiled", "python"]
PROFILE_GUIDED: bool

def crc32c(data: Buffer, value: int = 0) -> int: ...
def crc32c_portable(data: Buffer, value: int = 0) -> int: ...
def crc32c_implementation() -> str: ...
