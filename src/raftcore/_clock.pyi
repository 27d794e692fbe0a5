from typing import Literal

IMPLEMENTATION: Literal["compiled"]

def perf_counter() -> float: ...
